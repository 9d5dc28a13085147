"""The worker side of the commit protocol: run a stage on one part, write its kept rows
and rejects, check the part's accounting and write its marker (`_parts/part-NNNNN.json`).
The driver (core/runner.py) commits a stage's manifest once every part has a marker.

`run_chain` runs consecutive map stages on one part in one pass (fusion): each stage
still writes its own part files and marker, byte for byte what it writes unfused, but
the next stage takes the kept rows from memory instead of reading the Parquet part back,
and the engine schedules one task per part instead of one per part and stage.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import manifest as mf
from . import storage
from .schema import concat, conform, with_reason
from .stage import BatchResult, Stage, StageContext, get_stage, process_for_sources

Task = Mapping[str, Any]  # a global stage's own task, as finish_part still accepts it
Marker = dict[str, Any]  # a part's marker (_parts/part-NNNNN.json)


@dataclass(frozen=True)
class PartTask:
    """One stage on one part: what a worker needs."""

    stage: str
    params: dict[str, Any]       # the stage's params, JSON form
    ctx: dict[str, Any]          # StageContext fields
    stage_dir: str
    part: int
    fingerprint: str
    input: Any = None            # the part's Parquet URI; a read stage: its input object (a dict)
    input_desc: str | None = None  # the input as the marker records it (output-relative)
    sources: list[str] | None = None
    batch_size: int = 2048


@dataclass(frozen=True)
class ChainTask:
    """Consecutive map stages on one part, run in one pass (fusion)."""

    steps: list[PartTask]


def global_part(stage: str, stage_dir: str, fingerprint: str, part: int, input_desc: str | None) -> PartTask:
    """The PartTask a global stage's last round commits one output part with."""
    return PartTask(stage, {}, {}, stage_dir, part, fingerprint, input_desc=input_desc)


class AccountingError(RuntimeError):
    pass


