"""instruct_dedup: exact duplicates of the prompt (user turns, or every turn) across all
inputs, through the exact_dedup rounds (hash here; choose/apply in dedup/exact.py).
`dedup` and `decontaminate` from the dedup family work on these rows too."""
from __future__ import annotations

from typing import Literal

import xxhash
from pydantic import Field

from ..core import storage
from ..core.stage import StageParams, register
from ..dedup import exact as exact_mod
from ..dedup.buckets import BUCKET_DOCS, MAX_BUCKETS
from .stage_base import _InstructStage


# ---------------------------------------------------------------- prompt-keyed exact dedup
class PromptDedupParams(StageParams):
    key: Literal["prompt", "conversation"] = Field("prompt", description="hash the user turns, or all turns")
    prefer_sources: list[str] = Field(default_factory=list)
    buckets: int | None = Field(None, ge=1, le=MAX_BUCKETS, description="key buckets; unset: one per "
                                "`bucket_docs` input documents, at least 8 (dedup/buckets.py)")
    bucket_docs: int = Field(BUCKET_DOCS, ge=1, description="with `buckets` unset: input documents per bucket")


def _prompt_of(meta_json: str, key: str) -> str:
    from ..core.schema import messages_of

    msgs = messages_of(meta_json)
    roles = ("user",) if key == "prompt" else ("system", "user", "assistant")
    return "\n".join(m.get("content") or "" for m in msgs if m.get("role") in roles)


def _prompt_hash_task(t: exact_mod.HashTask[PromptDedupParams]) -> exact_mod.HashResult:
    p = t.params
    tbl = storage.read_parquet(t.input, columns=["id", "text", "source", "meta"])
    pref = {s: i for i, s in enumerate(p.prefer_sources)}
    rows = exact_mod.key_buckets(t.buckets)
    for r, (i, s, m, txt) in enumerate(zip(tbl.column("id").to_pylist(), tbl.column("source").to_pylist(),
                                          tbl.column("meta").to_pylist(), tbl.column("text").to_pylist())):
        body = _prompt_of(m, p.key) or txt or ""
        k = xxhash.xxh3_64_intdigest(exact_mod.normalise_for_hash(body).encode("utf-8"))
        rows[k % t.buckets].append((k, "text", t.part, r, i, pref.get(s, len(pref)), 0))
    exact_mod.write_key_buckets(t, rows)
    return exact_mod.HashResult(t.part, tbl.num_rows)


@register
class InstructDedup(_InstructStage):
    name = "instruct_dedup"
    kind = "global"
    Params = PromptDedupParams
    params: PromptDedupParams
    code_outside = ("lmrefinery.segment", "lmrefinery.dedup")   # the exact_dedup rounds it runs
    description = "Exact duplicates of the prompt (user turns) across all inputs, via the exact_dedup rounds."

    def execute(self, job) -> list[dict]:
        return exact_mod.run_exact_rounds(job, self.name, self.params, _prompt_hash_task)
