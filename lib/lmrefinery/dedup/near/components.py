"""Round 4, connected components (Ray, local): alternating large-star and small-star
rounds as map tasks over edge files partitioned by node, until the edge set stops
changing. Every node ends labelled by the smallest node of its component (the Spark
engine runs the same two operators as DataFrame joins: components_spark.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from ...core import storage
from .files import dedup_pairs, read_dir, rss_mb, write, write_adjacency
from .report import Rounds


@dataclass(frozen=True)
class StarTask:
    kind: Literal["large", "small"]
    round: int
    k: int  # the node partition this task owns
    work: str
    buckets: int


@dataclass(frozen=True)
class StarResult:
    k: int
    edges: int
    checksum: str
    rss_mb: float


def _mix2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    p = np.uint64(0x9E3779B97F4A7C15)
    h = (a.view(np.uint64) * p) ^ b.view(np.uint64)
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    return h ^ (h >> np.uint64(29))


def star_step(t: StarTask) -> StarResult:
    """One large-star or small-star step on the node partition t.k.

    Input rows (src, dst) are the adjacency of the nodes this partition owns.
    Large-star: every neighbour v > u is re-attached to m(u) = min(N(u) + u).
    Small-star: u and every neighbour v < u are attached to m = min(v < u).
    Also returns an order-free checksum of the input edge set (each undirected
    edge counted once, in the partition of its larger end) for the
    convergence test, and (large-star) writes the labels the input would give if it
    were the fixed point (a forest of stars centred on each component's minimum).
    """
    tb = read_dir(storage.join(t.work, "cc", f"r{t.round:03d}", f"p{t.k:05d}"))
    src = tb.column("src").to_numpy() if tb is not None else np.empty(0, np.int64)
    dst = tb.column("dst").to_numpy() if tb is not None else np.empty(0, np.int64)
    src, dst = dedup_pairs(src, dst)
    canon = src > dst
    cs = int(np.bitwise_xor.reduce(_mix2(src[canon], dst[canon]))) if canon.any() else 0
    csum = int(_mix2(src[canon], dst[canon]).sum(dtype=np.uint64)) if canon.any() else 0
    if t.kind == "large":
        _large_star(t, src, dst, canon)
    else:
        _small_star(t, src[canon], dst[canon])
    return StarResult(t.k, int(canon.sum()), f"{cs:016x}{csum:016x}", rss_mb())


def _large_star(t: StarTask, src: np.ndarray, dst: np.ndarray, canon: np.ndarray) -> None:
    out = storage.join(t.work, "cc", f"r{t.round + 1:03d}")
    if len(src):
        starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
        mins = np.minimum(np.minimum.reduceat(dst, starts), src[starts])
        m = np.repeat(mins, np.diff(np.r_[starts, len(src)]))
        sel = dst > src
        write_adjacency(dst[sel], m[sel], out, t.buckets, f"p{t.k:05d}")
    # labels if this input is the fixed point
    lab_node = np.concatenate([src[canon], src[~canon]])
    lab_root = np.concatenate([dst[canon], src[~canon]])
    lab_node, lab_root = dedup_pairs(lab_node, lab_root)
    write(pa.table({"node": pa.array(lab_node, pa.int64()), "root": pa.array(lab_root, pa.int64())}),
          storage.join(t.work, "lab", f"r{t.round:03d}", f"p{t.k:05d}", "labels.parquet"))


def _small_star(t: StarTask, s2: np.ndarray, d2: np.ndarray) -> None:
    """s2 > d2: each edge from a node to one of its smaller neighbours."""
    if len(s2):
        starts = np.flatnonzero(np.r_[True, s2[1:] != s2[:-1]])
        mins = np.minimum.reduceat(d2, starts)
        m = np.repeat(mins, np.diff(np.r_[starts, len(s2)]))
        sel = d2 != m
        a = np.concatenate([s2[starts], d2[sel]])
        b = np.concatenate([mins, m[sel]])
        write_adjacency(a, b, storage.join(t.work, "cc", f"r{t.round + 1:03d}"), t.buckets, f"p{t.k:05d}")


def cc_files(rounds: Rounds, work: str, K: int, max_rounds: int) -> tuple[str, int]:
    """Connected components as rounds of map tasks over files (Ray, local):
    (the folder of the labels, the number of large+small round pairs)."""
    prev: tuple[int, list[str]] | None = None
    r = 0
    while True:
        if r // 2 >= max_rounds:
            raise RuntimeError(f"dedup: connected components did not converge in {max_rounds} rounds")
        res: list[StarResult] = rounds.map(star_step, [StarTask("large", r, k, work, K) for k in range(K)],
                                           f"cc-large-{r}")
        state = (sum(x.edges for x in res), sorted(x.checksum for x in res))
        if state == prev:
            return storage.join(work, "lab", f"r{r:03d}"), r // 2
        prev = state
        rounds.map(star_step, [StarTask("small", r + 1, k, work, K) for k in range(K)], f"cc-small-{r + 1}")
        if r >= 2:  # inputs of earlier rounds are no longer needed
            storage.delete_prefix(storage.join(work, "cc", f"r{r - 2:03d}"))
            storage.delete_prefix(storage.join(work, "cc", f"r{r - 1:03d}"))
            storage.delete_prefix(storage.join(work, "lab", f"r{r - 2:03d}"))
        r += 2
