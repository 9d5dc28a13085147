"""Deterministic train/validation/test splits.

1. Near-duplicate clusters: MinHash (datasketch) over word (or, for Chinese,
   jieba-word) bigrams of the user turns, LSH banding for candidates, exact
   Jaccard >= ``threshold`` to confirm, union-find into clusters. Repeats from
   upsampling join their original's cluster.
2. Each cluster is one unit: it is ordered by a hash of (seed, cluster key) and
   assigned, within its category (stratification), so that the cumulative share
   of rows follows the requested fractions. A cluster never straddles splits.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .common import messages, stable_hash, tokens, unit_hash


def _shingles(text: str, n: int = 2) -> set[bytes]:
    t = tokens(text)
    if len(t) < n:
        return {" ".join(t).encode()} if t else set()
    return {" ".join(t[i:i + n]).encode("utf-8") for i in range(len(t) - n + 1)}


def prompt_text(row: dict) -> str:
    return "\n".join(m.get("content") or "" for m in messages(row) if m["role"] == "user")


class _UF:
    def __init__(self, n):
        self.p = list(range(n))

    def find(self, x):
        while self.p[x] != x:
            self.p[x] = self.p[self.p[x]]
            x = self.p[x]
        return x

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            self.p[max(a, b)] = min(a, b)


def near_dup_clusters(texts: list[str], threshold: float = 0.7, num_perm: int = 64, bands: int = 16,
                      seed: int = 1) -> list[int]:
    """Cluster index (the smallest member index) per text."""
    from datasketch import MinHash

    n = len(texts)
    uf = _UF(n)
    sh = [_shingles(t) for t in texts]
    rows = num_perm // bands
    buckets: dict[tuple, list[int]] = defaultdict(list)
    sigs = []
    for i, s in enumerate(sh):
        if not s:
            sigs.append(None)
            continue
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch(list(s))
        hv = m.hashvalues
        sigs.append(hv)
        for b in range(bands):
            buckets[(b, hv[b * rows:(b + 1) * rows].tobytes())].append(i)
    checked = set()
    for members in buckets.values():
        # each member against the bucket's first member (clusters are transitive through union-find)
        # all pairs in small buckets; in big ones each member against the first
        pairs = ((members[a], members[b]) for a in range(len(members)) for b in range(a + 1, len(members))) \
            if len(members) <= 32 else ((members[0], j) for j in members[1:])
        for i, j in pairs:
            if (i, j) in checked or uf.find(i) == uf.find(j):
                continue
            checked.add((i, j))
            if len(sh[i] & sh[j]) / max(1, len(sh[i] | sh[j])) >= threshold:
                uf.union(i, j)
    return [uf.find(i) for i in range(n)]


def assign_splits(rows: list[dict], fractions: dict[str, float] | None = None, stratify: str = "category",
                  seed: int = 0, near_dup: bool = True, threshold: float = 0.7) -> tuple[list[dict], dict]:
    fractions = fractions or {"train": 0.9, "validation": 0.05, "test": 0.05}
    names = list(fractions)
    fr = np.array([fractions[k] for k in names], dtype=float)
    fr = fr / fr.sum()
    # key of each row's unit before clustering: repeats share their original's key
    idx = {r["id"]: i for i, r in enumerate(rows)}
    base = [idx.get(r["meta"].get("repeat_of"), i) for i, r in enumerate(rows)]
    clusters = near_dup_clusters([prompt_text(r) for r in rows], threshold) if near_dup else list(range(len(rows)))
    uf = _UF(len(rows))
    for i, b in enumerate(base):
        uf.union(i, b)
        uf.union(i, clusters[i])
    root = [uf.find(i) for i in range(len(rows))]
    members: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(root):
        members[r].append(i)
    # a cluster is represented by its smallest id, so the result does not depend on row order
    rep = {r: min((rows[i]["id"] for i in ms), key=str) for r, ms in members.items()}
    rep_row = {r: next(rows[i] for i in ms if rows[i]["id"] == rep[r]) for r, ms in members.items()}
    by_strat: dict[str, list[int]] = defaultdict(list)
    for r in members:
        by_strat[str(rep_row[r]["meta"].get(stratify) if stratify else "all")].append(r)
    split_of = {}
    for s, roots in by_strat.items():
        roots.sort(key=lambda r: (unit_hash(seed, "split", rep[r]), rep[r]))
        total = sum(len(members[r]) for r in roots)
        done = np.zeros(len(names))
        for r in roots:
            size = len(members[r])
            # the split that is furthest below its target share after adding this cluster
            want = fr * (done.sum() + size) - done
            k = int(np.argmax(want))
            done[k] += size
            split_of[r] = names[k]
    out = []
    multi = 0
    for i, r in enumerate(rows):
        sp = split_of[root[i]]
        if len(members[root[i]]) > 1:
            multi += 1
        out.append({**r, "meta": dict(r["meta"], split=sp, cluster=rep[root[i]])})
    counts = defaultdict(int)
    for r in out:
        counts[r["meta"]["split"]] += 1
    report = {"fractions": dict(zip(names, fr.round(4).tolist())), "counts": dict(counts),
              "clusters": len(members), "rows_in_multi_clusters": multi, "stratify": stratify}
    return out, report
