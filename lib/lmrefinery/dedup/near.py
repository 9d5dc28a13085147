"""The `dedup` stage: near-duplicate removal with MinHash LSH, at any scale.

Rounds of map tasks over files (the engine runs them; nothing collects all
signatures or all documents in one process):

  1. sign     per input part: shingles -> MinHash -> band keys. Writes the
              part's *index*: band keys into B bucket files, document info
              (rank fields) into B node partitions, sorted shingle hashes.
  2. band     per bucket: sort by band key; every group of equal keys gives
              star edges (smallest node -> each other member).
  3. verify   (optional, two rounds) each candidate edge collects the shingle
              set of one end, then the other, and survives if the exact
              Jaccard of the two sets reaches the threshold.
  4. cc       connected components. Ray/local: alternating large-star and
              small-star rounds as map tasks over edge files partitioned by
              node; Spark: the same two operators as DataFrame joins. Both
              end with every node labelled by the smallest node of its
              component, so clusters are identical by construction.
  5. label    per node partition: join labels with document info, route each
              member to the bucket of its cluster.
  6. choose   per cluster bucket: sort members (preferred source, quality,
              length, then id), keep the first, write the others as drops and
              the cluster table (cluster, size, kept member) for inspection.
  7. apply    per input part: drop the losers (reason near_duplicate, or
              exact_duplicate when the normalised text equals the keeper's).

Incremental: the index of every run is kept under ``<stage_dir>/index``; a
later run lists earlier indexes in ``against`` and their band keys and
document info take part in rounds 2-6 without recomputing their signatures.
Documents of earlier releases are never dropped and win every cluster they
are in, so the decisions about new documents equal those of one run over
everything with the earlier sources preferred.
"""
from __future__ import annotations

import json
import resource
import time
from collections import Counter
from typing import Literal

import numpy as np
import pyarrow as pa
import xxhash
from pydantic import Field, model_validator

from ..core import storage
from ..core.stage import Stage, StageParams, register
from .exact import apply_drops, text_key
from .minhash import band_keys, exact_jaccard, lsh_threshold, optimal_bands_rows, signatures, text_shingle_hashes

INDEX_VERSION = 1
_COMPAT_KEYS = ("ngram", "char_ngram", "script", "num_perm", "bands", "rows", "seed", "hash", "scheme", "buckets")


class NearParams(StageParams):
    ngram: int = Field(5, ge=1, description="word n-gram size for space-delimited languages")
    char_ngram: int = Field(5, ge=1, description="character n-gram size for Chinese and Japanese")
    script: Literal["mixed", "auto", "words", "chars"] = Field(
        "mixed", description="mixed: CJK characters and words in one token stream (pure-Latin and pure-CJK "
        "texts shingle exactly as words / chars); auto: chars when lang is zh/ja or the text is mostly CJK, "
        "else words (the earlier default; use it to match indexes built with it)")
    num_perm: int = Field(112, ge=2, le=1024, description="MinHash permutations")
    bands: int | None = Field(None, ge=1, description="LSH bands (default 14, or derived from threshold). "
                              "14 bands x 8 rows: S-curve midpoint (1/b)^(1/r) = 0.719, P(candidate) 0.92 at "
                              "Jaccard 0.8 and 0.99 at 0.85; measured recall 0.997 at J >= 0.8 (bench/dedup.py)")
    rows: int | None = Field(None, ge=1, description="rows per band (default 8, or derived from threshold)")
    threshold: float | None = Field(None, gt=0, lt=1, description="target Jaccard; derives bands/rows "
                                    "when they are not given (see lsh_weights), and is the verification "
                                    "threshold; unset: 0.719, the midpoint of 14x8")
    lsh_weights: tuple[float, float] = Field(
        (0.2, 0.8), description="(false-positive, false-negative) weights of the areas minimised when "
        "bands/rows are derived from threshold; (0.5, 0.5) is datasketch's optimal_param. The default leans to "
        "recall because verification removes false candidates exactly (bench/dedup.py threshold curve)")
    seed: int = Field(1, description="MinHash seed (datasketch's default is 1)")
    hash: Literal["xxh3", "sha1"] = Field("xxh3", description="token hash; sha1 = datasketch's default")
    scheme: Literal["affine32", "legacy"] = Field("affine32", description="datasketch permutation scheme")
    verify: bool = Field(True, description="keep only candidate pairs whose exact shingle Jaccard >= threshold")
    keep: list[Literal["source", "quality", "longest", "shortest"]] = Field(
        default_factory=lambda: ["source", "quality", "longest"],
        description="how the kept member of a cluster is chosen, in order; ties by id")
    prefer_sources: list[str] = Field(default_factory=list, description="sources ranked first, in this order")
    quality_column: str = Field("quality_score", description="signal column for keep=quality (higher wins)")
    buckets: int = Field(8, ge=1, le=4096, description="band shuffle buckets and node partitions")
    against: list[str] = Field(default_factory=list, description="indexes (or dedup stage dirs) of earlier "
                               "releases to deduplicate against")
    max_cc_rounds: int = Field(40, ge=2)

    @model_validator(mode="after")
    def _bands_rows(self):
        if self.bands is None and self.rows is None:
            if self.threshold is None:
                self.bands, self.rows = 14, 8
            else:
                self.bands, self.rows = optimal_bands_rows(self.threshold, self.num_perm, *self.lsh_weights)
        elif self.bands is None or self.rows is None:
            raise ValueError("set both bands and rows, or neither (then threshold derives them)")
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.threshold is None:
            self.threshold = round(lsh_threshold(self.bands, self.rows), 4)
        return self


