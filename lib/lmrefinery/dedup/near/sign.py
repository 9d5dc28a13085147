"""Round 1, sign: per input part, shingles -> MinHash -> band keys.

Writes the part's share of the index: band keys into B bucket files, document info
(the fields the keeper is chosen by) into B node partitions, and, when verification is
on, each document's sorted distinct shingle hashes."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ...core import storage
from ..exact import text_key
from ..minhash import band_keys, signatures, text_shingle_hashes
from .files import node_ids, rss_mb, write
from .params import NearParams

SIGN_BATCH_ROWS = 512  # documents shingled and signed at once: bounds the transient arrays of a sign task


@dataclass(frozen=True)
class SignTask:
    part: int
    input: str
    index: str
    params: NearParams


@dataclass(frozen=True)
class SignResult:
    part: int
    rows: int
    empty: int  # documents without a shingle (no band keys)
    seconds: float
    rss_mb: float


@dataclass(frozen=True)
class _Signed:
    """Signatures, band keys, document info and shingle sets of one batch of rows."""

    keys: np.ndarray
    nodes: np.ndarray
    has: np.ndarray
    ids: list[str]
    srcs: list[str]
    q: np.ndarray
    src_rank: list[int]
    length: list[int]
    tkey: list[int]
    sets: pa.ListArray | None


def _sign_batch(b: pa.RecordBatch, p: NearParams, pref: dict[str, int]) -> _Signed:
    n = b.num_rows
    names = b.schema.names
    ids = b.column(names.index("id")).to_pylist()
    texts = b.column(names.index("text")).to_pylist()
    langs = b.column(names.index("lang")).to_pylist() if "lang" in names else [None] * n
    srcs = b.column(names.index("source")).to_pylist()
    if p.quality_column in names:
        q = np.array([np.nan if v is None else float(v) for v in b.column(names.index(p.quality_column)).to_pylist()],
                     dtype=np.float64)
    else:
        q = np.full(n, np.nan)
    hl = [text_shingle_hashes(txt, lg, p.script, p.ngram, p.char_ngram, p.hash) for txt, lg in zip(texts, langs)]
    bands, rows, _ = p.lsh
    sig = signatures(hl, p.num_perm, p.seed, p.scheme)
    return _Signed(keys=band_keys(sig, bands, rows, p.seed), nodes=node_ids(ids),
                   has=np.array([len(h) > 0 for h in hl], dtype=bool), ids=ids, srcs=srcs, q=q,
                   src_rank=[pref.get(s, len(pref)) for s in srcs], length=[len(x or "") for x in texts],
                   tkey=[text_key(x) for x in texts], sets=_shingle_sets(hl) if p.verify else None)


def _shingle_sets(hl: list[np.ndarray]) -> pa.ListArray:
    """Each document's sorted distinct shingle hashes, as one Arrow list array."""
    sets = [np.unique(h) for h in hl]
    offs = np.r_[0, np.cumsum([len(x) for x in sets])].astype(np.int32)
    vals = np.concatenate(sets).astype(np.uint32, copy=False) if sets else np.empty(0, np.uint32)
    return pa.ListArray.from_arrays(pa.array(offs, pa.int32()), pa.array(vals, pa.uint32()))


_EMPTY = pa.record_batch({"id": pa.array([], pa.string()), "text": pa.array([], pa.string()),
                          "source": pa.array([], pa.string())})


def sign_part(t: SignTask) -> SignResult:
    """Per input part, read and signed SIGN_BATCH_ROWS documents at a time: only the
    compact results (band keys, document info, and the shingle sets when verify is on)
    stay for the whole part, not the texts or the per-shingle arrays."""
    t0 = time.time()
    p = t.params
    pref = {s: i for i, s in enumerate(p.prefer_sources)}
    names = storage.parquet_schema(t.input).names
    cols = [c for c in ("id", "text", "source", "lang", p.quality_column) if c in names]
    signed = [_sign_batch(b, p, pref)
              for b in storage.iter_parquet_batches(t.input, batch_size=SIGN_BATCH_ROWS, columns=cols)]
    if not signed:  # a part without rows
        signed = [_sign_batch(_EMPTY, p, pref)]
    nodes = np.concatenate([s.nodes for s in signed])
    has = np.concatenate([s.has for s in signed])
    _write_bands(t, np.concatenate([s.keys for s in signed])[has], nodes[has])
    _write_docs(t, signed, nodes)
    if p.verify:  # one list chunk per batch: the sets are never concatenated
        sets = pa.chunked_array([s.sets for s in signed], pa.list_(pa.uint32()))
        write(pa.table({"node": pa.array(nodes, pa.int64()), "sh": sets}),
              storage.join(t.index, "shingles", f"p{t.part:05d}.parquet"))
    return SignResult(t.part, len(nodes), int((~has).sum()), round(time.time() - t0, 3), rss_mb())


def _write_bands(t: SignTask, keys: np.ndarray, nodes: np.ndarray) -> None:
    """Band keys of the documents with shingles -> B bucket files (one per bucket, empty too)."""
    B = t.params.n_buckets
    kk = keys.reshape(-1)
    kn = np.repeat(nodes, t.params.lsh[0])
    bucket = (kk % np.uint64(B)).astype(np.int64)
    for b in range(B):
        m = bucket == b
        write(pa.table({"key": pa.array(kk[m], pa.uint64()), "node": pa.array(kn[m], pa.int64()),
                        "part": pa.array(np.full(int(m.sum()), t.part, np.int32), pa.int32())}),
              storage.join(t.index, "bands", f"b{b:04d}", f"p{t.part:05d}.parquet"))


def _write_docs(t: SignTask, signed: list[_Signed], nodes: np.ndarray) -> None:
    """Document info -> B node partitions (one file per partition, empty too)."""
    n, B = len(nodes), t.params.n_buckets
    info = pa.table({
        "node": pa.array(nodes, pa.int64()), "id": pa.array([x for s in signed for x in s.ids], pa.string()),
        "source": pa.array([x for s in signed for x in s.srcs], pa.string()),
        "part": pa.array(np.full(n, t.part, np.int32), pa.int32()),
        "row": pa.array(np.arange(n, dtype=np.int64), pa.int64()),
        "src_rank": pa.array([x for s in signed for x in s.src_rank], pa.int32()),
        "quality": pa.array(np.concatenate([s.q for s in signed]), pa.float64()),
        "length": pa.array([x for s in signed for x in s.length], pa.int64()),
        "tkey": pa.array([x for s in signed for x in s.tkey], pa.uint64())})
    kpart = nodes % B
    for k in range(B):
        write(info.filter(pa.array(kpart == k)), storage.join(t.index, "docs", f"k{k:04d}", f"p{t.part:05d}.parquet"))
