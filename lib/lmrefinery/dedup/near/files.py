"""Paths and file helpers shared by the near-dedup rounds: node ids, Parquet folders,
the adjacency layout of edge files, and the indexes (this run's and earlier releases')."""
from __future__ import annotations

import json
import resource
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

from ...core import storage
from ..buckets import auto_buckets, why_auto
from .params import NearParams

INDEX_VERSION = 1
# parameters an earlier index must share with this run for its band keys and documents to join
_COMPAT_KEYS = ("ngram", "char_ngram", "script", "num_perm", "bands", "rows", "seed", "hash", "scheme", "buckets")


@dataclass(frozen=True)
class IndexRef:
    """One index taking part in the rounds: this run's (release 0) or an earlier release's.
    Its parts are numbered slots offset..offset+n_parts-1 across all indexes."""

    root: str
    offset: int
    n_parts: int
    release: int
    rel_rank: int


def node_ids(ids: list[str]) -> np.ndarray:
    """A signed 64-bit node per document id (Spark longs are signed)."""
    f = xxhash.xxh3_64_intdigest
    return np.fromiter((f(i.encode("utf-8", "surrogatepass")) for i in ids), dtype=np.uint64,
                       count=len(ids)).view(np.int64)


def rss_mb() -> float:
    """This worker's peak resident memory, reported with every round's result."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def write(tb: pa.Table, uri: str) -> None:
    storage.write_parquet(tb, uri)


def read_dir(prefix: str, columns: list[str] | None = None) -> pa.Table | None:
    files = storage.list_files(prefix)
    if not files:
        return None
    return pa.concat_tables([storage.read_parquet(f, columns=columns) for f in files])


def read_index_dir(ix: IndexRef, sub: str) -> pa.Table | None:
    """An index folder written by every part of the sign round (one file per part, empty
    or not): a missing file means the index was damaged or deleted under this stage
    (e.g. by another run on the same output), which is an error, never "no data"."""
    prefix = storage.join(ix.root, sub)
    files = storage.list_files(prefix)
    if len(files) != ix.n_parts:
        raise storage.StorageError(f"{prefix}: dedup index has {len(files)} of {ix.n_parts} part files; "
                                   "it was damaged or deleted while the stage ran (another run on this output?)")
    if not files:
        return None
    return pa.concat_tables([storage.read_parquet(f) for f in files])


def dedup_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (a, b) pairs, sorted by a then b."""
    if len(a) == 0:
        return a, b
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])]
    return a[keep], b[keep]


_ADJ = pa.schema([("src", pa.int64()), ("dst", pa.int64())])


def write_adjacency(a: np.ndarray, b: np.ndarray, out_dir: str, K: int, name: str) -> None:
    """Undirected edges {a,b} as adjacency rows (src, dst), each row in the
    partition of its src, so a task sees every edge of the nodes it owns."""
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    part = src % K
    for k in np.unique(part):
        m = part == k
        write(pa.table({"src": src[m], "dst": dst[m]}, schema=_ADJ),
              storage.join(out_dir, f"p{int(k):05d}", f"{name}.parquet"))


def resolve_index(path: str) -> str:
    for cand in (path, storage.join(path, "index")):
        if storage.exists(storage.join(cand, "meta.json")):
            return cand
    raise FileNotFoundError(f"dedup against: no index at {path} (expected meta.json there or in index/)")


def _against(params: NearParams) -> list[tuple[str, str, dict[str, Any]]]:
    """(as given, index root, meta.json) of every earlier release in `against`."""
    out = []
    for a in params.against:
        root = resolve_index(a)
        out.append((a, root, json.loads(storage.read_bytes(storage.join(root, "meta.json")))))
    return out


def with_buckets(job: Any, params: NearParams) -> tuple[NearParams, str]:
    """The params with the bucket count the rounds run with, and where it comes from: the
    recipe's `buckets`; else the `against` indexes' (band keys and node partitions join
    only with the same count); else sized from the input's documents (dedup/buckets.py).
    A count the stage chose is recorded on the job, for the manifest."""
    if params.buckets is not None:
        return params, "recipe"
    if params.against:
        counts = {a: meta["params"].get("buckets") for a, _, meta in _against(params)}
        if len(set(counts.values())) > 1 or None in counts.values():
            raise ValueError(f"dedup against: the indexes were built with different buckets ({counts}); "
                             "they cannot be joined in one run")
        b, why = next(iter(counts.values())), f"from the index of dedup against {params.against[0]}"
    else:
        docs = job.documents()
        b, why = auto_buckets(docs, params.bucket_docs), why_auto(docs, params.bucket_docs)
    job.resolve("buckets", b, why)
    return params.model_copy(update={"buckets": b}), why


def index_refs(index: str, n_parts: int, params: NearParams) -> list[IndexRef]:
    """This run's index, then every earlier release in `against`, checked to have been
    built with the same shingling and LSH parameters (and buckets: `params` holds the
    count the rounds run with)."""
    now = params.model_dump()
    refs = [IndexRef(index, 0, n_parts, 0, len(params.against))]
    offset = n_parts
    for i, (a, root, meta) in enumerate(_against(params)):
        bad = [k for k in _COMPAT_KEYS if meta["params"].get(k) != now[k]]
        if bad:
            raise ValueError(f"dedup against {a}: index built with different {', '.join(bad)} "
                             f"({ {k: meta['params'].get(k) for k in bad} }); they must match")
        if params.verify and not meta["params"].get("verify"):
            raise ValueError(f"dedup against {a}: index has no shingle sets (built with verify off)")
        refs.append(IndexRef(root, offset, meta["n_parts"], i + 1, i))
        offset += meta["n_parts"]
    return refs


def write_index_meta(index: str, params: NearParams, inputs: list[str], output_root: str) -> None:
    """meta.json of this run's index: what a later run checks before joining it."""
    storage.write_bytes(storage.join(index, "meta.json"), json.dumps(
        {"version": INDEX_VERSION, "n_parts": len(inputs), "params": params.model_dump(),
         "parts": [storage.relpath(p, output_root) for p in inputs]}, indent=1).encode())
