"""Round 2, band: per band-key bucket, sort by key; every group of equal keys gives
star edges (the group's smallest node -> each other member).

With verification on, the candidate edges go to the verify rounds, split by the index
slot of their first end; without it, they are the graph the components round reads."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ...core import storage
from .files import IndexRef, read_index_dir, rss_mb, write, write_adjacency
from .params import NearParams


@dataclass(frozen=True)
class BandTask:
    bucket: int
    indexes: list[IndexRef]
    work: str
    params: NearParams


@dataclass(frozen=True)
class BandResult:
    bucket: int
    rows: int
    edges: int
    rss_mb: float


def _read_bucket(t: BandTask) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(band key, node, index slot) of every band row of this bucket, over all indexes."""
    tabs = []
    for ix in t.indexes:
        tb = read_index_dir(ix, f"bands/b{t.bucket:04d}")
        if tb is not None and tb.num_rows:
            slot = tb.column("part").to_numpy().astype(np.int64) + ix.offset
            tabs.append((tb.column("key").to_numpy(), tb.column("node").to_numpy(), slot))
    if not tabs:
        return None
    return (np.concatenate([x[0] for x in tabs]), np.concatenate([x[1] for x in tabs]),
            np.concatenate([x[2] for x in tabs]))


def band_bucket(t: BandTask) -> BandResult:
    b = t.bucket
    rows = _read_bucket(t)
    if rows is None:
        return BandResult(b, 0, 0, rss_mb())
    key, node, slot = rows
    order = np.lexsort((node, key))
    key, node, slot = key[order], node[order], slot[order]
    start = np.r_[True, key[1:] != key[:-1]]
    gid = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    u, su = node[first][gid], slot[first][gid]
    m = node != u
    u, v, su, sv = u[m], node[m], su[m], slot[m]
    # the same pair from several bands in this bucket: once
    if len(u):
        order = np.lexsort((v, u))
        u, v, su, sv = u[order], v[order], su[order], sv[order]
        keep = np.r_[True, (u[1:] != u[:-1]) | (v[1:] != v[:-1])]
        u, v, su, sv = u[keep], v[keep], su[keep], sv[keep]
    if t.params.verify:
        for s in np.unique(su):
            mm = su == s
            write(pa.table({"u": pa.array(u[mm], pa.int64()), "v": pa.array(v[mm], pa.int64()),
                            "sv": pa.array(sv[mm], pa.int64())}),
                  storage.join(t.work, "vin", f"s{int(s):05d}", f"b{b:04d}.parquet"))
    else:
        write_adjacency(u, v, storage.join(t.work, "cc", "r000"), t.params.n_buckets, f"b{b:04d}")
    return BandResult(b, int(len(key)), int(len(u)), rss_mb())
