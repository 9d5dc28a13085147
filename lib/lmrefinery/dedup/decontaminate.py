"""The `decontaminate` stage: drop (or flag) training documents that share an
n-gram with an evaluation or test set.

Evaluation items are normalised like everything else (case, width,
punctuation folded), split into words, or into characters for Chinese and
Japanese, and every n-gram (default 13 words / 13 characters) is hashed to 64
bits. An item shorter than n tokens contributes itself as one n-gram when it
has at least ``min_item_tokens`` tokens (shorter items are too generic to
match on). The index of all evaluation n-grams is built once per worker in
``setup()``; evaluation sets are small next to a training corpus.

Each contaminated document records which items it hit (``decontam_hits``,
a JSON list of "set:item"), and the part counters carry ``hit:SET:ITEM``
(documents hitting that item) and ``contaminated:SET``, so the run's
manifest and report say which evaluation items leaked.
"""
from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from ..core import storage
from ..core.stage import BatchResult, Stage, StageParams, register
from .minhash import CHARS, MIXED, _element_hashes, mixed_ngram_hashes, ngram_hashes64, token_mode, token_stream


class EvalSetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    paths: list[str] = Field(min_length=1, description="files, folders or globs (local or s3://)")
    format: Literal["jsonl", "json", "txt"] = Field("jsonl", description="txt: one item per non-empty line")
    fields: list[str] = Field(default_factory=lambda: ["text"],
                              description="fields joined into the item text; dotted paths, list indices allowed "
                                          "(e.g. instances.0.output)")
    id_field: str | None = Field(None, description="item id field; default: position in the file")
    lang: str | None = Field(None, description="zh/ja forces character n-grams with script: auto; "
                             "default: detect")


class DecontamParams(StageParams):
    eval_sets: list[EvalSetSpec] = Field(min_length=1)
    ngram: int = Field(13, ge=1, description="word n-gram length")
    char_ngram: int = Field(13, ge=1, description="character n-gram length for Chinese and Japanese")
    script: Literal["mixed", "auto", "words", "chars"] = Field(
        "mixed", description="mixed: CJK characters and words in one token stream, so a Latin item inside a "
        "Chinese document (and the reverse) is found; auto: words or characters per text (earlier default)")
    min_item_tokens: int = Field(8, ge=1, description="shorter evaluation items are ignored")
    action: Literal["drop", "flag"] = Field("drop", description="drop: reject; flag: keep with columns")


def _get(obj, path: str):
    cur = obj
    for p in path.split("."):
        if isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                return None
        elif isinstance(cur, dict):
            cur = cur.get(p)
        else:
            return None
        if cur is None:
            return None
    return cur


def load_items(spec: dict) -> list[tuple[str, str, str | None]]:
    """(item id, text, lang) of one evaluation set."""
    out = []
    files = []
    for pat in spec["paths"]:
        files.extend(storage.list_files(pat))
    if not files:
        raise FileNotFoundError(f"eval set {spec['name']!r}: no files match {spec['paths']}")
    for f in sorted(set(files)):
        raw = storage.open_read(f).read().decode("utf-8-sig")
        tag = storage.relpath(f, storage.glob_base(spec["paths"][0])) if len(files) > 1 else ""
        if spec["format"] == "txt":
            recs = [{"text": ln} for ln in raw.splitlines() if ln.strip()]
        elif spec["format"] == "json":
            data = json.loads(raw)
            recs = data if isinstance(data, list) else data.get("data", [])
        else:
            recs = [json.loads(ln) for ln in raw.splitlines() if ln.strip()]
        for i, r in enumerate(recs):
            parts = [_get(r, fld) for fld in spec["fields"]]
            text = "\n".join(str(x) for x in parts if x not in (None, ""))
            iid = _get(r, spec["id_field"]) if spec.get("id_field") else None
            iid = str(iid) if iid is not None else (f"{tag}#{i}" if tag else str(i))
            out.append((iid, text, spec.get("lang")))
    return out


