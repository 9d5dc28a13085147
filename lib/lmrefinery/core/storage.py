"""Local paths and ``s3://`` URIs behind one small API: listing, stat, atomic
writes, whole and streamed reads, Parquet. S3 specifics (client, retries, errors,
multipart writes) are core/s3.py; transparent decompression of ``.gz``, ``.bz2``,
``.zst`` and ``.xz`` inputs is core/compression.py. Both are re-exported here, so
callers need only this module."""
from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from .compression import CompressionError, DecompressingReader, compression_of, decompressing
from .errors import StorageError
from .s3 import is_s3, multipart_threshold, put_object, read_object, s3_client, s3_errors, split_s3

_s3_errors = s3_errors  # the name other packages use (tokenize/indexed.py)


def join(base: str, *parts: str) -> str:
    if is_s3(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def relpath(path: str, base: str) -> str:
    if is_s3(path) or is_s3(base):
        b = base.rstrip("/") + "/"
        return path[len(b):] if path.startswith(b) else path
    return os.path.relpath(path, base)


def exists(uri: str) -> bool:
    if is_s3(uri):
        from botocore.exceptions import ClientError

        b, k = split_s3(uri)
        try:
            s3_client().head_object(Bucket=b, Key=k)
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise s3_errors(uri, e) from e
        except Exception as e:  # credentials etc.
            raise s3_errors(uri, e) from e
    return os.path.exists(uri)


@dataclass(frozen=True)
class ObjectInfo:
    path: str
    size: int
    etag: str


def stat(uri: str) -> ObjectInfo:
    if is_s3(uri):
        b, k = split_s3(uri)
        try:
            h = s3_client().head_object(Bucket=b, Key=k)
        except Exception as e:
            raise s3_errors(uri, e) from e
        return ObjectInfo(uri, int(h["ContentLength"]), h.get("ETag", "").strip('"'))
    try:
        st = os.stat(uri)
    except OSError as e:
        raise StorageError(f"{uri}: {e.strerror}") from e
    return ObjectInfo(uri, st.st_size, f"{st.st_size:x}-{st.st_mtime_ns:x}")


TMP_MARK = ".tmp-"


def is_tmp_name(path: str) -> bool:
    """An unfinished atomic write (``<name>.tmp-<hex>``): never data, whoever left it."""
    return TMP_MARK in path.rsplit("/", 1)[-1]


def list_files(pattern: str) -> list[str]:
    """Expand a path, folder or glob (``*``, ``?``, ``**``) into sorted files.
    Unfinished writes (``*.tmp-*``, e.g. left by a killed worker) are never listed."""
    if is_s3(pattern):
        b, k = split_s3(pattern)
        scheme = pattern.split("://", 1)[0]
        wild = any(c in k for c in "*?[")
        prefix = k.split("*")[0].split("?")[0].split("[")[0] if wild else k
        out = []
        try:
            pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=b, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/") or is_tmp_name(key):
                        continue
                    if wild:
                        if fnmatch.fnmatchcase(key, k):
                            out.append(f"{scheme}://{b}/{key}")
                    elif key == k or key.startswith(k.rstrip("/") + "/"):
                        out.append(f"{scheme}://{b}/{key}")
        except Exception as e:
            raise s3_errors(pattern, e) from e
        return sorted(out)
    import glob

    if os.path.isdir(pattern):
        out = []
        for root, _, files in os.walk(pattern):
            out.extend(os.path.join(root, f) for f in files if not f.startswith(".") and not is_tmp_name(f))
        return sorted(out)
    return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p) and not is_tmp_name(p))


def glob_base(pattern: str) -> str:
    """The non-wildcard directory part of a pattern: ids are made relative to it,
    so the same data on S3 and on disk gets the same document ids."""
    parts = pattern.split("/")
    keep = []
    for p in parts:
        if any(c in p for c in "*?["):
            break
        keep.append(p)
    base = "/".join(keep)
    if len(keep) == len(parts):  # a plain file or folder
        if not is_s3(pattern) and os.path.isdir(pattern):
            return pattern
        if is_s3(pattern) and pattern.endswith("/"):
            return pattern.rstrip("/")
        return base.rsplit("/", 1)[0] if "/" in base else ""
    return base


