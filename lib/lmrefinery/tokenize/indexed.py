"""Megatron-compatible indexed token datasets: ``PREFIX.bin`` + ``PREFIX.idx``.

The layout is the one Megatron-LM / megatron-core's ``IndexedDataset`` reads
(``MMIDIDX`` version 1), so shards written here open there unchanged:

``.bin``  the token ids of every sequence back to back, little-endian, in the
          dataset dtype (``uint16`` when the vocabulary has fewer than 65,500
          entries, ``int32`` otherwise - the same rule as megatron's
          ``DType.optimal_dtype``).
``.idx``  ``b"MMIDIDX\\x00\\x00"`` | ``<Q`` version (=1) | ``<B`` dtype code
          (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32,
          8 uint16) | ``<Q`` sequence count N | ``<Q`` document-index count
          (N + 1 here) | ``int32[N]`` sequence lengths | ``int64[N]`` byte
          offsets of each sequence in ``.bin`` | ``int64[N+1]`` document indices
          (``0, 1, ..., N``: one sequence per document).

Loss masks for instruction data live in a *companion* indexed dataset with the
prefix ``PREFIX.mask`` (``PREFIX.mask.bin`` / ``PREFIX.mask.idx``), dtype
``uint8``, with exactly the same sequence lengths: ``mask[i] == 1`` when token
``i`` is a training target (assistant content and its end-of-turn token).
Megatron opens it like any other indexed dataset.

API
---
``dtype_for_vocab(vocab_size) -> np.dtype``
``IndexedWriter(prefix, dtype, with_mask=False)``: ``add(ids, mask=None)``,
    ``add_many(flat, lengths, mask_flat=None)``,
    ``close() -> dict`` (``bin``/``idx``/``mask_bin``/``mask_idx`` entries with
    ``path``, ``bytes``, ``sha256``; ``sequences``; ``tokens``). Works on local
    paths and ``s3://`` (the object is PUT once on close).
``IndexedShard(prefix, cache_dir=None)``: ``len()``, ``lengths`` (int32 array),
    ``get(i, offset=0, length=None) -> np.ndarray``, ``get_mask(...)``,
    ``has_mask``, ``dtype``. Local files are memory-mapped. ``s3://`` prefixes
    read the ``.idx`` once and fetch token ranges with HTTP ranged GETs, or, with
    ``cache_dir``, are synced to local disk first (``sync_to_cache``) and mapped.
"""
from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
from collections.abc import Iterable
from typing import IO

import numpy as np

from ..core import storage

INDEX_HEADER = b"MMIDIDX\x00\x00"
_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
          np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7, np.dtype(np.uint16): 8}
