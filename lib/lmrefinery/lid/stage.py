"""The `lid` stage: language identification with fastText lid.176.

Newlines are replaced by spaces before prediction (fastText predicts one line),
the whole batch goes to fastText in one call, and every row gets `lang` (the
base column) and `lang_score`. Rows whose language is not in `allowed`
(empty = all) are rejected as `lid:not_allowed`; rows whose score is below the
minimum for their language (`min_scores[lang]`, else `min_score`) as
`lid:low_score`. Optional: top-k labels in `lang_topk` (JSON), per-paragraph
language shares in `meta["lang_shares"]` for mixed documents, and a copy of the
kept rows partitioned by language under `<stage dir>/by_lang/lang=xx/`.

Paragraphs are *lines* unless the text has blank lines (`paragraph_split: auto`):
extracted web text, wiki text and most JSONL corpora put one paragraph per line
with no blank line between them (splitting on blank lines only left every web
document one "paragraph"), while hard-wrapped books separate paragraphs by blank
lines and their lines are fragments. Each paragraph of at least
`min_paragraph_chars` characters is labelled on its own; a share is the fraction
of those paragraphs' characters. With `keep_mixed`, a document the document-level rule
would reject is kept when at least that share of its characters is in lines
confidently labelled (line score >= that language's minimum) with an allowed
language (`meta["lang_allowed_share"]`, recorded for every document it looked
at); its `lang` becomes the largest of those languages and `meta["lang_mixed"]`
is true (counted as `lid:kept_mixed`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field

from ..core import storage
from ..core.schema import meta_dumps, meta_loads
from ..core.stage import BatchResult, Stage, StageParams, register

_LINE = re.compile(r"\s*\n\s*")
_BLANK = re.compile(r"\n\s*\n")
_LABEL = "__label__"


class LidParams(StageParams):
    model: str | None = Field(None, description="lid.176 .bin/.ftz path, s3:// or https:// URL; None = cache")
    allowed: list[str] = Field(default_factory=list, description="languages kept (ISO 639 codes); empty = all")
    min_score: float = Field(0.65, ge=0.0, le=1.0, description="minimum top-1 score (DataTrove's default 0.65)")
    min_scores: dict[str, float] = Field(default_factory=dict, description="per-language minimum score; "
                                         "`lmrefinery lid calibrate` derives them (shared sentences: en 0.33, "
                                         "zh 0.53 keep 99% of correct one-sentence texts, 0.65 rejects 5.9% of en)")
    top_k: int = Field(1, ge=1, le=176, description=">1: also record the top-k labels in `lang_topk`")
    max_chars: int = Field(4000, ge=0, description="predict on the first N characters (0 = whole text); "
                           "fastText's cost is linear in length and a page of text decides the language")
    paragraphs: bool = Field(False, description="also record per-paragraph (= per-line) language shares "
                             "in meta.lang_shares")
    min_paragraph_chars: int = Field(30, ge=1, description="shorter paragraphs are not labelled on their own")
    paragraph_split: Literal["auto", "lines", "blank_lines"] = Field(
        "auto", description="paragraphs are lines, or blank-line blocks; auto: blocks when the text has a "
        "blank line (hard-wrapped books), else lines (extracted web text has no blank lines)")
    keep_mixed: float | None = Field(None, gt=0, le=1, description="keep a document rejected by its "
                                     "document-level label or score when at least this share of its "
                                     "characters is in lines confidently labelled with an allowed language")
    partition_by_lang: bool = Field(False, description="also write kept rows under by_lang/lang=xx/")
    undetermined: str = Field("und", description="label for empty texts")


def _clean_for_ft(texts: list[str], max_chars: int) -> list[str]:
    out = []
    for t in texts:
        t = t or ""
        if max_chars:
            t = t[:max_chars]
        out.append(t.replace("\n", " ").replace("\r", " "))
    return out


def predict(model, texts: list[str], k: int = 1, max_chars: int = 0):
    """Batched prediction: returns (labels per text, scores per text) with the
    `__label__` prefix stripped, in fastText's order (best first)."""
    if not texts:
        return [], []
    labels, scores = model.predict(_clean_for_ft(texts, max_chars), k=k)
    return ([[lab[len(_LABEL):] for lab in ls] for ls in labels],
            [np.asarray(s, dtype=np.float64) for s in scores])


def split_paragraphs(text: str | None, min_chars: int, how: str = "auto") -> list[str]:
    """The document's paragraphs of at least min_chars characters: its lines, or its
    blank-line separated blocks (``auto``: blocks when the text has a blank line —
    hard-wrapped books —, lines otherwise — extracted web text, wiki text)."""
    text = (text or "").strip()
    if how == "blank_lines" or (how == "auto" and _BLANK.search(text)):
        paras = [re.sub(r"\s*\n\s*", " ", p.strip()) for p in _BLANK.split(text)]
    else:
        paras = _LINE.split(text)
    return [p for p in paras if len(p) >= min_chars]


@dataclass
class LineLabels:
    """Per-line language of one document: label, score and length of each line."""
    labels: list[str]
    scores: list[float]
    sizes: list[int]

    def shares(self) -> dict[str, float]:
        tot = sum(self.sizes)
        out: dict[str, float] = {}
        for lab, n in zip(self.labels, self.sizes):
            out[lab] = out.get(lab, 0.0) + n / tot
        return {k: round(v, 4) for k, v in sorted(out.items(), key=lambda x: -x[1])}

    def confident_shares(self, ok) -> dict[str, float]:
        """Shares of the lines whose (label, score) passes `ok`."""
        tot = sum(self.sizes)
        out: dict[str, float] = {}
        for lab, sc, n in zip(self.labels, self.scores, self.sizes):
            if ok(lab, sc):
                out[lab] = out.get(lab, 0.0) + n / tot
        return out