# ---------------------------------------------------------------- helpers
def node_ids(ids: list[str]) -> np.ndarray:
    """A signed 64-bit node per document id (Spark longs are signed)."""
    f = xxhash.xxh3_64_intdigest
    return np.fromiter((f(i.encode("utf-8", "surrogatepass")) for i in ids), dtype=np.uint64,
                       count=len(ids)).view(np.int64)


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _write(tb: pa.Table, uri: str) -> None:
    storage.write_parquet(tb, uri)


def _read_dir(prefix: str, columns=None) -> pa.Table | None:
    files = storage.list_files(prefix)
    if not files:
        return None
    return pa.concat_tables([storage.read_parquet(f, columns=columns) for f in files])


def _read_index_dir(ix: dict, sub: str) -> pa.Table | None:
    """An index folder written by every part of the sign round (one file per part, empty
    or not): a missing file means the index was damaged or deleted under this stage
    (e.g. by another run on the same output), which is an error, never "no data"."""
    prefix = storage.join(ix["root"], sub)
    files = storage.list_files(prefix)
    if len(files) != ix["n_parts"]:
        raise storage.StorageError(f"{prefix}: dedup index has {len(files)} of {ix['n_parts']} part files; "
                                   "it was damaged or deleted while the stage ran (another run on this output?)")
    if not files:
        return None
    return pa.concat_tables([storage.read_parquet(f) for f in files])


def _mix2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    p = np.uint64(0x9E3779B97F4A7C15)
    h = (a.view(np.uint64) * p) ^ b.view(np.uint64)
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    return h ^ (h >> np.uint64(29))


def _dedup_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(a) == 0:
        return a, b
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])]
    return a[keep], b[keep]


_ADJ = pa.schema([("src", pa.int64()), ("dst", pa.int64())])


def _write_adjacency(a: np.ndarray, b: np.ndarray, out_dir: str, K: int, name: str) -> None:
    """Undirected edges {a,b} as adjacency rows (src, dst), each row in the
    partition of its src, so a task sees every edge of the nodes it owns."""
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    part = src % K
    for k in np.unique(part):
        m = part == k
        _write(pa.table({"src": src[m], "dst": dst[m]}, schema=_ADJ),
               storage.join(out_dir, f"p{int(k):05d}", f"{name}.parquet"))


def resolve_index(path: str) -> str:
    for cand in (path, storage.join(path, "index")):
        if storage.exists(storage.join(cand, "meta.json")):
            return cand
    raise FileNotFoundError(f"dedup against: no index at {path} (expected meta.json there or in index/)")


# ---------------------------------------------------------------- 1. sign
SIGN_BATCH_ROWS = 512  # documents shingled and signed at once: bounds the transient arrays of a sign task


def _sign_batch(b: pa.RecordBatch, p: dict, qcol: str, pref: dict) -> dict:
    """Signatures, band keys, document info and shingle sets of one batch of rows."""
    n = b.num_rows
    names = b.schema.names
    ids = b.column(names.index("id")).to_pylist()
    texts = b.column(names.index("text")).to_pylist()
    langs = b.column(names.index("lang")).to_pylist() if "lang" in names else [None] * n
    srcs = b.column(names.index("source")).to_pylist()
    if qcol in names:
        q = np.array([np.nan if v is None else float(v) for v in b.column(names.index(qcol)).to_pylist()],
                     dtype=np.float64)
    else:
        q = np.full(n, np.nan)
    hl = [text_shingle_hashes(txt, lg, p["script"], p["ngram"], p["char_ngram"], p["hash"])
          for txt, lg in zip(texts, langs)]
    sig = signatures(hl, p["num_perm"], p["seed"], p["scheme"])
    return {"keys": band_keys(sig, p["bands"], p["rows"], p["seed"]), "nodes": node_ids(ids),
            "has": np.array([len(h) > 0 for h in hl], dtype=bool), "ids": ids, "srcs": srcs, "q": q,
            "src_rank": [pref.get(s, len(pref)) for s in srcs], "length": [len(x or "") for x in texts],
            "tkey": [text_key(x) for x in texts],
            "sets": _shingle_sets(hl) if p["verify"] else None}


