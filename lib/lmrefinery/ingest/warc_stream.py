"""The byte level of WARC archives: gzip decoded member by member (so every record
keeps the compressed offset of its member, what Common Crawl indexes point at, and a
truncated member is reported instead of silently ending the file), and the resync
points a reader goes on from after a damaged record or member."""
from __future__ import annotations

import zlib
from typing import Any, BinaryIO, Protocol

from ..core import storage


class Readable(Protocol):
    """What FastWARC and GzipMembers read from."""

    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...


class GzipMembers:
    """Read-only file object over a (multi-member) gzip stream that remembers
    where each member starts in the compressed stream and notices truncation."""

    CHUNK = 1 << 16

    def __init__(self, raw: Readable, base: int = 0):
        self.raw = raw
        self.cin = base             # compressed offset reached (base: where raw was opened)
        self.out = 0                # decompressed bytes produced
        self.buf = b""
        self.d: Any = None          # the zlib decoder of the member being read
        self.pending = b""          # compressed bytes not yet fed
        self.members: list[tuple[int, int]] = []   # (decompressed start, compressed start)
        self.error: str | None = None
        self.eof = False

    def member_offset(self, upos: int) -> int:
        """Compressed offset of the member that holds decompressed position upos."""
        best = 0
        for u, c in self.members:
            if u <= upos:
                best = c
            else:
                break
        # forget members before the one in use: memory stays constant
        while len(self.members) > 2 and self.members[1][0] <= upos:
            self.members.pop(0)
        return best

    def _fill(self) -> None:
        while not self.buf and not self.eof:
            if not self.pending:
                self.pending = self.raw.read(self.CHUNK)
                if not self.pending:
                    if self.d is not None and not self.d.eof:
                        self.error = f"truncated gzip member starting at compressed byte {self.members[-1][1]}"
                    self.eof = True
                    return
            if self.d is None:
                # a new member starts here
                self.members.append((self.out, self.cin))
                self.d = zlib.decompressobj(wbits=31)
            try:
                data = self.d.decompress(self.pending)
            except zlib.error as e:
                self.error = f"corrupt gzip data in member at compressed byte {self.members[-1][1]}: {e}"
                self.eof = True
                return
            used = len(self.pending) - len(self.d.unused_data)
            self.cin += used
            self.pending = self.d.unused_data
            if self.d.eof:
                self.d = None
                # skip zero padding between members (some writers add it)
                stripped = self.pending.lstrip(b"\x00")
                self.cin += len(self.pending) - len(stripped)
                self.pending = stripped
            self.buf = data
            self.out += len(data)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts: list[bytes] = []
            while True:
                self._fill()
                if not self.buf:
                    return b"".join(parts)
                parts.append(self.buf)
                self.buf = b""
        self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def tell(self) -> int:
        return self.out - len(self.buf)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.raw.close()


def open_archive(spec: dict[str, Any], start: int = 0) -> tuple[Readable, GzipMembers | None, str | None]:
    """(stream, gzip member tracker or None, compression) positioned at `start`
    (a gzip member boundary / record start; only 0 for bz2 and zstd)."""
    raw = storage.open_raw(spec["path"])
    if start:
        raw.seek(start)
    comp = storage.compression_of(spec["path"])
    if comp == "gzip":
        g = GzipMembers(raw, base=start)
        return g, g, comp
    if comp:
        return storage.decompressing(raw, comp), None, comp
    # uncompressed, or gzip without a .gz name: sniff the magic
    head = raw.read(2)
    if head == b"\x1f\x8b":
        g = GzipMembers(_PrefixReader(head, raw), base=start)
        return g, g, "gzip"
    return _PrefixReader(head, raw), None, None


def next_unit(spec: dict[str, Any], gz: bool, boundary: int, after: int) -> int | None:
    """Start of the first record unit (gzip member, or a line starting with
    ``WARC/``) at an offset > after; `boundary` is a known unit start <= after."""
    raw = storage.open_raw(spec["path"])
    try:
        if gz:
            raw.seek(boundary)
            pos, pending = boundary, b""
            while True:
                if pos > after:
                    return pos
                d = zlib.decompressobj(wbits=31)
                while not d.eof:
                    if not pending:
                        pending = raw.read(1 << 16)
                        if not pending:
                            return None
                    try:
                        d.decompress(pending, 0)
                    except zlib.error:
                        return None
                    used = len(pending) - len(d.unused_data) if d.eof else len(pending)
                    pos += used
                    pending = d.unused_data if d.eof else b""
                    # drop unconsumed tail kept by zlib (max_length=0 keeps nothing)
                stripped = pending.lstrip(b"\x00")
                pos += len(pending) - len(stripped)
                pending = stripped
        raw.seek(after + 1)
        pos, carry = after + 1, b""
        while True:
            chunk = raw.read(1 << 16)
            if not chunk:
                return None
            buf = carry + chunk
            i = buf.find(b"WARC/1.")
            if i >= 0:
                return pos - len(carry) + i
            carry = buf[-7:]
            pos += len(chunk)
    finally:
        raw.close()


def swallowing_record(spec: dict[str, Any], gz: GzipMembers | None, last: tuple[int, int] | None,
                      size: int) -> tuple[int, int] | None:
    """``last`` (offset, length) when the gzip stream ended inside the last record although
    good members follow it: its length ran past its member and ate the records after it."""
    if gz is None or last is None or gz.error:
        return None
    nxt = next_unit(spec, True, last[0], last[0])
    return last if nxt is not None and nxt < size else None


GZIP_MAGIC = b"\x1f\x8b\x08"


def _member_decodes(raw: BinaryIO, at: int) -> bool:
    """True when a whole gzip member starts at compressed offset ``at``."""
    raw.seek(at)
    d = zlib.decompressobj(wbits=31)
    while not d.eof:
        chunk = raw.read(1 << 16)
        if not chunk:
            return False
        try:
            d.decompress(chunk, 0)
        except zlib.error:
            return False
    return True


def next_good_member(spec: dict[str, Any], after: int) -> int | None:
    """Offset of the first gzip member after ``after`` that decodes on its own."""
    raw = storage.open_raw(spec["path"])
    try:
        pos, carry = after + 1, b""
        raw.seek(pos)
        while True:
            chunk = raw.read(1 << 16)
            if not chunk:
                return None
            buf = carry + chunk
            base = pos - len(carry)
            i = buf.find(GZIP_MAGIC)
            while i >= 0:
                if _member_decodes(raw, base + i):
                    return base + i
                i = buf.find(GZIP_MAGIC, i + 1)
            pos += len(chunk)
            carry = buf[-(len(GZIP_MAGIC) - 1):]
            raw.seek(pos)
    finally:
        raw.close()


class _PrefixReader:
    def __init__(self, first: bytes, f: BinaryIO):
        self.first, self.f = first, f
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        out = self._read(n)
        self.pos += len(out)
        return out

    def _read(self, n: int) -> bytes:
        if self.first:
            out, self.first = self.first, b""
            if n is None or n < 0:
                return out + self.f.read()
            return out + (self.f.read(n - len(out)) if n > len(out) else b"")
        return self.f.read(n)

    def tell(self) -> int:
        return self.pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.f.close()
