"""Local paths and ``s3://`` URIs behind one small API.

S3 goes through boto3 (and smart-open for streaming reads). Credentials and
endpoint come from the standard AWS chain: environment variables, profiles,
instance roles, and ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` for
S3-compatible servers (MinIO, moto, Ceph). Transient errors are retried with
exponential backoff by botocore's ``adaptive`` retry mode. Compressed inputs
(``.gz``, ``.bz2``, ``.zst``, ``.xz``) are decompressed transparently on read, as streams
(every member/stream/frame, with line iteration and seeks); damage is a ``CompressionError``.
"""
from __future__ import annotations

import bz2
import fnmatch
import hashlib
import io
import lzma
import os
import posixpath
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq


class StorageError(RuntimeError):
    """An I/O problem with a message that names the object."""


_local = threading.local()


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://") or uri.startswith("s3a://")


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket, key


def s3_client() -> Any:
    """One boto3 client per thread/process (clients are not fork-safe)."""
    key = (os.getpid(), os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    cache = getattr(_local, "clients", None)
    if cache is None:
        cache = _local.clients = {}
    if key not in cache:
        import boto3
        from botocore.config import Config

        cfg = Config(retries={"max_attempts": int(os.environ.get("LMR_S3_MAX_ATTEMPTS", "8")), "mode": "adaptive"},
                     connect_timeout=10, read_timeout=120)
        endpoint = key[1] or None
        cache[key] = boto3.session.Session().client("s3", endpoint_url=endpoint, config=cfg)
    return cache[key]


def _s3_errors(uri: str, exc: Exception) -> StorageError:
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageError(
            f"{uri}: no AWS credentials found. Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run with an instance role; for S3-compatible servers also AWS_ENDPOINT_URL.")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "?")
        return StorageError(f"{uri}: S3 error {code}: {exc}")
    return StorageError(f"{uri}: {type(exc).__name__}: {exc}")


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
            raise _s3_errors(uri, e) from e
        except Exception as e:  # credentials etc.
            raise _s3_errors(uri, e) from e
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
            raise _s3_errors(uri, e) from e
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
            raise _s3_errors(pattern, e) from e
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
            raise _s3_errors(uri, e) from e
    try:
        return open(uri, "rb")
    except OSError as e:
        raise StorageError(f"{uri}: {e.strerror}") from e


_COMPRESSION_SUFFIXES = ((".gz", "gzip"), (".bz2", "bz2"), (".zst", "zstd"), (".zstd", "zstd"),
                         (".xz", "xz"))


def compression_of(uri: str) -> str | None:
    low = uri.lower()
    for ext, name in _COMPRESSION_SUFFIXES:
        if low.endswith(ext):
            return name
    return None


class CompressionError(OSError):
    """Corrupt or truncated compressed data; the message names the object and the offset.
    An ``OSError`` so that every reader's existing I/O error handling catches it."""


def _new_decoder(kind: str):
    """A one-frame incremental decoder with ``decompress``, ``eof`` and ``unused_data``."""
    if kind == "gzip":
        return zlib.decompressobj(wbits=31)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind == "xz":
        return lzma.LZMADecompressor()
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    raise ValueError(f"unknown compression {kind!r}")


class DecompressingReader(io.RawIOBase):
    """Streams the decompressed bytes of ``raw``: every gzip member, bzip2 stream, zstd
    frame and xz stream in turn. A stream that ends inside a member/frame, or bytes that
    do not decode, raise ``CompressionError`` (never a silent short read). Seeks work
    in both directions (backwards re-decodes from the start when ``raw`` can seek)."""

    CHUNK = 1 << 16

    def __init__(self, raw: BinaryIO, kind: str, name: str = ""):
        super().__init__()
        self._raw, self.kind, self.name = raw, kind, name or getattr(raw, "name", "") or "<stream>"
        self._restart()

    def _restart(self) -> None:
        self._dec, self._in_member, self._pending, self._pos, self._done = _new_decoder(self.kind), False, b"", 0, False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def _fail(self, what: str, exc: Exception | None = None) -> CompressionError:
        detail = f": {type(exc).__name__}: {exc}" if exc else ""
        return CompressionError(f"{self.name}: {what} {self.kind} data after {self._pos} decompressed bytes{detail}")

    def _feed(self, data: bytes) -> bytes:
        out = []
        while data:
            self._in_member = True
            try:
                out.append(self._dec.decompress(data))
            except Exception as e:  # zlib.error, OSError, LZMAError, ZstdError
                raise self._fail("corrupt", e) from e
            if not self._dec.eof:
                break
            data, self._in_member = self._dec.unused_data, False
            self._dec = _new_decoder(self.kind)
            if self.kind == "gzip" and not data.strip(b"\0"):
                data = b""  # zero padding after the last member, as gzip(1) allows
        return b"".join(out)

    def _fill(self) -> None:
        while not self._pending and not self._done:
            data = self._raw.read(self.CHUNK)
            if not data:
                self._done = True
                if self._in_member:
                    raise self._fail("truncated")
                return
            self._pending = self._feed(data)

    def readinto(self, b) -> int:
        self._fill()
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            while self.read(self.CHUNK):
                pass
            offset += self._pos
        if offset < 0:
            raise ValueError(f"{self.name}: negative seek position {offset}")
        if offset < self._pos:
            self._raw.seek(0)
            self._restart()
        while self._pos < offset and self.read(min(self.CHUNK, offset - self._pos)):
            pass
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def decompressing(raw: BinaryIO, kind: str | None, name: str = "") -> BinaryIO:
    if kind is None:
        return raw
    return io.BufferedReader(DecompressingReader(raw, kind, name), buffer_size=1 << 16)