def _shingle_sets(hl: list[np.ndarray]) -> pa.ListArray:
    """Each document's sorted distinct shingle hashes, as one Arrow list array."""
    sets = [np.unique(h) for h in hl]
    offs = np.r_[0, np.cumsum([len(x) for x in sets])].astype(np.int32)
    vals = np.concatenate(sets).astype(np.uint32, copy=False) if sets else np.empty(0, np.uint32)
    return pa.ListArray.from_arrays(pa.array(offs, pa.int32()), pa.array(vals, pa.uint32()))


def _sign_task(t: dict) -> dict:
    """Per input part, read and signed SIGN_BATCH_ROWS documents at a time: only the
    compact results (band keys, document info, and the shingle sets when verify is on)
    stay for the whole part, not the texts or the per-shingle arrays."""
    t0 = time.time()
    p, part, ix, B = t["params"], t["part"], t["index"], t["params"]["buckets"]
    qcol = p["quality_column"]
    pref = {s: i for i, s in enumerate(p["prefer_sources"])}
    names = storage.parquet_schema(t["input"]).names
    cols = [c for c in ("id", "text", "source", "lang", qcol) if c in names]
    acc: dict[str, list] = {}
    for b in storage.iter_parquet_batches(t["input"], batch_size=SIGN_BATCH_ROWS, columns=cols):
        for k, v in _sign_batch(b, p, qcol, pref).items():
            acc.setdefault(k, []).append(v)
    if not acc:  # a part without rows
        acc = {k: [v] for k, v in _sign_batch(pa.record_batch({"id": pa.array([], pa.string()),
                                                                 "text": pa.array([], pa.string()),
                                                                 "source": pa.array([], pa.string())}),
                                               p, qcol, pref).items()}
    nodes = np.concatenate(acc["nodes"])
    has = np.concatenate(acc["has"])
    keys = np.concatenate(acc["keys"])
    n = len(nodes)
    # band keys -> B buckets
    kk = keys[has].reshape(-1)
    kn = np.repeat(nodes[has], p["bands"])
    bucket = (kk % np.uint64(B)).astype(np.int64)
    for b in range(B):
        m = bucket == b
        _write(pa.table({"key": pa.array(kk[m], pa.uint64()), "node": pa.array(kn[m], pa.int64()),
                         "part": pa.array(np.full(int(m.sum()), part, np.int32), pa.int32())}),
               storage.join(ix, "bands", f"b{b:04d}", f"p{part:05d}.parquet"))
    # document info -> node partitions
    flat = {k: [x for chunk in acc[k] for x in chunk] for k in ("ids", "srcs", "src_rank", "length", "tkey")}
    info = pa.table({
        "node": pa.array(nodes, pa.int64()), "id": pa.array(flat["ids"], pa.string()),
        "source": pa.array(flat["srcs"], pa.string()), "part": pa.array(np.full(n, part, np.int32), pa.int32()),
        "row": pa.array(np.arange(n, dtype=np.int64), pa.int64()),
        "src_rank": pa.array(flat["src_rank"], pa.int32()),
        "quality": pa.array(np.concatenate(acc["q"]), pa.float64()),
        "length": pa.array(flat["length"], pa.int64()),
        "tkey": pa.array(flat["tkey"], pa.uint64())})
    kpart = nodes % B
    for k in range(B):
        _write(info.filter(pa.array(kpart == k)), storage.join(ix, "docs", f"k{k:04d}", f"p{part:05d}.parquet"))
    if p["verify"]:  # one list chunk per batch: the sets are never concatenated
        sets = pa.chunked_array(acc["sets"], pa.list_(pa.uint32()))
        _write(pa.table({"node": pa.array(nodes, pa.int64()), "sh": sets}),
               storage.join(ix, "shingles", f"p{part:05d}.parquet"))
    return {"part": part, "rows": n, "empty": int((~has).sum()), "seconds": round(time.time() - t0, 3),
            "rss_mb": _rss_mb()}


