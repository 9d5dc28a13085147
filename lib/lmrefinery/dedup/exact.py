"""The `exact_dedup` stage: one document per normalised text (and, optionally,
per URL) across every input of the run.

Three rounds of map tasks over files, engine-neutral and bounded in memory:
  1. hash   - each part writes (key, part, row, id, rank) into B bucket files;
  2. choose - each bucket picks the keeper of every key (lowest rank: preferred
              source, then longest if asked, then input order, then id) and
              writes the losers back, split by the part they came from;
  3. apply  - each part drops its losers, recording `duplicate_of`.
The kept document is the same whatever the number of workers or engine.
"""
from __future__ import annotations

import re
import time
import unicodedata

import numpy as np
import pyarrow as pa
import xxhash
from pydantic import Field

from ..core import storage
from ..core.parts import finish_part
from ..core.schema import with_reason
from ..core.stage import BatchResult, Stage, StageParams, register

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
    buckets: int = Field(8, ge=1, le=4096)


_KEY_SCHEMA = pa.schema([("key", pa.uint64()), ("kind", pa.string()), ("part", pa.int32()),
                         ("row", pa.int64()), ("id", pa.string()), ("src_rank", pa.int32()),
                         ("neg_len", pa.int64())])
_DROP_SCHEMA = pa.schema([("row", pa.int64()), ("reason", pa.string()), ("duplicate_of", pa.string())])


def _hash_task(t: dict) -> dict:
    p = t["params"]
    tbl = storage.read_parquet(t["input"], columns=["id", "text", "source", "url"])
    texts = tbl.column("text").to_pylist()
    ids = tbl.column("id").to_pylist()
    srcs = tbl.column("source").to_pylist()
    urls = tbl.column("url").to_pylist()
    pref = {s: i for i, s in enumerate(p["prefer_sources"])}
    rows = {b: [] for b in range(p["buckets"])}
    for r, (txt, i, s, u) in enumerate(zip(texts, ids, srcs, urls)):
        rank = pref.get(s, len(pref))
        nl = -len(txt or "") if p["keep"] == "longest" else 0
        k = text_key(txt)
        rows[k % p["buckets"]].append((k, "text", t["part"], r, i, rank, nl))
        if p["by_url"]:
            uk = url_key(u)
            if uk is not None:
                rows[uk % p["buckets"]].append((uk, "url", t["part"], r, i, rank, nl))
    write_key_buckets(t, rows)
    return {"part": t["part"], "rows": tbl.num_rows}


def write_key_buckets(t: dict, rows: dict[int, list]) -> None:
    """Round 1 output: one key file per (bucket, part); empty buckets too, so the
    choose round can open every file without listing."""
    for b, rs in rows.items():
        cols = list(zip(*rs)) if rs else [[] for _ in _KEY_SCHEMA]
        tb = pa.table({f.name: pa.array(list(c), f.type) for f, c in zip(_KEY_SCHEMA, cols)}, schema=_KEY_SCHEMA)
        storage.write_parquet(tb, storage.join(t["work"], "keys", f"b{b:04d}", f"p{t['part']:05d}.parquet"))


def _choose_task(t: dict) -> dict:
    b = t["bucket"]
    tables = [storage.read_parquet(storage.join(t["work"], "keys", f"b{b:04d}", f"p{p:05d}.parquet"))
              for p in range(t["n_parts"])]
    tb = pa.concat_tables(tables) if tables else _KEY_SCHEMA.empty_table()
    drops: dict[int, list] = {p: [] for p in range(t["n_parts"])}
    if tb.num_rows:
        tb = tb.sort_by([("kind", "ascending"), ("key", "ascending"), ("src_rank", "ascending"),
                         ("neg_len", "ascending"), ("part", "ascending"), ("row", "ascending"),
                         ("id", "ascending")])
        key = tb.column("key").to_numpy()
        kind = tb.column("kind").to_pylist()
        part = tb.column("part").to_numpy()
        row = tb.column("row").to_numpy()
        ids = tb.column("id").to_pylist()
        keeper = None
        for j in range(tb.num_rows):
            if j == 0 or key[j] != key[j - 1] or kind[j] != kind[j - 1]:
                keeper = ids[j]
                continue
            drops[int(part[j])].append((int(row[j]), "exact_duplicate" if kind[j] == "text" else "url_duplicate",
                                        keeper))
    for p, rs in drops.items():
        cols = list(zip(*rs)) if rs else [[], [], []]
        d = pa.table({f.name: pa.array(list(c), f.type) for f, c in zip(_DROP_SCHEMA, cols)}, schema=_DROP_SCHEMA)
        storage.write_parquet(d, storage.join(t["work"], "drops", f"p{p:05d}", f"b{b:04d}.parquet"))
    return {"bucket": b, "rows": tb.num_rows}


def apply_drops(t: dict, drop_files: list[str], stage_name: str, counters: dict | None = None,
                extra: dict | None = None) -> dict:
    """Shared by the dedup stages: remove the rows a global decision dropped."""
    t0 = time.time()
    tbl = storage.read_parquet(t["input"])
    reason: dict[int, tuple[str, str]] = {}
    for f in drop_files:
        d = storage.read_parquet(f)
        for r, why, of in zip(d.column("row").to_pylist(), d.column("reason").to_pylist(),
                              d.column("duplicate_of").to_pylist()):
            reason.setdefault(r, (why, of))  # text reason sorts before url: first wins
    mask = np.ones(tbl.num_rows, dtype=bool)
    for r in reason:
        mask[r] = False
    kept = tbl.filter(pa.array(mask))
    idx = np.flatnonzero(~mask)
    rejected = None
    if len(idx):
        rej = tbl.take(pa.array(idx))
        rej = rej.append_column("duplicate_of", pa.array([reason[int(i)][1] for i in idx], pa.string()))
        rejected = with_reason(rej, stage_name, [reason[int(i)][0] for i in idx])
    return finish_part(t, [BatchResult(kept, rejected, dict(counters or {}))], tbl.num_rows, t0, extra)


def _apply_task(t: dict) -> dict:
    files = [storage.join(t["work"], "drops", f"p{t['part']:05d}", f"b{b:04d}.parquet")
             for b in range(t["params"]["buckets"])]
    return apply_drops(t, files, t["stage"])


@register
class ExactDedup(Stage):
    name = "exact_dedup"
    kind = "global"
    Params = ExactParams
    description = ("Drop exact duplicates (normalised-text hash, optionally URL) across all inputs; "
                   "deterministic keeper.")

    def execute(self, job) -> list[dict]:
        return run_exact_rounds(job, self.name, self.params.model_dump(), _hash_task)


def run_exact_rounds(job, stage_name: str, params: dict, hash_task) -> list[dict]:
    """hash (stage-specific keys) -> choose -> apply; shared by every exact-key dedup."""
    work = job.work_dir
    n = len(job.inputs)
    base = dict(params=params, work=work, stage=stage_name, stage_dir=job.stage_dir, fingerprint=job.fingerprint)
    job.map(hash_task, [dict(base, input=p, part=i) for i, p in enumerate(job.inputs)], "hash")
    job.map(_choose_task, [dict(base, bucket=b, n_parts=n) for b in range(params["buckets"])], "choose")
    parts = job.map(_apply_task, [dict(base, input=p, part=i, input_desc=storage.relpath(p, job.ctx["output_root"]))
                                  for i, p in enumerate(job.inputs)], "apply")
    storage.delete_prefix(work)
    return parts
