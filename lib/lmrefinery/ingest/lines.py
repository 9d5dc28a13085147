"""Reading text line by line, whole files or byte ranges, without ever holding a
giant line in memory: a line longer than ``max_bytes`` is skipped to its end and
reported as ``too_large`` with its first ``MAX_SNIPPET`` bytes."""
from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import BinaryIO

from ..core import storage

MAX_SNIPPET = 2000


def _rest_of_line(f: BinaryIO, head: bytes) -> int:
    """Read past the end of a line whose first ``len(head)`` bytes were read; its size."""
    size = len(head)
    while True:
        chunk = f.readline(1 << 20)
        size += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return size


def _too_large(size: int, max_bytes: int) -> str:
    return f"too_large: line of {size} bytes > max_doc_bytes={max_bytes}"


def iter_lines(f: BinaryIO, max_bytes: int) -> Iterator[tuple[int, int, bytes | None, str | None]]:
    """Yield (line_no, byte_offset, line, error) over a (decompressing) stream. A
    decompression error ends the stream with one error item; what came before it is kept."""
    offset, n = 0, 0
    while True:
        try:
            line = f.readline(max_bytes + 1)
        except Exception as e:  # gzip/zlib/EOF, and zstd/bz2's own types
            yield n, offset, None, f"corrupt_compression: {type(e).__name__}: {e}"
            return
        if not line:
            return
        if len(line) > max_bytes and not line.endswith(b"\n"):
            try:
                size = _rest_of_line(f, line)
            except Exception as e:
                yield n, offset, None, f"corrupt_compression: {type(e).__name__}: {e}"
                return
            yield n, offset, line[:MAX_SNIPPET], _too_large(size, max_bytes)
            offset += size
            n += 1
            continue
        yield n, offset, line, None
        offset += len(line)
        n += 1


def iter_line_range(spec: dict, max_bytes: int) -> Iterator[tuple[str, int, bytes | None, str | None]]:
    """(pos, offset, line, error): the whole file (pos ``line:n``) or the lines
    starting inside spec["range"] (pos ``byte:offset``; see ingest/split.py)."""
    rng = spec.get("range")
    if not rng:
        with storage.open_read(spec["path"]) as f:
            for n, off, line, err in iter_lines(f, max_bytes):
                yield f"line:{n}", off, line, err
        return
    start, end = int(rng[0]), int(rng[1])
    f = storage.open_raw(spec["path"])
    try:
        off = start
        if start > 0:
            f.seek(start - 1)
            # the line that holds byte start-1 belongs to the previous range
            skipped = f.readline()
            off = start - 1 + len(skipped)
        while off < end:
            try:
                line = f.readline(max_bytes + 1)
            except (OSError, zlib.error, ValueError) as e:
                yield f"byte:{off}", off, None, f"read_error: {type(e).__name__}: {e}"
                return
            if not line:
                return
            if len(line) > max_bytes and not line.endswith(b"\n"):
                size = _rest_of_line(f, line)
                yield f"byte:{off}", off, line[:MAX_SNIPPET], _too_large(size, max_bytes)
                off += size
                continue
            yield f"byte:{off}", off, line, None
            off += len(line)
    finally:
        f.close()