# ---------------------------------------------------------------- 2. band
def _band_task(t: dict) -> dict:
    b, K = t["bucket"], t["params"]["buckets"]
    tabs = []
    for ix in t["indexes"]:
        tb = _read_index_dir(ix, f"bands/b{b:04d}")
        if tb is not None and tb.num_rows:
            slot = tb.column("part").to_numpy().astype(np.int64) + ix["offset"]
            tabs.append((tb.column("key").to_numpy(), tb.column("node").to_numpy(), slot))
    if not tabs:
        return {"bucket": b, "rows": 0, "edges": 0, "rss_mb": _rss_mb()}
    key = np.concatenate([x[0] for x in tabs])
    node = np.concatenate([x[1] for x in tabs])
    slot = np.concatenate([x[2] for x in tabs])
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
    if t["params"]["verify"]:
        for s in np.unique(su):
            mm = su == s
            _write(pa.table({"u": pa.array(u[mm], pa.int64()), "v": pa.array(v[mm], pa.int64()),
                             "sv": pa.array(sv[mm], pa.int64())}),
                   storage.join(t["work"], "vin", f"s{int(s):05d}", f"b{b:04d}.parquet"))
    else:
        _write_adjacency(u, v, storage.join(t["work"], "cc", "r000"), K, f"b{b:04d}")
    return {"bucket": b, "rows": int(len(key)), "edges": int(len(u)), "rss_mb": _rss_mb()}


# ---------------------------------------------------------------- 3. verify
def _slot_shingles(t: dict) -> tuple[dict, pa.ListArray] | None:
    tb = storage.read_parquet(t["shingles"]) if storage.exists(t["shingles"]) else None
    if tb is None:
        return None
    pos = {int(nd): i for i, nd in enumerate(tb.column("node").to_numpy())}
    return pos, tb.column("sh").combine_chunks()


def _verify1_task(t: dict) -> dict:
    s = t["slot"]
    tb = _read_dir(storage.join(t["work"], "vin", f"s{s:05d}"))
    if tb is None or tb.num_rows == 0:
        return {"slot": s, "edges": 0, "rss_mb": _rss_mb()}
    sh = _slot_shingles(t)
    if sh is None:
        raise FileNotFoundError(f"{t['shingles']}: no shingle sets for verification; the index was built "
                                "with verify off")
    pos, lists = sh
    u, v, sv = (tb.column(c).to_numpy() for c in ("u", "v", "sv"))
    uu, vv = _dedup_pairs(u, v)
    slot_of = dict(zip(zip(u.tolist(), v.tolist()), sv.tolist()))
    svv = np.array([slot_of[(a, b)] for a, b in zip(uu.tolist(), vv.tolist())], dtype=np.int64)
    idx = pa.array([pos[int(a)] for a in uu], pa.int64())
    shu = lists.take(idx) if len(uu) else lists.slice(0, 0)
    for dest in np.unique(svv):
        m = svv == dest
        _write(pa.table({"u": pa.array(uu[m], pa.int64()), "v": pa.array(vv[m], pa.int64()),
                         "sh_u": shu.filter(pa.array(m))}),
               storage.join(t["work"], "vmid", f"s{int(dest):05d}", f"s{s:05d}.parquet"))
    return {"slot": s, "edges": int(len(uu)), "rss_mb": _rss_mb()}


def _verify2_task(t: dict) -> dict:
    s, K, thr = t["slot"], t["params"]["buckets"], t["params"]["threshold"]
    tb = _read_dir(storage.join(t["work"], "vmid", f"s{s:05d}"))
    if tb is None or tb.num_rows == 0:
        return {"slot": s, "candidates": 0, "verified": 0, "rss_mb": _rss_mb()}
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
    _write_adjacency(u[ok], v[ok], storage.join(t["work"], "cc", "r000"), K, f"v{s:05d}")
    return {"slot": s, "candidates": int(len(u)), "verified": int(ok.sum()), "rss_mb": _rss_mb()}