def open_raw(uri: str) -> BinaryIO:
    if is_s3(uri):
        import smart_open

        try:
            return smart_open.open(uri.replace("s3a://", "s3://"), "rb", compression="disable",
                                   transport_params={"client": s3_client()})
        except Exception as e:
            raise s3_errors(uri, e) from e
    try:
        return open(uri, "rb")
    except OSError as e:
        raise StorageError(f"{uri}: {e.strerror}") from e


def open_read(uri: str, decompress: bool = True) -> BinaryIO:
    raw = open_raw(uri)
    return decompressing(raw, compression_of(uri), uri) if decompress else raw


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        try:
            return read_object(uri)
        except StorageError:
            raise
        except Exception as e:
            raise s3_errors(uri, e) from e
    try:
        with open(uri, "rb") as f:
            return f.read()
    except OSError as e:
        raise StorageError(f"{uri}: {e.strerror}") from e


def write_bytes(uri: str, data: bytes) -> None:
    """Atomic: readers see the old object or the whole new one, never a part."""
    if is_s3(uri):
        try:
            put_object(uri, data)
        except Exception as e:
            raise s3_errors(uri, e) from e
        return
    d = os.path.dirname(uri)
    if d:
        os.makedirs(d, exist_ok=True)
    tmp = f"{uri}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, uri)


def delete(uri: str) -> None:
    if is_s3(uri):
        b, k = split_s3(uri)
        s3_client().delete_object(Bucket=b, Key=k)
    elif os.path.exists(uri):
        os.remove(uri)


def delete_prefix(uri: str) -> None:
    if is_s3(uri):
        for f in list_files(uri.rstrip("/") + "/"):
            delete(f)
        return
    import shutil

    if os.path.isdir(uri):
        shutil.rmtree(uri)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    # Fixed writer settings: the same table gives the same bytes on any engine.
    pq.write_table(table, sink, compression="zstd", row_group_size=64 * 1024,
                   write_statistics=True, use_dictionary=True)
    return sink.getvalue()


def write_parquet(table: pa.Table, uri: str) -> dict[str, Any]:
    data = table_to_parquet_bytes(table)
    write_bytes(uri, data)
    return {"rows": table.num_rows, "bytes": len(data), "sha256": sha256(data)}


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    # use_threads=False: parallelism comes from tasks, and pyarrow's reader thread pool
    # made about one process in ten abort at interpreter exit here (pyarrow 23-26)
    return pq.read_table(io.BytesIO(read_bytes(uri)), columns=columns, use_threads=False)


def parquet_schema(uri: str) -> pa.Schema:
    """The schema of a Parquet object (local: from its footer; S3: from its bytes)."""
    return pq.ParquetFile(io.BytesIO(read_bytes(uri)) if is_s3(uri) else uri).schema_arrow


def parquet_rows(uri: str) -> int:
    """The rows of a Parquet object, from its footer (S3: from its bytes)."""
    pf = pq.ParquetFile(io.BytesIO(read_bytes(uri)) if is_s3(uri) else uri)
    return int(pf.metadata.num_rows)


def iter_parquet_batches(uri: str, batch_size: int = 4096,
                         columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    pf = pq.ParquetFile(io.BytesIO(read_bytes(uri)) if is_s3(uri) else uri)
    yield from pf.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)


__all__ = ["CompressionError", "DecompressingReader", "ObjectInfo", "StorageError", "TMP_MARK", "compression_of",
           "decompressing", "delete", "delete_prefix", "exists", "glob_base", "is_s3", "is_tmp_name",
           "iter_parquet_batches", "join", "list_files", "multipart_threshold", "open_raw", "open_read",
           "parquet_rows", "parquet_schema", "read_bytes", "read_parquet", "relpath", "s3_client", "s3_errors",
           "sha256", "split_s3", "stat", "table_to_parquet_bytes", "write_bytes", "write_parquet"]
