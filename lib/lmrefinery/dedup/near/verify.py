"""Round 3, verify (optional, two map rounds over index slots): each candidate edge
collects the shingle set of one end, then the other, and survives if the exact Jaccard
of the two sets reaches the threshold. Survivors are the graph the components round
reads. A set travels once per (document, destination slot), not once per edge, so a
task's memory does not grow with the size of a cluster."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ...core import storage
from ..minhash import exact_jaccard
from .files import IndexRef, read_dir, rss_mb, write, write_adjacency
from .params import NearParams
from .report import Rounds


@dataclass(frozen=True)
class VerifyTask:
    slot: int
    shingles: str  # the slot's shingle sets, written by its sign task
    work: str
    params: NearParams


@dataclass(frozen=True)
class GatherResult:
    slot: int
    edges: int
    rss_mb: float


@dataclass(frozen=True)
class CheckResult:
    slot: int
    candidates: int
    verified: int
    rss_mb: float


def _slot_shingles(t: VerifyTask) -> tuple[dict[int, int], pa.ListArray]:
    """(row of each node, the shingle sets) of the slot."""
    if not storage.exists(t.shingles):
        raise FileNotFoundError(f"{t.shingles}: no shingle sets for verification; the index was built "
                                "with verify off")
    tb = storage.read_parquet(t.shingles)
    pos = {int(nd): i for i, nd in enumerate(tb.column("node").to_numpy())}
    return pos, tb.column("sh").combine_chunks()


def _distinct_edges(u: np.ndarray, v: np.ndarray, sv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (u, v) pairs sorted by u then v, each with the slot of v (a function of v)."""
    if len(u) == 0:
        return u, v, sv
    order = np.lexsort((v, u))
    u, v, sv = u[order], v[order], sv[order]
    keep = np.r_[True, (u[1:] != u[:-1]) | (v[1:] != v[:-1])]
    return u[keep], v[keep], sv[keep]


def gather_shingles(t: VerifyTask) -> GatherResult:
    """Verify-1, on the slot of the edges' first ends: send each candidate (u, v) to the
    slot of v, with u's shingle set written once per destination slot (not once per
    edge: a large cluster's star centre has an edge to every member)."""
    s = t.slot
    tb = read_dir(storage.join(t.work, "vin", f"s{s:05d}"))
    if tb is None or tb.num_rows == 0:
        return GatherResult(s, 0, rss_mb())
    pos, lists = _slot_shingles(t)
    uu, vv, svv = _distinct_edges(*(tb.column(c).to_numpy() for c in ("u", "v", "sv")))
    del tb
    for dest in np.unique(svv):
        m = svv == dest
        us = np.unique(uu[m])
        write(pa.table({"u": pa.array(uu[m], pa.int64()), "v": pa.array(vv[m], pa.int64())}),
              storage.join(t.work, "vmid", f"s{int(dest):05d}", f"s{s:05d}.parquet"))
        write(pa.table({"u": pa.array(us, pa.int64()),
                        "sh_u": lists.take(pa.array([pos[int(a)] for a in us], pa.int64()))}),
              storage.join(t.work, "vset", f"s{int(dest):05d}", f"s{s:05d}.parquet"))
    return GatherResult(s, int(len(uu)), rss_mb())


def check_jaccard(t: VerifyTask) -> CheckResult:
    """Verify-2, on the slot of the edges' second ends: keep the edges whose exact
    Jaccard reaches the threshold, as adjacency for the components round."""
    s = t.slot
    tb = read_dir(storage.join(t.work, "vmid", f"s{s:05d}"))
    if tb is None or tb.num_rows == 0:
        return CheckResult(s, 0, 0, rss_mb())
    thr = t.params.lsh[2]
    pos, lists = _slot_shingles(t)
    u, v = tb.column("u").to_numpy(), tb.column("v").to_numpy()
    sets = read_dir(storage.join(t.work, "vset", f"s{s:05d}"))
    assert sets is not None  # written with every vmid file
    upos = {int(nd): i for i, nd in enumerate(sets.column("u").to_numpy())}
    shu = sets.column("sh_u").combine_chunks()
    off_u, val_u = shu.offsets.to_numpy(), shu.values.to_numpy()
    off_v, val_v = lists.offsets.to_numpy(), lists.values.to_numpy()
    ok = np.zeros(len(u), dtype=bool)
    for i in range(len(u)):
        k = upos[int(u[i])]
        a = val_u[off_u[k]:off_u[k + 1]]
        j = pos[int(v[i])]
        bb = val_v[off_v[j]:off_v[j + 1]]
        ok[i] = exact_jaccard(a, bb) >= thr
    write_adjacency(u[ok], v[ok], storage.join(t.work, "cc", "r000"), t.params.n_buckets, f"v{s:05d}")
    return CheckResult(s, int(len(u)), int(ok.sum()), rss_mb())


def verify_candidates(rounds: Rounds, indexes: list[IndexRef], work: str, params: NearParams) -> tuple[int, int]:
    """Both verify rounds over every slot of every index: (candidate pairs, verified pairs)."""
    slots = [VerifyTask(ix.offset + pp, storage.join(ix.root, "shingles", f"p{pp:05d}.parquet"), work, params)
             for ix in indexes for pp in range(ix.n_parts)]
    rounds.map(gather_shingles, slots, "verify-1")
    checked: list[CheckResult] = rounds.map(check_jaccard, slots, "verify-2")
    return sum(x.candidates for x in checked), sum(x.verified for x in checked)