def _h(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def part_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def length_hist(table: pa.Table) -> dict[str, int]:
    """Counts of text lengths in log2 buckets ("2^k" = [2^k, 2^(k+1)))."""
    if table.num_rows == 0 or "text" not in table.column_names:
        return {}
    lens = pc.utf8_length(table.column("text").fill_null("")).to_numpy(zero_copy_only=False)
    out: Counter[str] = Counter()
    for n in lens:
        out[str(int(math.log2(n)) if n > 0 else -1)] += 1
    return dict(out)


def text_chars(table: pa.Table) -> int:
    """Unicode characters of text in a table (for the report's character funnel)."""
    if table.num_rows == 0 or "text" not in table.column_names:
        return 0
    return int(pc.sum(pc.utf8_length(table.column("text").fill_null(""))).as_py() or 0)


_STAGES: dict[str, Stage] = {}


def stage_instance(name: str, params: dict[str, Any], ctx: dict[str, Any]) -> Stage:
    """One set-up instance per stage, params and context in a worker process."""
    key = _h([name, params, ctx])
    if key not in _STAGES:
        cls = get_stage(name)
        st = cls(cls.Params(**params), StageContext(**ctx))
        st.setup()
        _STAGES[key] = st
    return _STAGES[key]


def write_part(stage_dir: str, i: int, kept: pa.Table, rejected: pa.Table | None) -> tuple[Marker, Marker]:
    kept = conform(kept)
    out = storage.write_parquet(kept, storage.join(stage_dir, "data", part_name(i)))
    out["path"] = f"data/{part_name(i)}"
    rej = conform(rejected) if rejected is not None and rejected.num_rows else None
    if rej is None:
        rej = with_reason(conform(kept.slice(0, 0)), "", [])
    ro = storage.write_parquet(rej, storage.join(stage_dir, "rejects", part_name(i)))
    ro["path"] = f"rejects/{part_name(i)}"
    return out, ro


def _finish(task: PartTask, results: list[BatchResult], n_in: int | None, t0: float,
            extra: dict[str, Any] | None = None) -> tuple[Marker, pa.Table]:
    stage_dir, i = task.stage_dir, task.part
    kept = conform(concat([r.kept for r in results]))
    rejected = concat([r.rejected for r in results if r.rejected is not None])
    reasons: Counter[str] = Counter()
    if rejected.num_rows:
        reasons.update(rejected.column("reject_reason").to_pylist())
    counters: Counter[str] = Counter()
    for r in results:
        counters.update(r.counters)
    if n_in is None:
        n_in = kept.num_rows + rejected.num_rows
    if n_in != kept.num_rows + rejected.num_rows:
        raise AccountingError(f"stage {task.stage} part {i}: in={n_in} but kept={kept.num_rows} + "
                              f"rejected={rejected.num_rows}")
    out, ro = write_part(stage_dir, i, kept, rejected)
    marker = {"part": i, "fingerprint": task.fingerprint, "in": n_in, "kept": kept.num_rows,
              "rejected": dict(reasons), "counters": dict(counters), "output": out, "rejects": ro,
              "length_hist": length_hist(kept), "chars": {"kept": text_chars(kept), "rejected": text_chars(rejected)},
              "seconds": round(time.time() - t0, 3),
              "input": task.input_desc}
    if extra:
        marker.update(extra)
    mf.write_json(storage.join(stage_dir, "_parts", f"part-{i:05d}.json"), marker)
    return marker, kept


def finish_part(task: PartTask, results: list[BatchResult], n_in: int | None, t0: float,
                extra: dict[str, Any] | None = None) -> Marker:
    """Write a part's kept rows and rejects, check its accounting, commit its marker
    (a global stage's last round calls this once per part)."""
    return _finish(task, results, n_in, t0, extra)[0]


def reuse_part(task: PartTask) -> Marker | None:
    m = mf.read_json(storage.join(task.stage_dir, "_parts", f"part-{task.part:05d}.json"))
    if m and m.get("fingerprint") == task.fingerprint:
        if storage.exists(storage.join(task.stage_dir, m["output"]["path"])):
            m["skipped"] = True
            return m
    return None


def _batches(task: PartTask, previous: pa.Table | None) -> Iterator[pa.Table]:
    """The part in batches of `batch_size` rows: read from its Parquet file, or sliced from
    the kept rows a fused stage before handed over (the same rows, the same windows)."""
    size = task.batch_size
    if previous is None:
        for batch in storage.iter_parquet_batches(task.input, batch_size=size):
            yield pa.Table.from_batches([batch])
    else:
        for offset in range(0, previous.num_rows, size):
            yield previous.slice(offset, size)


def run_step(task: PartTask, previous: pa.Table | None = None) -> tuple[Marker, pa.Table | None]:
    """One stage on one part: (its marker, its kept rows, or None when a committed marker
    was reused, so the next stage reads the part file)."""
    done = reuse_part(task)
    if done:
        return done, None
    t0 = time.time()
    st = stage_instance(task.stage, task.params, task.ctx)
    if st.kind == "read":
        return _finish(task, list(st.read(task.input)), None, t0)
    results, n_in = [], 0
    for tb in _batches(task, previous):
        n_in += tb.num_rows
        results.append(process_for_sources(st, tb, task.sources))
    if n_in == 0:
        empty = previous if previous is not None else conform(storage.read_parquet(task.input))
        results.append(st.process(empty.slice(0, 0)))
    return _finish(task, results, n_in, t0)


def run_part(task: PartTask) -> Marker:
    """The one worker entry point for an unfused map or read stage (runs on Ray or Spark)."""
    return run_step(task)[0]


def run_chain(task: ChainTask) -> list[Marker]:
    """Fused map stages on one part: ``task.steps`` are the stages' part tasks in order."""
    markers: list[Marker] = []
    previous: pa.Table | None = None
    for step in task.steps:
        marker, previous = run_step(step, previous)
        markers.append(marker)
    return markers
