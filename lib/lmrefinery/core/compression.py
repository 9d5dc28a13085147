"""Transparent decompression of inputs: ``.gz``, ``.bz2``, ``.zst`` and ``.xz`` objects
are read as streams (every member/stream/frame, with line iteration and seeks);
damaged data is a ``CompressionError``."""
from __future__ import annotations

import bz2
import io
import lzma
import zlib
from typing import Any, BinaryIO

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


def _new_decoder(kind: str) -> Any:
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

    def readinto(self, b: Any) -> int:
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


__all__ = ["CompressionError", "DecompressingReader", "compression_of", "decompressing"]