@register
class Decontaminate(Stage):
    name = "decontaminate"
    Params = DecontamParams
    params: DecontamParams
    description = "Drop or flag documents sharing a long n-gram (13 words / CJK characters) with evaluation sets."

    def setup(self) -> None:
        p = self.params
        hashes, owners = [], []
        self.items: list[str] = []
        lengths: set[int] = set()
        for es in p.eval_sets:
            for iid, text, lang in load_items(es.model_dump()):
                el, is_c, mode = self._elements(text, lang)
                n = p.char_ngram if mode == CHARS else p.ngram
                if len(el) < min(n, p.min_item_tokens):
                    continue
                h = self._ngrams(el, is_c, mode, whole_if_short=False)
                if len(h) == 0:  # shorter than its n-gram: one n-gram of all of it
                    h = ngram_hashes64(el, len(el))
                    lengths.add(len(el))
                h = np.unique(h)
                hashes.append(h)
                owners.append(np.full(len(h), len(self.items), dtype=np.int64))
                self.items.append(f"{es.name}:{iid}")
        allh = np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
        own = np.concatenate(owners) if owners else np.empty(0, np.int64)
        order = np.argsort(allh, kind="stable")
        self.hashes, self.owners = allh[order], own[order]
        self.short_lengths = sorted(lengths)

    def _elements(self, text: str | None, lang: str | None) -> tuple[np.ndarray, np.ndarray | None, str]:
        """(element hashes, which tokens are CJK (mixed mode only), tokenisation mode)."""
        mode = token_mode(text, lang, self.params.script)
        toks, is_c = token_stream(text, mode)
        return _element_hashes(toks, mode, is_c), is_c, mode

    def _ngrams(self, el: np.ndarray, is_c: np.ndarray | None, mode: str, whole_if_short: bool) -> np.ndarray:
        p = self.params
        if mode == MIXED:
            assert is_c is not None, "mixed mode needs the CJK mask of the tokens"
            return mixed_ngram_hashes(el, is_c, p.ngram, p.char_ngram,
                                      lambda e, n: ngram_hashes64(e, n, whole_if_short=False), whole_if_short)
        return ngram_hashes64(el, p.char_ngram if mode == CHARS else p.ngram, whole_if_short=whole_if_short)

    def _hits(self, text: str | None, lang: str | None) -> list[int]:
        if len(self.hashes) == 0:
            return []
        el, is_c, mode = self._elements(text, lang)
        hs = [self._ngrams(el, is_c, mode, whole_if_short=False)]
        for L in self.short_lengths:  # short items match any window of their length
            hs.append(ngram_hashes64(el, L, whole_if_short=False))
        h = np.concatenate(hs)
        if len(h) == 0:
            return []
        pos = np.searchsorted(self.hashes, h)
        pos = np.minimum(pos, len(self.hashes) - 1)
        found = np.unique(h[self.hashes[pos] == h])
        if len(found) == 0:
            return []
        lo = np.searchsorted(self.hashes, found, side="left")
        hi = np.searchsorted(self.hashes, found, side="right")
        return sorted({int(o) for a, b in zip(lo, hi) for o in self.owners[a:b]})

    def process(self, batch: pa.Table) -> BatchResult:
        texts = batch.column("text").to_pylist()
        langs = batch.column("lang").to_pylist() if "lang" in batch.column_names else [None] * batch.num_rows
        hits_col: list[str | None] = []
        reasons: list[str | None] = []
        counters: dict[str, int] = {}
        for t, lg in zip(texts, langs):
            hit = [self.items[i] for i in self._hits(t, lg)]
            hits_col.append(json.dumps(hit, ensure_ascii=False) if hit else None)
            if hit:
                sets = sorted({h.split(":", 1)[0] for h in hit})
                for s in sets:
                    counters[f"contaminated:{s}"] = counters.get(f"contaminated:{s}", 0) + 1
                for h in hit:
                    counters[f"hit:{h}"] = counters.get(f"hit:{h}", 0) + 1
                reasons.append(f"eval_overlap:{sets[0]}")
            else:
                reasons.append(None)
        if self.params.action == "flag":
            out = batch
            for col in ("contaminated", "decontam_hits"):
                if col in out.column_names:
                    out = out.drop_columns([col])
            out = out.append_column("contaminated", pa.array([r is not None for r in reasons], pa.bool_()))
            out = out.append_column("decontam_hits", pa.array(hits_col, pa.string()))
            return BatchResult(out, None, counters)
        tb = batch
        if "decontam_hits" in tb.column_names:
            tb = tb.drop_columns(["decontam_hits"])
        tb = tb.append_column("decontam_hits", pa.array(hits_col, pa.string()))
        res = BatchResult.split(tb, self.name, reasons, counters)
        res.kept = res.kept.drop_columns(["decontam_hits"])
        return res


__all__ = ["Decontaminate", "DecontamParams", "EvalSetSpec", "load_items"]
