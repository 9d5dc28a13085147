"""Leak-free, stable train/validation/test splits.

1. Groups. Rows are linked (union-find) when they are
   * translation twins or otherwise paired: equal ``meta.pair_id`` (the
     bilingual reader sets it) or any other meta field in ``link_fields``
     (``group`` by default, so a user can name groups explicitly);
   * lineage: a row and its ``meta.parent_id`` (augmentation children,
     Evol-Instruct generations, template rows) and upsampled ``repeat_of``
     copies. Self-Instruct's ``parent_ids`` are in-context examples, not
     derivations, and do not link (they would chain everything together);
   * near duplicates: MinHash (datasketch) over word (Chinese: jieba-word)
     bigrams of the user turns, LSH banding, exact Jaccard >= ``threshold``.
2. Keys. A row's own key is its lineage root (``pair_id`` if set, else the
   id of the oldest ancestor present, else ``parent_id``); a group's key is the
   smallest own key of its members. Adding unrelated rows never changes a key.
3. Assignment. A group's split depends only on ``hash(seed, key)``: the unit
   interval is cut by the fractions (consistent hashing), so adding rows never
   moves another group, and every category gets the fractions in expectation
   (stratification by hashing; per-stratum counts are reported). With
   ``previous`` (id -> split of the parent version) a group that already had
   rows keeps the most held-out split any of them had (test > validation >
   train): a new row can pull a group into test, never a test row into train.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .common import messages, tokens, unit_hash


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
    sigs: list[np.ndarray | None] = []
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


HELD_OUT_ORDER = ("test", "validation", "train")  # precedence when a group's old rows disagree


def _link_groups(rows: list[dict], link_fields: tuple[str, ...], near_dup: bool, threshold: float) -> list[int]:
    """Union-find root per row over twins, lineage, repeats and near-duplicate clusters."""
    n = len(rows)
    uf = _UF(n)
    idx = {r["id"]: i for i, r in enumerate(rows)}
    first_with: dict[tuple[str, str], int] = {}
    for i, k in enumerate(own_keys(rows)):   # siblings whose parent is not in the set
        uf.union(i, first_with.setdefault(("own", k), i))
    for i, r in enumerate(rows):
        meta = r["meta"]
        for rel in ("parent_id", "repeat_of"):
            j = idx.get(meta.get(rel))
            if j is not None:
                uf.union(i, j)
        for f in ("pair_id",) + tuple(link_fields):
            v = meta.get(f)
            if v not in (None, ""):
                uf.union(i, first_with.setdefault((f, str(v)), i))
    if near_dup:
        for i, c in enumerate(near_dup_clusters([prompt_text(r) for r in rows], threshold)):
            uf.union(i, c)
    return [uf.find(i) for i in range(n)]


def own_keys(rows: list[dict]) -> list[str]:
    """Lineage root per row: pair_id, else the oldest ancestor present (by parent_id / repeat_of), else
    a missing parent's id, else the row's id."""
    by_id = {r["id"]: r for r in rows}

    def root(r: dict) -> str:
        seen = set()
        while True:
            meta = r["meta"]
            if meta.get("pair_id"):
                return "pair:" + str(meta["pair_id"])
            up = meta.get("parent_id") or meta.get("repeat_of")
            if not up or up in seen:
                return str(r["id"])
            seen.add(up)
            if up not in by_id:
                return str(up)
            r = by_id[up]

    return [root(r) for r in rows]


def split_of_key(key: str, names: list[str], fractions: np.ndarray, seed: int) -> str:
    """Consistent hashing: the unit interval cut by the fractions (in the order given)."""
    u = unit_hash(seed, "split", key)
    edges = np.cumsum(fractions)
    k = int(np.searchsorted(edges, u, side="right"))
    return names[min(k, len(names) - 1)]


def assign_splits(rows: list[dict], fractions: dict[str, float] | None = None, stratify: str = "category",
                  seed: int = 0, near_dup: bool = True, threshold: float = 0.7,
                  link_fields: tuple[str, ...] = ("group",), previous: dict[str, str] | None = None
                  ) -> tuple[list[dict], dict]:
    """``meta.split`` and ``meta.cluster`` (the group key) for every row, and a report."""
    fractions = fractions or {"train": 0.9, "validation": 0.05, "test": 0.05}
    names = list(fractions)
    fr = np.array([fractions[k] for k in names], dtype=float)
    fr = fr / fr.sum()
    root = _link_groups(rows, tuple(link_fields), near_dup, threshold)
    keys = own_keys(rows)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(root):
        members[g].append(i)
    group_key = {g: min(keys[i] for i in ms) for g, ms in members.items()}
    split_of, pinned = {}, 0
    for g, ms in members.items():
        old = {previous[rows[i]["id"]] for i in ms if previous and rows[i]["id"] in previous}
        if old:
            split_of[g] = next((s for s in HELD_OUT_ORDER if s in old and s in names), sorted(old)[0])
            pinned += 1
        else:
            split_of[g] = split_of_key(group_key[g], names, fr, seed)
    out = [{**r, "meta": dict(r["meta"], split=split_of[root[i]], cluster=group_key[root[i]])}
           for i, r in enumerate(rows)]
    counts: dict[str, int] = defaultdict(int)
    per_stratum: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in out:
        counts[r["meta"]["split"]] += 1
        if stratify:
            per_stratum[str(r["meta"].get(stratify))][r["meta"]["split"]] += 1
    report = {"fractions": dict(zip(names, fr.round(4).tolist())), "counts": dict(counts),
              "groups": len(members), "rows_in_multi_row_groups": sum(len(ms) for ms in members.values()
                                                                      if len(ms) > 1),
              "groups_pinned_by_previous": pinned, "stratify": stratify,
              "per_stratum": {k: dict(v) for k, v in sorted(per_stratum.items())},
              "method": "consistent hash of the group key"}
    return out, report


def crossing_groups(rows: list[dict], key: str) -> list[str]:
    """Values of ``meta[key]`` whose rows sit in more than one split (a leak check)."""
    seen: dict[str, set] = defaultdict(set)
    for r in rows:
        v = r["meta"].get(key)
        if v not in (None, ""):
            seen[str(v)].add(r["meta"].get("split"))
    return sorted(k for k, s in seen.items() if len(s) > 1)
