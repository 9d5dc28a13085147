"""The `lid` stage: language identification with fastText lid.176.

Newlines are replaced by spaces before prediction (fastText predicts one line),
the whole batch goes to fastText in one call, and every row gets `lang` (the
base column) and `lang_score`. Rows whose language is not in `allowed`
(empty = all) are rejected as `lid:not_allowed`; rows whose score is below the
minimum for their language (`min_scores[lang]`, else `min_score`) as
`lid:low_score`. Optional: top-k labels in `lang_topk` (JSON), per-paragraph
language shares in `meta["lang_shares"]` for mixed documents, and a copy of the
kept rows partitioned by language under `<stage dir>/by_lang/lang=xx/`.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field

from ..core import storage
from ..core.schema import meta_dumps, meta_loads
from ..core.stage import BatchResult, Stage, StageParams, register

_PARA = re.compile(r"\n\s*\n")
_LABEL = "__label__"


class LidParams(StageParams):
    model: str | None = Field(None, description="lid.176 .bin/.ftz path, s3:// or https:// URL; None = cache")
    allowed: list[str] = Field(default_factory=list, description="languages kept (ISO 639 codes); empty = all")
    min_score: float = Field(0.65, ge=0.0, le=1.0, description="minimum top-1 score (DataTrove's default 0.65)")
    min_scores: dict[str, float] = Field(default_factory=dict, description="per-language minimum score")
    top_k: int = Field(1, ge=1, le=176, description=">1: also record the top-k labels in `lang_topk`")
    max_chars: int = Field(4000, ge=0, description="predict on the first N characters (0 = whole text); "
                           "fastText's cost is linear in length and a page of text decides the language")
    paragraphs: bool = Field(False, description="also record per-paragraph language shares in meta")
    min_paragraph_chars: int = Field(30, ge=1)
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


def paragraph_shares(model, text: str, min_chars: int) -> dict[str, float]:
    """Share of the document's characters per language, by paragraph."""
    paras = [p.strip() for p in _PARA.split(text or "")]
    paras = [p for p in paras if len(p) >= min_chars]
    if not paras:
        return {}
    labels, _ = predict(model, paras, 1)
    tot = sum(len(p) for p in paras)
    shares: dict[str, float] = {}
    for p, lab in zip(paras, labels):
        shares[lab[0]] = shares.get(lab[0], 0.0) + len(p) / tot
    return {k: round(v, 4) for k, v in sorted(shares.items(), key=lambda x: -x[1])}


@register
class LidStage(Stage):
    name = "lid"
    Params = LidParams
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
        allowed = set(p.allowed)
        reasons = []
        for lang, s in zip(langs, top):
            if allowed and lang not in allowed:
                reasons.append("lid:not_allowed")
            elif s < p.min_scores.get(lang, p.min_score):
                reasons.append("lid:low_score")
            else:
                reasons.append(None)
        cols = {"lang": pa.array(langs, pa.string()), "lang_score": pa.array(top, pa.float64())}
        if p.top_k > 1:
            cols["lang_topk"] = pa.array([json.dumps({l: round(float(s), 5) for l, s in zip(ls, ss)})
                                          for ls, ss in zip(labels, scores)], pa.string())
        if p.paragraphs:
            metas = batch.column("meta").to_pylist()
            new_meta = []
            for t, m in zip(texts, metas):
                d = meta_loads(m)
                d["lang_shares"] = paragraph_shares(self.model, t, p.min_paragraph_chars)
                new_meta.append(meta_dumps(d))
            cols["meta"] = pa.array(new_meta, pa.string())
        for name, arr in cols.items():
            if name in batch.column_names:
                batch = batch.set_column(batch.column_names.index(name), name, arr)
            else:
                batch = batch.append_column(name, arr)
        res = BatchResult.split(batch, self.name, reasons)
        if p.partition_by_lang and res.kept.num_rows:
            self._write_partitions(res.kept)
        return res

    def _write_partitions(self, kept: pa.Table) -> None:
        # name from the rows' ids: same batch -> same file, whatever engine or worker
        h = xxhash.xxh3_64_hexdigest("\x1f".join(kept.column("id").to_pylist()).encode())
        langs = kept.column("lang")
        for lang in pc.unique(langs).to_pylist():
            part = kept.filter(pc.equal(langs, lang))
            storage.write_parquet(part, storage.join(self.ctx.stage_dir, "by_lang", f"lang={lang}",
                                                     f"b-{h}.parquet"))
