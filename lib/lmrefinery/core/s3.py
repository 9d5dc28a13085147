"""S3 (and S3-compatible servers) for the storage layer: one boto3 client per thread
and process, errors that name the object, whole-object reads that survive a body cut
off mid-way, and large writes in parts.

Credentials and endpoint come from the standard AWS chain: environment variables,
profiles, instance roles, and ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` for
S3-compatible servers (MinIO, moto, Ceph). Transient errors are retried with
exponential backoff by botocore's ``adaptive`` retry mode."""
from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from typing import Any

from .errors import StorageError

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


def s3_errors(uri: str, exc: Exception) -> StorageError:
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageError(
            f"{uri}: no AWS credentials found. Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run with an instance role; for S3-compatible servers also AWS_ENDPOINT_URL.")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "?")
        return StorageError(f"{uri}: S3 error {code}: {exc}")
    return StorageError(f"{uri}: {type(exc).__name__}: {exc}")


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


def read_object(uri: str) -> bytes:
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


def multipart_threshold() -> int:
    return int(os.environ.get("LMR_S3_MULTIPART_BYTES", str(64 << 20)))


def _multipart_put(bucket: str, key: str, data: bytes) -> None:
    """A large object in parts (each retried on its own by boto3's transfer manager); the
    object appears whole when the upload completes, never in part."""
    from boto3.s3.transfer import TransferConfig

    part = max(5 << 20, multipart_threshold() // 4)
    cfg = TransferConfig(multipart_threshold=multipart_threshold(), multipart_chunksize=part, max_concurrency=4,
                         use_threads=True)
    s3_client().upload_fileobj(io.BytesIO(data), bucket, key, Config=cfg)


def put_object(uri: str, data: bytes) -> None:
    """One object, whole: a single PUT, or a multipart upload for large data."""
    b, k = split_s3(uri)
    if len(data) >= multipart_threshold():
        _multipart_put(b, k, data)
    else:
        s3_client().put_object(Bucket=b, Key=k, Body=data)


__all__ = ["is_s3", "multipart_threshold", "put_object", "read_object", "s3_client", "s3_errors", "split_s3"]