# ---------------------------------------------------------------- 4. connected components
def _star_task(t: dict) -> dict:
    """One large-star or small-star step on the node partition t['k'].

    Input rows (src, dst) are the adjacency of the nodes this partition owns.
    Large-star: every neighbour v > u is re-attached to m(u) = min(N(u) + u).
    Small-star: u and every neighbour v < u are attached to m = min(v < u).
    Also returns an order-free checksum of the input edge set (each undirected
    edge counted once, in the partition of its larger end) for the
    convergence test, and writes the labels the input would give if it were
    the fixed point (a forest of stars centred on each component's minimum).
    """
    k, K, w = t["k"], t["params"]["buckets"], t["work"]
    tb = _read_dir(storage.join(w, "cc", f"r{t['round']:03d}", f"p{k:05d}"))
    src = tb.column("src").to_numpy() if tb is not None else np.empty(0, np.int64)
    dst = tb.column("dst").to_numpy() if tb is not None else np.empty(0, np.int64)
    src, dst = _dedup_pairs(src, dst)
    canon = src > dst
    cs = int(np.bitwise_xor.reduce(_mix2(src[canon], dst[canon]))) if canon.any() else 0
    csum = int(_mix2(src[canon], dst[canon]).sum(dtype=np.uint64)) if canon.any() else 0
    out = storage.join(w, "cc", f"r{t['round'] + 1:03d}")
    if t["kind"] == "large":
        if len(src):
            starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
            mins = np.minimum(np.minimum.reduceat(dst, starts), src[starts])
            m = np.repeat(mins, np.diff(np.r_[starts, len(src)]))
            sel = dst > src
            _write_adjacency(dst[sel], m[sel], out, K, f"p{k:05d}")
        # labels if this input is the fixed point
        lab_node = np.concatenate([src[canon], src[~canon]])
        lab_root = np.concatenate([dst[canon], src[~canon]])
        lab_node, lab_root = _dedup_pairs(lab_node, lab_root)
        _write(pa.table({"node": pa.array(lab_node, pa.int64()), "root": pa.array(lab_root, pa.int64())}),
               storage.join(w, "lab", f"r{t['round']:03d}", f"p{k:05d}", "labels.parquet"))
    else:
        s2, d2 = src[canon], dst[canon]
        if len(s2):
            starts = np.flatnonzero(np.r_[True, s2[1:] != s2[:-1]])
            mins = np.minimum.reduceat(d2, starts)
            m = np.repeat(mins, np.diff(np.r_[starts, len(s2)]))
            sel = d2 != m
            a = np.concatenate([s2[starts], d2[sel]])
            b = np.concatenate([mins, m[sel]])
            _write_adjacency(a, b, out, K, f"p{k:05d}")
    return {"k": k, "edges": int(canon.sum()), "checksum": f"{cs:016x}{csum:016x}", "rss_mb": _rss_mb()}


def cc_files(job, base: dict, K: int, max_rounds: int) -> tuple[str, int]:
    """Connected components as rounds of map tasks over files (Ray, local)."""
    prev, r = None, 0
    while True:
        if r // 2 >= max_rounds:
            raise RuntimeError(f"dedup: connected components did not converge in {max_rounds} rounds")
        res = job.map(_star_task, [dict(base, kind="large", round=r, k=k) for k in range(K)], f"cc-large-{r}")
        state = (sum(x["edges"] for x in res), sorted(x["checksum"] for x in res))
        if state == prev:
            return storage.join(base["work"], "lab", f"r{r:03d}"), r // 2
        prev = state
        job.map(_star_task, [dict(base, kind="small", round=r + 1, k=k) for k in range(K)], f"cc-small-{r + 1}")
        if r >= 2:  # inputs of earlier rounds are no longer needed
            storage.delete_prefix(storage.join(base["work"], "cc", f"r{r - 2:03d}"))
            storage.delete_prefix(storage.join(base["work"], "cc", f"r{r - 1:03d}"))
            storage.delete_prefix(storage.join(base["work"], "lab", f"r{r - 2:03d}"))
        r += 2


def cc_spark(work: str, K: int, max_rounds: int) -> tuple[str, int]:
    """Connected components with Spark DataFrame joins (large-star / small-star)."""
    from ..engines.spark_engine import get_spark

    spark = get_spark()
    files = storage.list_files(storage.join(work, "cc", "r000"))
    out = storage.join(work, "lab", "spark")
    if not files:
        return out, 0
    # Each round is a handful of small shuffles over checkpointed data; adaptive
    # re-planning only adds jobs there, so it is off for this loop and restored after.
    aqe = spark.conf.get("spark.sql.adaptive.enabled", "true")
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try:
        return _cc_spark_rounds(spark, files, out, K, max_rounds)
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", aqe)