def line_labels(model, texts: list[str], min_chars: int, how: str = "auto") -> list[LineLabels]:
    """Labels of every paragraph of every text, with one fastText call for the batch."""
    lines = [split_paragraphs(t, min_chars, how) for t in texts]
    flat = [p for ps in lines for p in ps]
    labels, scores = predict(model, flat, 1)
    out, i = [], 0
    for ps in lines:
        out.append(LineLabels([lab[0] for lab in labels[i:i + len(ps)]],
                              [float(s[0]) for s in scores[i:i + len(ps)]], [len(p) for p in ps]))
        i += len(ps)
    return out


def paragraph_shares(model, text: str, min_chars: int, how: str = "auto") -> dict[str, float]:
    """Share of the document's characters per language, by paragraph."""
    ll = line_labels(model, [text], min_chars, how)[0]
    return ll.shares() if ll.sizes else {}


@register
class LidStage(Stage):
    name = "lid"
    annotates = ("lang", "meta")
    Params = LidParams
    params: LidParams
    description = "fastText lid.176 language ID: lang, lang_score (+top-k, paragraph shares); allowed list, min scores."

    def setup(self) -> None:
        import fasttext

        from ..models import lid_model_path

        fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-model warning
        self.model = fasttext.load_model(lid_model_path(self.params.model))

    def process(self, batch: pa.Table) -> BatchResult:
        p = self.params
        texts = batch.column("text").to_pylist()
        labels, scores = predict(self.model, texts, p.top_k, p.max_chars)
        langs, top = [], []
        for t, ls, ss in zip(texts, labels, scores):
            if not (t or "").strip():
                langs.append(p.undetermined)
                top.append(0.0)
            else:
                langs.append(ls[0])
                top.append(float(ss[0]))
        reasons = [self._decide(lang, s) for lang, s in zip(langs, top)]
        counters: dict[str, int] = {}
        meta = self._by_line(batch, texts, langs, reasons, counters) if p.paragraphs or p.keep_mixed else None
        cols = {"lang": pa.array(langs, pa.string()), "lang_score": pa.array(top, pa.float64())}
        if p.top_k > 1:
            cols["lang_topk"] = pa.array([json.dumps({lab: round(float(s), 5) for lab, s in zip(ls, ss)})
                                          for ls, ss in zip(labels, scores)], pa.string())
        if meta is not None:
            cols["meta"] = meta
        for name, arr in cols.items():
            if name in batch.column_names:
                batch = batch.set_column(batch.column_names.index(name), name, arr)
            else:
                batch = batch.append_column(name, arr)
        res = BatchResult.split(batch, self.name, reasons)
        res.counters.update(counters)
        if p.partition_by_lang and res.kept.num_rows:
            self._write_partitions(res.kept)
        return res

    def _min_score(self, lang: str) -> float:
        return self.params.min_scores.get(lang, self.params.min_score)

    def _allowed(self, lang: str) -> bool:
        return not self.params.allowed or lang in self.params.allowed

    def _decide(self, lang: str, score: float) -> str | None:
        if not self._allowed(lang):
            return "lid:not_allowed"
        if score < self._min_score(lang):
            return "lid:low_score"
        return None

    def _by_line(self, batch: pa.Table, texts: list[str], langs: list[str], reasons: list[str | None],
                 counters: dict[str, int]) -> pa.Array:
        """Per-line shares into meta; with keep_mixed, rescue mixed documents (langs and
        reasons are updated in place). Returns the new meta column."""
        p = self.params
        todo = [i for i, r in enumerate(reasons) if p.paragraphs or (r is not None and (texts[i] or "").strip())]
        per_line = dict(zip(todo, line_labels(self.model, [texts[i] for i in todo], p.min_paragraph_chars,
                                              p.paragraph_split)))
        metas = batch.column("meta").to_pylist()
        out = []
        for i, m in enumerate(metas):
            ll = per_line.get(i)
            if ll is None:
                out.append(m)
                continue
            d = meta_loads(m)
            if p.paragraphs:
                d["lang_shares"] = ll.shares() if ll.sizes else {}
            if p.keep_mixed and reasons[i] is not None and ll.sizes:
                ok = ll.confident_shares(lambda lab, sc: self._allowed(lab) and sc >= self._min_score(lab))
                d["lang_allowed_share"] = round(sum(ok.values()), 4)
                if sum(ok.values()) >= p.keep_mixed - 1e-9:
                    reasons[i], langs[i] = None, max(ok, key=lambda lab: ok[lab])
                    d["lang_mixed"] = True
                    d.setdefault("lang_shares", ll.shares())
                    counters["lid:kept_mixed"] = counters.get("lid:kept_mixed", 0) + 1
            out.append(meta_dumps(d))
        return pa.array(out, pa.string())

    def _write_partitions(self, kept: pa.Table) -> None:
        # name from the rows' ids: same batch -> same file, whatever engine or worker
        h = xxhash.xxh3_64_hexdigest("\x1f".join(kept.column("id").to_pylist()).encode())
        langs = kept.column("lang")
        for lang in pc.unique(langs).to_pylist():
            part = kept.filter(pc.equal(langs, lang))
            storage.write_parquet(part, storage.join(self.ctx.stage_dir, "by_lang", f"lang={lang}",
                                                     f"b-{h}.parquet"))
