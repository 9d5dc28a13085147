"""Round 3, verify (optional, two map rounds over index slots): each candidate edge
collects the shingle set of one end, then the other, and survives if the exact Jaccard
of the two sets reaches the threshold. Survivors are the graph the components round reads."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ...core import storage
from ..minhash import exact_jaccard
from .files import IndexRef, dedup_pairs, read_dir, rss_mb, write, write_adjacency
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


def gather_shingles(t: VerifyTask) -> GatherResult:
    """Verify-1, on the slot of the edges' first ends: attach u's shingle set to each
    candidate (u, v) and send it to the slot of v."""
    s = t.slot
    tb = read_dir(storage.join(t.work, "vin", f"s{s:05d}"))
    if tb is None or tb.num_rows == 0:
        return GatherResult(s, 0, rss_mb())
    pos, lists = _slot_shingles(t)
    u, v, sv = (tb.column(c).to_numpy() for c in ("u", "v", "sv"))
    uu, vv = dedup_pairs(u, v)
    slot_of = dict(zip(zip(u.tolist(), v.tolist()), sv.tolist()))
    svv = np.array([slot_of[(a, b)] for a, b in zip(uu.tolist(), vv.tolist())], dtype=np.int64)
    idx = pa.array([pos[int(a)] for a in uu], pa.int64())
    shu = lists.take(idx) if len(uu) else lists.slice(0, 0)
    for dest in np.unique(svv):
        m = svv == dest
        write(pa.table({"u": pa.array(uu[m], pa.int64()), "v": pa.array(vv[m], pa.int64()),
                        "sh_u": shu.filter(pa.array(m))}),
              storage.join(t.work, "vmid", f"s{int(dest):05d}", f"s{s:05d}.parquet"))
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
    shu = tb.column("sh_u").combine_chunks()
    off_u, val_u = shu.offsets.to_numpy(), shu.values.to_numpy()
    off_v, val_v = lists.offsets.to_numpy(), lists.values.to_numpy()
    ok = np.zeros(len(u), dtype=bool)
    for i in range(len(u)):
        a = val_u[off_u[i]:off_u[i + 1]]
        j = pos[int(v[i])]
        bb = val_v[off_v[j]:off_v[j + 1]]
        ok[i] = exact_jaccard(a, bb) >= thr
    write_adjacency(u[ok], v[ok], storage.join(t.work, "cc", "r000"), t.params.buckets, f"v{s:05d}")
    return CheckResult(s, int(len(u)), int(ok.sum()), rss_mb())


def verify_candidates(rounds: Rounds, indexes: list[IndexRef], work: str, params: NearParams) -> tuple[int, int]:
    """Both verify rounds over every slot of every index: (candidate pairs, verified pairs)."""
    slots = [VerifyTask(ix.offset + pp, storage.join(ix.root, "shingles", f"p{pp:05d}.parquet"), work, params)
             for ix in indexes for pp in range(ix.n_parts)]
    rounds.map(gather_shingles, slots, "verify-1")
    checked: list[CheckResult] = rounds.map(check_jaccard, slots, "verify-2")
    return sum(x.candidates for x in checked), sum(x.verified for x in checked)