def open_read(uri: str, decompress: bool = True) -> BinaryIO:
    raw = open_raw(uri)
    return decompressing(raw, compression_of(uri), uri) if decompress else raw


class _ShortBody(Exception):
    """The body ended before its length, or its bytes do not match the object's MD5 ETag."""


def _max_attempts() -> int:
    return int(os.environ.get("LMR_S3_MAX_ATTEMPTS", "8"))


def _transient_read_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError
    from urllib3.exceptions import HTTPError

    return (BotoCoreError, HTTPError, ConnectionError, TimeoutError, _ShortBody)


def _check_md5(data: bytearray, etag: str) -> None:
    """A single-part object's ETag is the MD5 of its bytes: check it (multipart ETags have a '-')."""
    tag = etag.strip('"')
    if len(tag) == 32 and "-" not in tag and hashlib.md5(data).hexdigest() != tag:  # noqa: S324 - S3's checksum
        raise _ShortBody(f"bytes do not match the ETag {tag}")


def _s3_read_object(uri: str) -> bytes:
    """The whole object. botocore retries failed requests but not a body cut off mid-way:
    here a short or damaged body is re-read from where it stopped (a ranged GET,
    If-Match the first response's ETag so the pieces are of one version), up to
    LMR_S3_MAX_ATTEMPTS times, then checked against the length and the MD5 ETag."""
    from botocore.exceptions import ClientError

    b, k = split_s3(uri)
    buf, etag, total, last = bytearray(), None, None, None
    for attempt in range(_max_attempts()):
        try:
            kw = {"Range": f"bytes={len(buf)}-", "IfMatch": etag} if buf else {}
            r = s3_client().get_object(Bucket=b, Key=k, **kw)
            if etag is None:
                etag, total = r.get("ETag", ""), int(r["ContentLength"])
            body = r["Body"]
            while True:
                chunk = body.read(1 << 20)
                if not chunk:
                    break
                buf += chunk
            if len(buf) != total:
                raise _ShortBody(f"{len(buf)} of {total} bytes")
            try:
                _check_md5(buf, etag)
            except _ShortBody:
                buf.clear()  # damaged somewhere: read it all again
                raise
            return bytes(buf)
        except _transient_read_errors() as e:
            last = e
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
            buf, etag, total, last = bytearray(), None, None, e  # the object changed: start over
        time.sleep(min(0.05 * 2 ** attempt, 2.0))
    raise StorageError(f"{uri}: could not read the whole object in {_max_attempts()} attempts "
                       f"({len(buf)} of {total} bytes; last error {type(last).__name__}: {last})")


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        try:
            return _s3_read_object(uri)
        except StorageError:
            raise
        except Exception as e:
            raise _s3_errors(uri, e) from e
    try:
        with open(uri, "rb") as f:
            return f.read()
    except OSError as e:
        raise StorageError(f"{uri}: {e.strerror}") from e


def multipart_threshold() -> int:
    return int(os.environ.get("LMR_S3_MULTIPART_BYTES", str(64 << 20)))


def _s3_multipart_put(bucket: str, key: str, data: bytes) -> None:
    """A large object in parts (each retried on its own by boto3's transfer manager); the
    object appears whole when the upload completes, never in part."""
    from boto3.s3.transfer import TransferConfig

    part = max(5 << 20, multipart_threshold() // 4)
    cfg = TransferConfig(multipart_threshold=multipart_threshold(), multipart_chunksize=part, max_concurrency=4,
                         use_threads=True)
    s3_client().upload_fileobj(io.BytesIO(data), bucket, key, Config=cfg)


def write_bytes(uri: str, data: bytes) -> None:
    """Atomic: readers see the old object or the whole new one, never a part."""
    if is_s3(uri):
        b, k = split_s3(uri)
        try:
            if len(data) >= multipart_threshold():
                _s3_multipart_put(b, k, data)
            else:
                s3_client().put_object(Bucket=b, Key=k, Body=data)
        except Exception as e:
            raise _s3_errors(uri, e) from e
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


def write_parquet(table: pa.Table, uri: str) -> dict:
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


def iter_parquet_batches(uri: str, batch_size: int = 4096,
                         columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    pf = pq.ParquetFile(io.BytesIO(read_bytes(uri)) if is_s3(uri) else uri)
    yield from pf.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)
