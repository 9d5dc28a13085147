"""The `exact_dedup` stage: one document per normalised text (and, optionally,
per URL) across every input of the run.

Its hash round keys each document by its normalised text (and URL); the choose and
apply rounds are the shared exact-key rounds of exact_rounds.py. The key functions
here (`normalise_for_hash`, `text_key`, `url_key`) are used across the package.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

import xxhash
from pydantic import Field

from ..core import storage
from ..core.stage import StageParams, register
from .buckets import BUCKET_DOCS, MAX_BUCKETS
from .drops import DedupStage
from .exact_rounds import HashResult, HashTask, key_buckets, run_exact_rounds, write_key_buckets

_NONWORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_for_hash(t: str) -> str:
    """Case, width, whitespace and punctuation differences do not make a new text."""
    return _NONWORD.sub(" ", unicodedata.normalize("NFKC", t or "").casefold()).strip()


def text_key(t: str) -> int:
    return xxhash.xxh3_64_intdigest(normalise_for_hash(t).encode("utf-8"))


def url_key(u: str | None) -> int | None:
    from ..ingest.urls import uri_key

    u = uri_key(u)  # brackets, scheme/host case, default port, fragment
    if not u:
        return None
    u = u.lower().rstrip("/")
    u = re.sub(r"^https?://(www\.)?", "", u)
    return xxhash.xxh3_64_intdigest(("url:" + u).encode())


class ExactParams(StageParams):
    keep: str = Field("first", pattern="^(first|longest)$", description="which copy survives")
    prefer_sources: list[str] = Field(default_factory=list, description="sources ranked first, in this order")
    by_url: bool = Field(False, description="also drop later documents with the same URL")
    buckets: int | None = Field(None, ge=1, le=MAX_BUCKETS, description="key buckets of the choose round; "
                                "unset: one per `bucket_docs` input documents, at least 8 (dedup/buckets.py)")
    bucket_docs: int = Field(BUCKET_DOCS, ge=1, description="with `buckets` unset: input documents per bucket")


def _hash_task(t: HashTask[ExactParams]) -> HashResult:
    p = t.params
    tbl = storage.read_parquet(t.input, columns=["id", "text", "source", "url"])
    texts = tbl.column("text").to_pylist()
    ids = tbl.column("id").to_pylist()
    srcs = tbl.column("source").to_pylist()
    urls = tbl.column("url").to_pylist()
    pref = {s: i for i, s in enumerate(p.prefer_sources)}
    B = t.buckets
    rows = key_buckets(B)
    for r, (txt, i, s, u) in enumerate(zip(texts, ids, srcs, urls)):
        rank = pref.get(s, len(pref))
        nl = -len(txt or "") if p.keep == "longest" else 0
        k = text_key(txt)
        rows[k % B].append((k, "text", t.part, r, i, rank, nl))
        if p.by_url:
            uk = url_key(u)
            if uk is not None:
                rows[uk % B].append((uk, "url", t.part, r, i, rank, nl))
    write_key_buckets(t, rows)
    return HashResult(t.part, tbl.num_rows)


@register
class ExactDedup(DedupStage):
    name = "exact_dedup"
    Params = ExactParams
    params: ExactParams
    description = ("Drop exact duplicates (normalised-text hash, optionally URL) across all inputs; "
                   "deterministic keeper.")

    def execute(self, job: Any) -> list[dict[str, Any]]:
        return run_exact_rounds(job, self.name, self.params, _hash_task)


__all__ = ["ExactDedup", "ExactParams", "HashResult", "HashTask", "key_buckets", "normalise_for_hash",
           "run_exact_rounds", "text_key", "url_key", "write_key_buckets"]
