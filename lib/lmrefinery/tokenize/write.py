"""Round 3 of tokenize, per shard: the shard's instances from every part, sorted by
shuffle key, written as a Megatron `.bin`/`.idx` pair (+ a `.mask` companion for
instruction data) under `shards/<split>/shard-NNNNN`."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core import storage
from .indexed import IndexedWriter
from .work import TokenizeRun, part_file, read_work


@dataclass(frozen=True)
class WriteTask:
    run: TokenizeRun
    split: str
    shard: int
    n_parts: int
    dtype: str
    with_mask: bool


@dataclass(frozen=True)
class WrittenShard:
    """A shard as dataset.json lists it (`documents` 0: no instance fell in its range, no files)."""

    split: str
    shard: int
    documents: int = 0
    tokens: int = 0
    prefix: str = ""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "documents": self.documents, "tokens": self.tokens, "files": self.files,
                "by_source": self.by_source}


def _mask_flat(tb: pa.Table, lengths: np.ndarray) -> np.ndarray:
    """The loss masks back to back; a plain document trains on every token."""
    if not len(lengths):
        return np.zeros(0, np.uint8)
    return np.concatenate([np.asarray(m, np.uint8) if m is not None else np.ones(int(n), np.uint8)
                           for m, n in zip(tb.column("mask").to_pylist(), lengths)])


def _by_source(tb: pa.Table, lengths: np.ndarray) -> dict[str, dict[str, int]]:
    by_src: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s, n in zip(tb.column("source").to_pylist(), lengths):
        by_src[s][0] += 1
        by_src[s][1] += int(n)
    return {s: {"documents": v[0], "tokens": v[1]} for s, v in sorted(by_src.items())}


def write_shard(t: WriteTask) -> WrittenShard:
    d = t.run.work_file("scat", t.split, f"s{t.shard:05d}")
    files = [storage.join(d, part_file(p)) for p in range(t.n_parts)]
    tabs = [read_work(f) for f in files if storage.exists(f)]
    if not tabs:
        return WrittenShard(t.split, t.shard)
    tb = pa.concat_tables(tabs).sort_by([("key", "ascending"), ("id", "ascending"), ("copy", "ascending")])
    prefix = storage.join(t.run.stage_dir, "shards", t.split, f"shard-{t.shard:05d}")
    w = IndexedWriter(prefix, np.dtype(t.dtype), with_mask=t.with_mask)
    tok = tb.column("tokens").combine_chunks()
    lengths = pc.list_value_length(tok).to_numpy()
    flat = pc.list_flatten(tok).to_numpy()
    mflat = _mask_flat(tb, lengths) if t.with_mask else None
    try:
        w.add_many(flat, lengths, mflat)
    except BaseException:
        w.abort()
        raise
    info = w.close()
    kinds = {".bin": "bin", ".idx": "idx"}
    if t.with_mask:
        kinds.update({".mask.bin": "mask_bin", ".mask.idx": "mask_idx"})
    return WrittenShard(t.split, t.shard, documents=info["sequences"], tokens=info["tokens"],
                        prefix=storage.relpath(prefix, t.run.stage_dir),
                        files={k: {"bytes": info[v]["bytes"], "sha256": info[v]["sha256"]} for k, v in kinds.items()},
                        by_source=_by_source(tb, lengths))