_DTYPES = {v: k for k, v in _CODES.items()}
MASK_SUFFIX = ".mask"


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 below 65,500 ids (megatron's rule), int32 otherwise."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def bin_path(prefix: str) -> str:
    return prefix + ".bin"


def idx_path(prefix: str) -> str:
    return prefix + ".idx"


def mask_prefix(prefix: str) -> str:
    return prefix + MASK_SUFFIX


def encode_index(lengths: np.ndarray, dtype: np.dtype) -> bytes:
    """The bytes of a ``.idx`` file for sequences of these lengths (one sequence per document)."""
    dtype = np.dtype(dtype)
    lengths = np.asarray(lengths, dtype=np.int32)
    n = len(lengths)
    pointers = np.zeros(n, dtype=np.int64)
    if n:
        np.cumsum(lengths[:-1].astype(np.int64) * dtype.itemsize, out=pointers[1:])
    docs = np.arange(n + 1, dtype=np.int64)
    return b"".join([INDEX_HEADER, struct.pack("<Q", 1), struct.pack("<B", _CODES[dtype]),
                     struct.pack("<Q", n), struct.pack("<Q", n + 1), lengths.tobytes(), pointers.tobytes(),
                     docs.tobytes()])


def decode_index(data: bytes | memoryview) -> dict:
    """Parse ``.idx`` bytes: dtype, lengths (int32), pointers (int64), document indices (int64)."""
    buf = memoryview(data)
    if bytes(buf[:9]) != INDEX_HEADER:
        raise ValueError("not a Megatron MMIDIDX index (bad header)")
    version = struct.unpack("<Q", buf[9:17])[0]
    if version != 1:
        raise ValueError(f"unsupported MMIDIDX version {version}")
    dtype = _DTYPES[struct.unpack("<B", buf[17:18])[0]]
    n = struct.unpack("<Q", buf[18:26])[0]
    nd = struct.unpack("<Q", buf[26:34])[0]
    off = 34
    lengths = np.frombuffer(buf, dtype=np.int32, count=n, offset=off)
    off += 4 * n
    pointers = np.frombuffer(buf, dtype=np.int64, count=n, offset=off)
    off += 8 * n
    docs = np.frombuffer(buf, dtype=np.int64, count=nd, offset=off)
    return {"dtype": dtype, "lengths": lengths, "pointers": pointers, "document_indices": docs}


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


class _Sink:
    """A local file written in place (tmp + rename on close), or an in-memory
    buffer PUT to S3 on close. Hashes as it goes."""

    def __init__(self, uri: str):
        self.uri = uri
        self.h = hashlib.sha256()
        self.n = 0
        self.f: IO[bytes]
        if storage.is_s3(uri):
            self.f = io.BytesIO()
            self.tmp = None
        else:
            d = os.path.dirname(uri)
            if d:
                os.makedirs(d, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(prefix=os.path.basename(uri) + ".tmp-", dir=d or ".")
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; shards are read like every other output
            self.f = os.fdopen(fd, "wb", buffering=1 << 20)

    def write(self, b: bytes | memoryview) -> None:
        self.h.update(b)
        self.n += len(b)
        self.f.write(b)

    def close(self) -> dict:
        if self.tmp is None:
            assert isinstance(self.f, io.BytesIO)
            storage.write_bytes(self.uri, self.f.getvalue())
        else:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.uri)
        return {"path": self.uri, "bytes": self.n, "sha256": self.h.hexdigest()}

    def abort(self) -> None:
        if self.tmp is not None:
            self.f.close()
            if os.path.exists(self.tmp):
                os.remove(self.tmp)


class IndexedWriter:
    """Streams sequences into ``prefix.bin`` and writes ``prefix.idx`` on close.

    >>> w = IndexedWriter("out/shard-00000", np.uint16, with_mask=True)
    >>> w.add([5, 6, 7, 2], mask=[0, 1, 1, 1]); info = w.close()
    """

    def __init__(self, prefix: str, dtype, with_mask: bool = False):
        self.prefix = prefix
        self.dtype = np.dtype(dtype)
        if self.dtype not in _CODES:
            raise ValueError(f"dtype {self.dtype} has no MMIDIDX code")
        self.with_mask = with_mask
        self.lengths: list[int] = []
        self._bin = _Sink(bin_path(prefix))
        self._mask = _Sink(bin_path(mask_prefix(prefix))) if with_mask else None
        self.tokens = 0

    def add(self, ids: Iterable[int] | np.ndarray, mask: Iterable[int] | np.ndarray | None = None) -> None:
        arr = np.asarray(ids)
        if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(self.dtype).max):
            raise ValueError(f"token id out of range for {self.dtype}: [{arr.min()}, {arr.max()}]")
        arr = arr.astype(self.dtype, copy=False)
        self._bin.write(arr.tobytes())
        if self._mask is not None:
            m = np.ones(len(arr), np.uint8) if mask is None else np.asarray(mask, dtype=np.uint8)
            if len(m) != len(arr):
                raise ValueError(f"mask length {len(m)} != sequence length {len(arr)}")
            self._mask.write(m.tobytes())
        elif mask is not None:
            raise ValueError("this writer was opened without with_mask=True")
        self.lengths.append(len(arr))
        self.tokens += len(arr)

    def add_many(self, flat: np.ndarray, lengths: np.ndarray, mask_flat: np.ndarray | None = None) -> None:
        """Append many sequences at once: ``flat`` holds them back to back, ``lengths`` their sizes."""
        flat = np.asarray(flat)
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != len(flat):
            raise ValueError("lengths do not add up to the number of tokens")
        if flat.size and (flat.min() < 0 or flat.max() > np.iinfo(self.dtype).max):
            raise ValueError(f"token id out of range for {self.dtype}: [{flat.min()}, {flat.max()}]")
        self._bin.write(flat.astype(self.dtype, copy=False).tobytes())
        if self._mask is not None:
            m = np.ones(len(flat), np.uint8) if mask_flat is None else np.asarray(mask_flat, dtype=np.uint8)
            if len(m) != len(flat):
                raise ValueError("mask and tokens differ in length")
            self._mask.write(m.tobytes())
        elif mask_flat is not None:
            raise ValueError("this writer was opened without with_mask=True")
        self.lengths.extend(int(x) for x in lengths)
        self.tokens += len(flat)

    def close(self) -> dict:
        lengths = np.asarray(self.lengths, dtype=np.int32)
        out = {"prefix": self.prefix, "sequences": len(lengths), "tokens": int(self.tokens),
               "dtype": self.dtype.name, "bin": self._bin.close()}
        idx = _Sink(idx_path(self.prefix))
        idx.write(encode_index(lengths, self.dtype))
        out["idx"] = idx.close()
        if self._mask is not None:
            out["mask_bin"] = self._mask.close()
            mi = _Sink(idx_path(mask_prefix(self.prefix)))
            mi.write(encode_index(lengths, np.dtype(np.uint8)))
            out["mask_idx"] = mi.close()
        return out

    def abort(self) -> None:
        self._bin.abort()
        if self._mask is not None:
            self._mask.abort()


