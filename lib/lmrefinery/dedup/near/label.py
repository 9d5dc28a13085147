"""Round 5, label: per node partition, join the component labels with the document
info of every index and route each member to the bucket of its cluster (its root)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ...core import storage
from .files import IndexRef, read_dir, read_index_dir, rss_mb, write


@dataclass(frozen=True)
class LabelTask:
    k: int
    labels: str  # the folder of the components round's labels
    indexes: list[IndexRef]
    work: str
    buckets: int


@dataclass(frozen=True)
class LabelResult:
    k: int
    members: int
    rss_mb: float


def _members(ix: IndexRef, k: int, node_root: dict[int, int], labelled: np.ndarray) -> pa.Table | None:
    """The documents of one index in node partition k that are in a cluster, with their
    release, its rank and their cluster root."""
    tb = read_index_dir(ix, f"docs/k{k:04d}")
    if tb is None or tb.num_rows == 0:
        return None
    tb = tb.filter(pa.array(np.isin(tb.column("node").to_numpy(), labelled)))
    n = tb.num_rows
    tb = tb.append_column("release", pa.array(np.full(n, ix.release, np.int32)))
    tb = tb.append_column("rel_rank", pa.array(np.full(n, ix.rel_rank, np.int32)))
    return tb.append_column("root", pa.array([node_root[x] for x in tb.column("node").to_pylist()], pa.int64()))


def label_members(t: LabelTask) -> LabelResult:
    lab = read_dir(storage.join(t.labels, f"p{t.k:05d}"))
    if lab is None or lab.num_rows == 0:
        return LabelResult(t.k, 0, rss_mb())
    node_root = dict(zip(lab.column("node").to_pylist(), lab.column("root").to_pylist()))
    tabs = [tb for ix in t.indexes if (tb := _members(ix, t.k, node_root, lab.column("node").to_numpy())) is not None]
    if not tabs:
        return LabelResult(t.k, 0, rss_mb())
    tb = pa.concat_tables(tabs, promote_options="permissive")
    c = tb.column("root").to_numpy() % t.buckets
    for cb in np.unique(c):
        write(tb.filter(pa.array(c == cb)), storage.join(t.work, "grp", f"c{int(cb):04d}", f"p{t.k:05d}.parquet"))
    return LabelResult(t.k, tb.num_rows, rss_mb())
