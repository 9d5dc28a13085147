"""The rounds of an exact-key dedup, shared by `exact_dedup` (text and URL keys) and
`instruct_dedup` (prompt keys). Three rounds of map tasks over files, engine-neutral
and bounded in memory:
  1. hash   - stage-specific: each part writes (key, kind, part, row, id, rank) rows
              into B bucket files (`write_key_buckets`); B is the stage's `buckets`,
              or when unset sized from the input's documents (dedup/buckets.py);
  2. choose - each bucket picks the keeper of every key (lowest rank: preferred
              source, then longest if asked, then input order, then id) and
              writes the losers back, split by the part they came from;
  3. apply  - each part drops its losers, recording `duplicate_of`.
The kept document is the same whatever the number of workers or engine.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import pyarrow as pa

from ..core import storage
from .buckets import auto_buckets, why_auto
from .drops import DROP_SCHEMA, PartOut, apply_drops, part_outs, rows_table

_KEY_SCHEMA = pa.schema([("key", pa.uint64()), ("kind", pa.string()), ("part", pa.int32()),
                         ("row", pa.int64()), ("id", pa.string()), ("src_rank", pa.int32()),
                         ("neg_len", pa.int64())])
KeyRow = tuple[int, str, int, int, str, int, int]  # the columns of _KEY_SCHEMA, in order


class BucketParams(Protocol):
    @property
    def buckets(self) -> int | None: ...

    @property
    def bucket_docs(self) -> int: ...


P = TypeVar("P", bound=BucketParams)


@dataclass(frozen=True)
class HashTask(Generic[P]):
    part: int
    input: str
    work: str
    params: P
    buckets: int  # B: the params' buckets, or the count sized from the input


@dataclass(frozen=True)
class HashResult:
    part: int
    rows: int


@dataclass(frozen=True)
class ChooseTask:
    bucket: int
    n_parts: int
    work: str


@dataclass(frozen=True)
class ChooseResult:
    bucket: int
    rows: int


@dataclass(frozen=True)
class ApplyTask:
    out: PartOut
    work: str
    buckets: int


def key_buckets(buckets: int) -> dict[int, list[KeyRow]]:
    """Empty key rows of every bucket, for a hash round to fill."""
    return {b: [] for b in range(buckets)}


def write_key_buckets(t: HashTask[Any], rows: dict[int, list[KeyRow]]) -> None:
    """Round 1 output: one key file per (bucket, part); empty buckets too, so the
    choose round can open every file without listing."""
    for b, rs in rows.items():
        storage.write_parquet(rows_table(_KEY_SCHEMA, rs),
                              storage.join(t.work, "keys", f"b{b:04d}", f"p{t.part:05d}.parquet"))


def choose_keepers(t: ChooseTask) -> ChooseResult:
    b = t.bucket
    tables = [storage.read_parquet(storage.join(t.work, "keys", f"b{b:04d}", f"p{p:05d}.parquet"))
              for p in range(t.n_parts)]
    tb = pa.concat_tables(tables) if tables else _KEY_SCHEMA.empty_table()
    drops: dict[int, list[tuple[int, str, str]]] = {p: [] for p in range(t.n_parts)}
    if tb.num_rows:
        tb = tb.sort_by([("kind", "ascending"), ("key", "ascending"), ("src_rank", "ascending"),
                         ("neg_len", "ascending"), ("part", "ascending"), ("row", "ascending"),
                         ("id", "ascending")])
        key = tb.column("key").to_numpy()
        kind = tb.column("kind").to_pylist()
        part = tb.column("part").to_numpy()
        row = tb.column("row").to_numpy()
        ids = tb.column("id").to_pylist()
        keeper = ""
        for j in range(tb.num_rows):
            if j == 0 or key[j] != key[j - 1] or kind[j] != kind[j - 1]:
                keeper = ids[j]
                continue
            drops[int(part[j])].append((int(row[j]), "exact_duplicate" if kind[j] == "text" else "url_duplicate",
                                        keeper))
    for p, rs in drops.items():
        storage.write_parquet(rows_table(DROP_SCHEMA, rs),
                              storage.join(t.work, "drops", f"p{p:05d}", f"b{b:04d}.parquet"))
    return ChooseResult(b, tb.num_rows)


def drop_rows(t: ApplyTask) -> dict[str, Any]:
    """The part's marker (core/parts.py) after its losers are dropped."""
    files = [storage.join(t.work, "drops", f"p{t.out.part:05d}", f"b{b:04d}.parquet") for b in range(t.buckets)]
    return apply_drops(t.out, files)


def bucket_count(job: Any, params: BucketParams) -> int:
    """The params' buckets, or when unset one sized from the input (recorded on the job
    for the manifest)."""
    if params.buckets is not None:
        return params.buckets
    docs = job.documents()
    b = auto_buckets(docs, params.bucket_docs)
    job.resolve("buckets", b, why_auto(docs, params.bucket_docs))
    return b


def run_exact_rounds(job: Any, stage_name: str, params: P,
                     hash_task: Callable[[HashTask[P]], HashResult]) -> list[dict[str, Any]]:
    """hash (stage-specific keys) -> choose -> apply: the parts' markers."""
    work = job.work_dir
    n = len(job.inputs)
    B = bucket_count(job, params)
    job.map(hash_task, [HashTask(i, p, work, params, B) for i, p in enumerate(job.inputs)], "hash")
    job.map(choose_keepers, [ChooseTask(b, n, work) for b in range(B)], "choose")
    parts: list[dict[str, Any]] = job.map(drop_rows, [ApplyTask(out, work, B)
                                                      for out in part_outs(job, stage_name)], "apply")
    storage.delete_prefix(work)
    return parts