def _cc_spark_rounds(spark, files: list[str], out: str, K: int, max_rounds: int) -> tuple[str, int]:
    from pyspark.sql import functions as F

    def read(batches):
        from lmrefinery.core import storage as st

        for bt in batches:
            for path in bt.column("path").to_pylist():
                yield from st.read_parquet(path, columns=["src", "dst"]).to_batches()

    paths = spark.createDataFrame([(f,) for f in files], "path string").repartition(min(len(files), 4 * K))
    adj = paths.mapInArrow(read, "src long, dst long")
    E = (adj.select(F.greatest("src", "dst").alias("a"), F.least("src", "dst").alias("b"))
         .where(F.col("a") != F.col("b")).distinct().localCheckpoint())
    rounds, prev = 0, None
    while True:
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError(f"dedup: connected components did not converge in {max_rounds} rounds")
        # large-star
        nb = E.select(F.col("a").alias("u"), F.col("b").alias("v")).unionByName(
            E.select(F.col("b").alias("u"), F.col("a").alias("v")))
        mn = nb.groupBy("u").agg(F.min("v").alias("mv")).select("u", F.least("mv", "u").alias("m"))
        L = nb.join(mn, "u").where(F.col("v") > F.col("u")).select(F.col("v").alias("a"), F.col("m").alias("b"))
        L = L.where(F.col("a") != F.col("b")).distinct()
        # small-star (edges a > b: b is a smaller neighbour of a)
        ms = L.groupBy("a").agg(F.min("b").alias("m"))
        S = L.join(ms, "a").where(F.col("b") != F.col("m")).select(F.col("b").alias("a"), F.col("m").alias("b"))
        S = S.unionByName(ms.select("a", F.col("m").alias("b"))).distinct().localCheckpoint()
        # order-free fingerprint of the edge set: count and two checksums (long-safe under ANSI)
        h = F.xxhash64("a", "b")
        fp = S.agg(F.count(F.lit(1)), F.sum(F.pmod(h, F.lit(2147483629))),
                   F.sum(F.pmod(F.xxhash64("b", "a"), F.lit(2147483587)))).first()
        fp = tuple(int(x or 0) for x in fp)
        E = S
        if fp == prev:
            break
        prev = fp
    labels = (E.select(F.col("a").alias("node"), F.col("b").alias("root"))
              .unionByName(E.select(F.col("b").alias("node"), F.col("b").alias("root"))).distinct()
              .withColumn("k", F.pmod(F.col("node"), F.lit(K))).repartition(K, "k"))

    def write(batches):
        import numpy as _np
        import pyarrow as _pa

        from lmrefinery.core import storage as st

        parts = [b for b in batches if b.num_rows]
        if not parts:
            return
        tb = _pa.Table.from_batches(parts)
        kk = tb.column("k").to_numpy()
        for k in _np.unique(kk):
            sub = tb.filter(_pa.array(kk == k)).select(["node", "root"])
            st.write_parquet(sub, st.join(out, f"p{int(k):05d}", "labels.parquet"))
        yield _pa.RecordBatch.from_arrays([_pa.array([tb.num_rows], _pa.int64())], names=["n"])

    labels.mapInArrow(write, "n long").collect()
    return out, rounds


# ---------------------------------------------------------------- 5. label, 6. choose
def _label_task(t: dict) -> dict:
    k, K = t["k"], t["params"]["buckets"]
    lab = _read_dir(storage.join(t["labels"], f"p{k:05d}"))
    if lab is None or lab.num_rows == 0:
        return {"k": k, "members": 0, "rss_mb": _rss_mb()}
    node_root = dict(zip(lab.column("node").to_pylist(), lab.column("root").to_pylist()))
    tabs = []
    for ix in t["indexes"]:
        tb = _read_index_dir(ix, f"docs/k{k:04d}")
        if tb is None or tb.num_rows == 0:
            continue
        nodes = tb.column("node").to_numpy()
        m = np.isin(nodes, lab.column("node").to_numpy())
        tb = tb.filter(pa.array(m))
        n = tb.num_rows
        tb = tb.append_column("release", pa.array(np.full(n, ix["release"], np.int32)))
        tb = tb.append_column("rel_rank", pa.array(np.full(n, ix["rel_rank"], np.int32)))
        tb = tb.append_column("root", pa.array([node_root[x] for x in tb.column("node").to_pylist()], pa.int64()))
        tabs.append(tb)
    if not tabs:
        return {"k": k, "members": 0, "rss_mb": _rss_mb()}
    tb = pa.concat_tables(tabs, promote_options="permissive")
    roots = tb.column("root").to_numpy()
    c = roots % K
    for cb in np.unique(c):
        _write(tb.filter(pa.array(c == cb)), storage.join(t["work"], "grp", f"c{int(cb):04d}", f"p{k:05d}.parquet"))
    return {"k": k, "members": tb.num_rows, "rss_mb": _rss_mb()}


_DROP = pa.schema([("row", pa.int64()), ("reason", pa.string()), ("duplicate_of", pa.string())])


