"""Byte-range splitting of large inputs, so one big object is read by many workers.

``plan_read_tasks(files)`` turns each input file into one or more read specs.
A file is split when its reader can read a byte range and it is larger than
``options.split_bytes`` (default 8 MiB; 0 turns splitting off):

* line formats (``jsonl``, ``ndjson``, ``text`` and the instruction formats when
  the file is JSON Lines), uncompressed only: a range owns every line whose
  first byte lies inside it;
* ``mediawiki`` / ``wiki`` on ``.bz2``: a range owns the bzip2 streams whose
  magic lies inside it (multistream dumps; see ingest/wiki.py).

Ranges are cut at fixed offsets (k * split_bytes), so part numbering is the
same on every run and engine.

Why a fixed 8 MiB and not "size / workers": every later map stage writes part i
from input part i, so the number of parts decides the output files (and, through
``byte:<offset>`` positions, the ids). A count that followed the worker count would
give different outputs on 2 and on 16 workers. A fixed target size depends on the
file only: a 50 MB file becomes 6 ranges, enough for a few workers, and a part stays
small enough that a map task's memory (a part's table) is bounded. The cost is one
Parquet part, marker and fsync per 8 MiB of input per stage. Documents read from a range get positions
``byte:<offset>`` instead of ``line:<n>`` (a worker cannot know line numbers
before its range), so ids differ between a split and an unsplit read of the
same file; both are stable for a fixed ``split_bytes``.
"""
from __future__ import annotations

from ..core import storage

DEFAULT_SPLIT_BYTES = 8 << 20
LINE_FORMATS = {"jsonl", "ndjson", "text", "txt", "alpaca", "self_instruct", "dolly", "sharegpt",
                "openai_messages", "belle", "alpaca_bilingual", "conversation"}
BZ2_STREAM_FORMATS = {"mediawiki", "wiki"}
JSON_ARRAY_MAYBE = LINE_FORMATS - {"jsonl", "ndjson", "text", "txt"}


def _is_json_lines(path: str) -> bool:
    with storage.open_raw(path) as f:
        head = f.read(4096)
    s = head.lstrip().lstrip(b"\xef\xbb\xbf")
    return s[:1] == b"{"


def splittable(f: dict) -> bool:
    fmt = f["format"]
    comp = storage.compression_of(f["path"])
    if fmt in BZ2_STREAM_FORMATS:
        return comp == "bz2"
    if fmt in LINE_FORMATS and comp is None:
        return fmt not in JSON_ARRAY_MAYBE or _is_json_lines(f["path"])
    return False


def plan_read_tasks(files: list[dict]) -> list[dict]:
    out = []
    for f in files:
        step = int((f.get("options") or {}).get("split_bytes", DEFAULT_SPLIT_BYTES))
        size = int(f.get("size") or 0)
        if step <= 0 or size <= step or not splittable(f):
            out.append(f)
            continue
        n = (size + step - 1) // step
        for k in range(n):
            g = dict(f)
            g["range"] = [k * step, min(size, (k + 1) * step)]
            g["range_index"], g["range_count"] = k, n
            out.append(g)
    return out