def sync_to_cache(prefix: str, cache_dir: str, with_mask: bool | None = None,
                  checksums: dict | None = None) -> str:
    """Copy an ``s3://`` shard (``.bin``, ``.idx`` and mask companion if present)
    into ``cache_dir`` (mirroring bucket/key) and return the local prefix. Files
    already there with the expected size (and sha256, when ``checksums`` maps
    file suffix -> sha256) are not fetched again."""
    if not storage.is_s3(prefix):
        return prefix
    b, k = storage.split_s3(prefix)
    local = os.path.join(cache_dir, b, k)
    suffixes = [".bin", ".idx"]
    if with_mask is None:
        with_mask = storage.exists(bin_path(mask_prefix(prefix)))
    if with_mask:
        suffixes += [MASK_SUFFIX + ".bin", MASK_SUFFIX + ".idx"]
    for sfx in suffixes:
        src, dst = prefix + sfx, local + sfx
        want = (checksums or {}).get(sfx)
        if os.path.exists(dst):
            if want is None and os.path.getsize(dst) == storage.stat(src).size:
                continue
            if want is not None and _file_sha256(dst) == want:
                continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = f"{dst}.tmp-{os.getpid()}"
        bk, kk = storage.split_s3(src)
        storage.s3_client().download_file(bk, kk, tmp)
        if want is not None and _file_sha256(tmp) != want:
            os.remove(tmp)
            raise storage.StorageError(f"{src}: checksum mismatch after download")
        os.replace(tmp, dst)
    return local


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class _RangedBin:
    """Reads byte ranges of an S3 object with HTTP Range requests."""

    def __init__(self, uri: str):
        self.bucket, self.key = storage.split_s3(uri)
        self.uri = uri

    def read(self, offset: int, nbytes: int) -> bytes:
        if nbytes <= 0:
            return b""
        try:
            r = storage.s3_client().get_object(Bucket=self.bucket, Key=self.key,
                                               Range=f"bytes={offset}-{offset + nbytes - 1}")
            return r["Body"].read()
        except Exception as e:  # noqa: BLE001
            raise storage._s3_errors(self.uri, e) from e


class IndexedShard:
    """Read one ``.bin``/``.idx`` pair (and its ``.mask`` companion if present)."""

    def __init__(self, prefix: str, cache_dir: str | None = None, with_mask: bool | None = None):
        if storage.is_s3(prefix) and cache_dir:
            prefix = sync_to_cache(prefix, cache_dir, with_mask)
        self.prefix = prefix
        self.remote = storage.is_s3(prefix)
        self._bin: _RangedBin | np.ndarray
        if self.remote:
            ix = decode_index(storage.read_bytes(idx_path(prefix)))
            self._bin = _RangedBin(bin_path(prefix))
        else:
            ix = decode_index(np.memmap(idx_path(prefix), mode="r", dtype=np.uint8).data)
            size = os.path.getsize(bin_path(prefix))
            self._bin = np.memmap(bin_path(prefix), mode="r", dtype=np.uint8) if size else np.zeros(0, np.uint8)
        self.dtype: np.dtype = ix["dtype"]
        self.lengths: np.ndarray = ix["lengths"]
        self.pointers: np.ndarray = ix["pointers"]
        if with_mask is None:
            with_mask = storage.exists(idx_path(mask_prefix(prefix)))
        self.has_mask = bool(with_mask)
        self._mask: IndexedShard | None = None
        if self.has_mask:
            self._mask = IndexedShard(mask_prefix(prefix), with_mask=False)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum(dtype=np.int64))

    def get(self, i: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens of sequence ``i`` from ``offset`` for ``length`` tokens (to the end by default)."""
        n = int(self.lengths[i])
        if length is None:
            length = n - offset
        if offset < 0 or length < 0 or offset + length > n:
            raise IndexError(f"range [{offset}, {offset + length}) outside sequence {i} of length {n}")
        start = int(self.pointers[i]) + offset * self.dtype.itemsize
        nbytes = length * self.dtype.itemsize
        if isinstance(self._bin, _RangedBin):
            return np.frombuffer(self._bin.read(start, nbytes), dtype=self.dtype)
        return np.frombuffer(self._bin, dtype=self.dtype, count=length, offset=start) if length else \
            np.zeros(0, self.dtype)

    def get_mask(self, i: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """The loss mask of sequence ``i`` (all ones when the shard has no mask companion)."""
        if self._mask is None:
            n = int(self.lengths[i]) - offset if length is None else length
            return np.ones(n, np.uint8)
        return self._mask.get(i, offset, length)

    def __iter__(self):
        for i in range(len(self)):
            yield self.get(i)
