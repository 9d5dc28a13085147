"""Round 2 of tokenize, per input part: each document becomes 0..k instances (train
copies from the mixing plan times its own repeat count; one for validation); each
instance gets a shuffle key = hash(seed, id, copy) and goes to the shard owning that
key range (`_work/scat/<split>/sNNNNN/pNNNNN.parquet`). Then the part's rows are
committed: kept with n_tokens/split/copies, or rejected with a reason."""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..core import storage
from ..core.parts import finish_part
from ..core.stage import BatchResult
from .plan import copies_of
from .work import TokenizeRun, h64, part_file, read_work, write_work

Instance = tuple[int, int, int]   # (shuffle key, row, copy)


@dataclass(frozen=True)
class ScatterTask:
    run: TokenizeRun
    part: int
    input: str
    input_desc: str
    plan: dict[str, Any]        # plan_mixing(...)["plan"]
    n_shards: dict[str, int]


def shard_of(key: int, n: int) -> int:
    return (key * n) >> 64


def _instances(t: ScatterTask, enc: pa.Table) -> tuple[dict[tuple[str, int], list[Instance]], np.ndarray,
                                                       list[str | None], int]:
    """(split, shard) -> its instances; copies and reject reason per row; upsampled copies."""
    ids = enc.column("id").to_pylist()
    srcs = enc.column("source").to_pylist()
    split = enc.column("split").to_pylist()
    empty = enc.column("empty").to_pylist()
    mixkey = enc.column("mixkey").to_pylist()
    rep = enc.column("repeat").to_pylist() if "repeat" in enc.column_names else [1] * enc.num_rows
    plan = {k: dict(v, extra=set(v["extra"])) for k, v in t.plan.items()}
    inst: dict[tuple[str, int], list[Instance]] = defaultdict(list)
    copies = np.zeros(enc.num_rows, np.int32)
    reasons: list[str | None] = [None] * enc.num_rows
    extra = 0
    for r in range(enc.num_rows):
        if empty[r]:
            reasons[r] = "tokenize:empty"
            continue
        c = 1 if split[r] == "valid" else copies_of(srcs[r], mixkey[r], plan) * rep[r]
        copies[r] = c
        if c == 0:
            reasons[r] = "mix:downsampled"
            continue
        extra += c - 1
        for k in range(c):
            key = h64(t.run.seed, "shuffle", ids[r], k)
            inst[(split[r], shard_of(key, t.n_shards[split[r]]))].append((key, r, k))
    return inst, copies, reasons, extra


def _write_instances(t: ScatterTask, enc: pa.Table, inst: dict[tuple[str, int], list[Instance]]) -> None:
    """One take for all instances, ordered by (split, shard); then a slice per shard file."""
    groups = sorted(inst)
    rows = [r for g in groups for _, r, _ in inst[g]]
    if not rows:
        return
    taken = enc.select(["id", "source", "tokens", "mask"]).take(pa.array(rows, pa.int64()))
    at = 0
    for sp, j in groups:
        items = inst[(sp, j)]
        sub = taken.slice(at, len(items))
        at += len(items)
        sub = sub.add_column(0, "key", pa.array([k for k, _, _ in items], pa.uint64())) \
            .add_column(2, "copy", pa.array([c for _, _, c in items], pa.int32()))
        write_work(sub, t.run.work_file("scat", sp, f"s{j:05d}", part_file(t.part)))


def scatter_part(t: ScatterTask) -> dict[str, Any]:
    """Scatter one part's instances to their shards and commit the part; returns its marker."""
    t0 = time.time()
    enc = read_work(t.run.work_file("enc", part_file(t.part)))
    inst, copies, reasons, extra = _instances(t, enc)
    _write_instances(t, enc, inst)
    ntok = enc.column("n_tokens").to_pylist()
    tb = storage.read_parquet(t.input)
    tb = tb.drop_columns([c for c in ("n_tokens", "split", "copies") if c in tb.column_names])
    tb = tb.append_column("n_tokens", enc.column("n_tokens")).append_column("split", enc.column("split")) \
        .append_column("copies", pa.array(copies, pa.int32()))
    counters = {"tokenize:instances": int(copies.sum()), "tokenize:upsampled_copies": int(extra),
                "tokenize:tokens_out": int(sum(ntok[r] * int(copies[r]) for r in range(enc.num_rows)))}
    res = BatchResult.split(tb, t.run.stage, reasons, counters)
    return finish_part(t.run.part_task(t.part, t.input_desc), [res], tb.num_rows, t0)
