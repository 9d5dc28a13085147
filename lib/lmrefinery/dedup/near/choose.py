"""Round 6, choose: per cluster bucket, sort each cluster's members (earlier releases
first, then the keep rules: preferred source, quality, length; then id), keep the first,
write the others of this release as drops (split by input part) and the cluster table
(cluster, member, size, kept member) for inspection."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ...core import storage
from ..drops import DROP_SCHEMA, rows_table
from .files import read_dir, rss_mb, write
from .params import KeepRule

CLUSTER_SCHEMA = pa.schema([("cluster", pa.string()), ("id", pa.string()), ("source", pa.string()),
                            ("release", pa.int32()), ("size", pa.int64()), ("kept", pa.string()),
                            ("is_kept", pa.bool_())])


@dataclass(frozen=True)
class ChooseTask:
    bucket: int
    work: str
    clusters: str  # the stage's clusters/ folder
    keep: list[KeepRule]


@dataclass(frozen=True)
class ChooseResult:
    bucket: int
    clusters: int
    hist: dict[int, int]            # cluster size -> clusters
    removed: dict[str, int]         # reason -> documents dropped
    rss_mb: float
    drops: dict[int, int] = field(default_factory=dict)  # input part -> rows dropped


def _one_row_per_node(tb: pa.Table) -> pa.Table:
    """An id present in two releases counts once, in the earliest."""
    tb = tb.sort_by([("node", "ascending"), ("rel_rank", "ascending")])
    nd = tb.column("node").to_numpy()
    return tb.filter(pa.array(np.r_[True, nd[1:] != nd[:-1]]))


def _keeper_order(tb: pa.Table, keep: list[KeepRule]) -> pa.Table:
    """Members sorted by cluster, then best first: release rank, the keep rules, id."""
    q = tb.column("quality").to_numpy(zero_copy_only=False)
    length = tb.column("length").to_numpy()
    rule_cols = {"source": tb.column("src_rank").to_numpy(), "quality": np.where(np.isnan(q), np.inf, -q),
                 "longest": -length, "shortest": length}
    sort_cols = [tb.column("root").to_numpy(), tb.column("rel_rank").to_numpy()]
    sort_cols += [rule_cols[rule] for rule in keep]
    ids = tb.column("id").to_pylist()
    id_rank = np.empty(len(ids), dtype=np.int64)
    id_rank[np.array(sorted(range(len(ids)), key=ids.__getitem__), dtype=np.int64)] = np.arange(len(ids))
    order = np.lexsort([id_rank] + sort_cols[::-1])
    return tb.take(pa.array(order))


def choose_keepers(t: ChooseTask) -> ChooseResult:
    c = t.bucket
    tb = read_dir(storage.join(t.work, "grp", f"c{c:04d}"))
    if tb is None or tb.num_rows == 0:
        write(CLUSTER_SCHEMA.empty_table(), storage.join(t.clusters, f"c{c:04d}.parquet"))
        return ChooseResult(c, 0, {}, {}, rss_mb())
    tb = _keeper_order(_one_row_per_node(tb), t.keep)
    root = tb.column("root").to_numpy()
    ids = tb.column("id").to_pylist()
    rel = tb.column("release").to_numpy()
    part = tb.column("part").to_numpy()
    row = tb.column("row").to_numpy()
    tkey = tb.column("tkey").to_numpy()
    srcs = tb.column("source").to_pylist()
    starts = np.flatnonzero(np.r_[True, root[1:] != root[:-1]])
    sizes = np.diff(np.r_[starts, len(root)])
    hist: Counter[int] = Counter()
    removed: Counter[str] = Counter()
    drops: dict[int, list[tuple[int, str, str]]] = {}
    cl_rows = []
    for s, size in zip(starts.tolist(), sizes.tolist()):
        if size < 2:
            continue
        hist[size] += 1
        keeper = ids[s]
        cid = f"{int(np.int64(root[s]).view(np.uint64)):016x}"
        for j in range(s, s + size):
            cl_rows.append((cid, ids[j], srcs[j], int(rel[j]), size, keeper, j == s))
            if j == s or rel[j] != 0:
                continue
            why = "exact_duplicate" if tkey[j] == tkey[s] else "near_duplicate"
            removed[why] += 1
            drops.setdefault(int(part[j]), []).append((int(row[j]), why, keeper))
    for pt, rs in drops.items():
        write(rows_table(DROP_SCHEMA, rs), storage.join(t.work, "drops", f"p{pt:05d}", f"c{c:04d}.parquet"))
    write(rows_table(CLUSTER_SCHEMA, cl_rows), storage.join(t.clusters, f"c{c:04d}.parquet"))
    return ChooseResult(c, int(sum(hist.values())), dict(hist), dict(removed), rss_mb(),
                        {pt: len(rs) for pt, rs in drops.items()})