def _choose_task(t: dict) -> dict:
    c, p = t["bucket"], t["params"]
    tb = _read_dir(storage.join(t["work"], "grp", f"c{c:04d}"))
    cl_schema = pa.schema([("cluster", pa.string()), ("id", pa.string()), ("source", pa.string()),
                           ("release", pa.int32()), ("size", pa.int64()), ("kept", pa.string()),
                           ("is_kept", pa.bool_())])
    hist: Counter = Counter()
    removed: Counter = Counter()
    if tb is None or tb.num_rows == 0:
        _write(cl_schema.empty_table(), storage.join(t["clusters"], f"c{c:04d}.parquet"))
        return {"bucket": c, "clusters": 0, "hist": {}, "removed": {}, "rss_mb": _rss_mb()}
    # one row per node (an id present in two releases counts once, in the earliest)
    tb = tb.sort_by([("node", "ascending"), ("rel_rank", "ascending")])
    nd = tb.column("node").to_numpy()
    tb = tb.filter(pa.array(np.r_[True, nd[1:] != nd[:-1]]))
    q = tb.column("quality").to_numpy(zero_copy_only=False)
    negq = np.where(np.isnan(q), np.inf, -q)
    length = tb.column("length").to_numpy()
    sort_cols = {"root": tb.column("root").to_numpy(), "rel_rank": tb.column("rel_rank").to_numpy()}
    order_keys = ["root", "rel_rank"]
    for crit in p["keep"]:
        if crit == "source":
            sort_cols["src_rank"] = tb.column("src_rank").to_numpy()
            order_keys.append("src_rank")
        elif crit == "quality":
            sort_cols["negq"] = negq
            order_keys.append("negq")
        elif crit == "longest":
            sort_cols["neglen"] = -length
            order_keys.append("neglen")
        elif crit == "shortest":
            sort_cols["len"] = length
            order_keys.append("len")
    ids = tb.column("id").to_pylist()
    id_rank = np.empty(len(ids), dtype=np.int64)
    id_rank[np.array(sorted(range(len(ids)), key=ids.__getitem__), dtype=np.int64)] = np.arange(len(ids))
    order = np.lexsort([id_rank] + [sort_cols[k] for k in reversed(order_keys)])
    tb = tb.take(pa.array(order))
    root = tb.column("root").to_numpy()
    ids = tb.column("id").to_pylist()
    rel = tb.column("release").to_numpy()
    part = tb.column("part").to_numpy()
    row = tb.column("row").to_numpy()
    tkey = tb.column("tkey").to_numpy()
    srcs = tb.column("source").to_pylist()
    starts = np.flatnonzero(np.r_[True, root[1:] != root[:-1]])
    sizes = np.diff(np.r_[starts, len(root)])
    drops: dict[int, list] = {}
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
        cols = list(zip(*rs))
        _write(pa.table({f.name: pa.array(list(col), f.type) for f, col in zip(_DROP, cols)}, schema=_DROP),
               storage.join(t["work"], "drops", f"p{pt:05d}", f"c{c:04d}.parquet"))
    cols = list(zip(*cl_rows)) if cl_rows else [[] for _ in cl_schema]
    _write(pa.table({f.name: pa.array(list(col), f.type) for f, col in zip(cl_schema, cols)}, schema=cl_schema),
           storage.join(t["clusters"], f"c{c:04d}.parquet"))
    return {"bucket": c, "clusters": int(sum(hist.values())), "hist": {str(k): v for k, v in hist.items()},
            "removed": dict(removed), "drops": {str(pt): len(rs) for pt, rs in drops.items()}, "rss_mb": _rss_mb()}


def _apply_task(t: dict) -> dict:
    prefix = storage.join(t["work"], "drops", f"p{t['part']:05d}")
    files = storage.list_files(prefix)
    want = t.get("expected_drops")
    if want is not None:  # the choose round said how many rows of this part go: a lost file is an error
        got = sum(storage.read_parquet(f, columns=["row"]).num_rows for f in files)
        if got != want:
            raise storage.StorageError(f"{prefix}: {got} drop decisions found, the choose round wrote {want}; "
                                       "scratch was damaged or deleted while the stage ran")
    return apply_drops(t, files, t["stage"], t.get("counters"), {"rss_mb": _rss_mb()})


