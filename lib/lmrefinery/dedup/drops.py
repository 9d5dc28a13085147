"""What the dedup stages share at the end of their rounds: drop decisions as
(row, reason, duplicate_of) files, and the apply step that removes those rows from an
input part and commits the part through the commit protocol (core/parts.py).

`DedupStage` is the base of the family's global stages; its module lives in dedup/,
so the code hash of a stage in a sub-package (near/) covers these shared modules too."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..core import storage
from ..core.parts import PartTask, finish_part, global_part
from ..core.schema import with_reason
from ..core.stage import BatchResult, Stage

DROP_SCHEMA = pa.schema([("row", pa.int64()), ("reason", pa.string()), ("duplicate_of", pa.string())])


class DedupStage(Stage):
    """A global stage of the dedup family (exact_dedup, dedup)."""

    kind = "global"


def rows_table(schema: pa.Schema, rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    """A table of `schema` from row tuples (the schema's columns in order), empty or not."""
    cols: list[Sequence[Any]] = list(zip(*rows)) if rows else [[] for _ in schema]
    return pa.table({f.name: pa.array(list(c), f.type) for f, c in zip(schema, cols)}, schema=schema)


@dataclass(frozen=True)
class PartOut:
    """One input part of a global stage and where its result goes."""

    part: int
    input: str
    input_desc: str
    stage: str
    stage_dir: str
    fingerprint: str

    def protocol_task(self) -> PartTask:
        """What the commit protocol (core.parts.finish_part) writes this part's marker from."""
        return global_part(self.stage, self.stage_dir, self.fingerprint, self.part, self.input_desc)


def part_outs(job: Any, stage: str) -> list[PartOut]:
    """A PartOut for every input part of a global stage's job."""
    return [PartOut(i, p, storage.relpath(p, job.ctx["output_root"]), stage, job.stage_dir, job.fingerprint)
            for i, p in enumerate(job.inputs)]


def apply_drops(out: PartOut, drop_files: list[str], counters: dict[str, int] | None = None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Remove the rows a global decision dropped from one part and commit the part:
    its marker (core/parts.py)."""
    t0 = time.time()
    tbl = storage.read_parquet(out.input)
    reason: dict[int, tuple[str, str]] = {}
    for f in drop_files:
        d = storage.read_parquet(f)
        for r, why, of in zip(d.column("row").to_pylist(), d.column("reason").to_pylist(),
                              d.column("duplicate_of").to_pylist()):
            # a row dropped both for its text and for its URL (exact_dedup by_url): the text
            # reason and keeper, whichever bucket (file) each key fell in
            if r not in reason or (why == "exact_duplicate" and reason[r][0] != why):
                reason[r] = (why, of)
    mask = np.ones(tbl.num_rows, dtype=bool)
    for r in reason:
        mask[r] = False
    kept = tbl.filter(pa.array(mask))
    idx = np.flatnonzero(~mask)
    rejected = None
    if len(idx):
        rej = tbl.take(pa.array(idx))
        rej = rej.append_column("duplicate_of", pa.array([reason[int(i)][1] for i in idx], pa.string()))
        rejected = with_reason(rej, out.stage, [reason[int(i)][0] for i in idx])
    return finish_part(out.protocol_task(), [BatchResult(kept, rejected, dict(counters or {}))], tbl.num_rows, t0,
                       extra)