# ---------------------------------------------------------------- the stage
@register
class NearDedup(Stage):
    name = "dedup"
    kind = "global"
    Params = NearParams
    description = ("Near-duplicate removal: MinHash LSH over word and CJK character n-grams, optional exact-"
                   "Jaccard verification, distributed connected components, one deterministic keeper per cluster.")

    def execute(self, job) -> list[dict]:
        t_start = time.time()
        params = self.params.model_dump()
        K = params["buckets"]
        work = job.work_dir
        index = storage.join(job.stage_dir, "index")
        storage.delete_prefix(index)
        n = len(job.inputs)
        base = dict(params=params, work=work, stage=self.name, stage_dir=job.stage_dir,
                    fingerprint=job.fingerprint)
        # earlier releases
        indexes = [{"root": index, "offset": 0, "n_parts": n, "release": 0, "rel_rank": len(params["against"])}]
        off = n
        for i, a in enumerate(params["against"]):
            root = resolve_index(a)
            meta = json.loads(storage.read_bytes(storage.join(root, "meta.json")))
            bad = [k for k in _COMPAT_KEYS if meta["params"].get(k) != params[k]]
            if bad:
                raise ValueError(f"dedup against {a}: index built with different {', '.join(bad)} "
                                 f"({ {k: meta['params'].get(k) for k in bad} }); they must match")
            if params["verify"] and not meta["params"].get("verify"):
                raise ValueError(f"dedup against {a}: index has no shingle sets (built with verify off)")
            indexes.append({"root": root, "offset": off, "n_parts": meta["n_parts"], "release": i + 1,
                            "rel_rank": i})
            off += meta["n_parts"]
        base["indexes"] = indexes
        rss = [0.0]
        real_job = job

        class _Tracked:  # every round's results report their worker's peak RSS
            def __getattr__(self, name):
                return getattr(real_job, name)

            @staticmethod
            def map(fn, tasks, step=""):
                res = real_job.map(fn, tasks, step)
                rss[0] = max([rss[0]] + [float(x.get("rss_mb", 0)) for x in res])
                return res

        job = _Tracked()
        phases: dict[str, float] = {}
        t_ph = [time.time()]

        def lap(name):
            now = time.time()
            phases[name] = round(now - t_ph[0], 3)
            t_ph[0] = now

        sign = job.map(_sign_task, [dict(base, input=p, part=i, index=index) for i, p in enumerate(job.inputs)],
                       "sign")
        storage.write_bytes(storage.join(index, "meta.json"), json.dumps(
            {"version": INDEX_VERSION, "n_parts": n, "params": params,
             "parts": [storage.relpath(p, job.ctx["output_root"]) for p in job.inputs]}, indent=1).encode())
        lap("sign")
        band = job.map(_band_task, [dict(base, bucket=b) for b in range(K)], "band")
        lap("band")
        n_cand = sum(x["edges"] for x in band)
        n_verified = None
        if params["verify"] and n_cand:
            slots = []
            for ix in indexes:
                for pp in range(ix["n_parts"]):
                    slots.append(dict(base, slot=ix["offset"] + pp,
                                      shingles=storage.join(ix["root"], "shingles", f"p{pp:05d}.parquet")))
            job.map(_verify1_task, slots, "verify-1")
            ver = job.map(_verify2_task, slots, "verify-2")
            n_cand = sum(x["candidates"] for x in ver)
            n_verified = sum(x["verified"] for x in ver)
            lap("verify")
        edges = n_cand if n_verified is None else n_verified
        rounds, cc_impl = 0, "none"
        if edges:
            if getattr(job.engine, "name", "") == "spark":
                labels, rounds = cc_spark(work, K, params["max_cc_rounds"])
                cc_impl = "spark-dataframe"
            else:
                labels, rounds = cc_files(job, base, K, params["max_cc_rounds"])
                cc_impl = "file-rounds"
            lap("cc")
            job.map(_label_task, [dict(base, k=k, labels=labels) for k in range(K)], "label")
            lap("label")
        clusters_dir = storage.join(job.stage_dir, "clusters")
        ch = job.map(_choose_task, [dict(base, bucket=c, clusters=clusters_dir) for c in range(K)], "choose")
        lap("choose")
        hist: Counter = Counter()
        removed: Counter = Counter()
        for x in ch:
            hist.update({int(k): v for k, v in x["hist"].items()})
            removed.update(x["removed"])
        report = {"documents": sum(x["rows"] for x in sign), "no_shingles": sum(x["empty"] for x in sign),
                  "candidate_pairs": n_cand, "verified_pairs": n_verified, "cc_rounds": rounds,
                  "cc_impl": cc_impl, "clusters": sum(hist.values()),
                  "cluster_size_hist": {str(k): hist[k] for k in sorted(hist)}, "removed": dict(removed),
                  "bands": params["bands"], "rows": params["rows"], "threshold": params["threshold"],
                  "against": [ix["root"] for ix in indexes[1:]]}
        counters = {"clusters": report["clusters"], "candidate_pairs": n_cand,
                    **({"verified_pairs": n_verified} if n_verified is not None else {}),
                    **{f"cluster_size_{k}": v for k, v in report["cluster_size_hist"].items()}}
        expected: Counter = Counter()
        for x in ch:
            expected.update({int(k): v for k, v in x.get("drops", {}).items()})
        tasks = [dict(base, input=p, part=i, input_desc=storage.relpath(p, job.ctx["output_root"]),
                      counters=counters if i == 0 else None, expected_drops=expected[i])
                 for i, p in enumerate(job.inputs)]
        parts = job.map(_apply_task, tasks, "apply")
        lap("apply")
        report["phase_seconds"] = phases
        report["max_worker_rss_mb"] = rss[0]
        report["seconds"] = round(time.time() - t_start, 3)
        storage.write_bytes(storage.join(job.stage_dir, "dedup_report.json"),
                            json.dumps(report, indent=1, sort_keys=True).encode())
        storage.delete_prefix(work)
        return parts
