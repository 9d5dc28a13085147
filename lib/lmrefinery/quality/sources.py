"""Texts for training a quality classifier, from files of several kinds.

A source is ``PATH`` or ``PATH::FIELD`` (``FIELD`` may join fields with ``+``,
e.g. ``alpaca.json::instruction+output``). PATH may be a glob or an s3:// URI.
Kinds by extension: ``.jsonl[.gz]`` and ``.json`` (array or JSON lines; default
field ``text``), ``.parquet`` (column ``text``), ``.warc[.gz]`` (HTML responses,
text extracted with resiliparse), anything else: plain text, split at blank
lines (or lines when there are none) and merged into chunks of about
``chunk_chars`` characters.
"""
from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator

from ..core import storage

_BLANK = re.compile(r"\n\s*\n")


def parse_source(spec: str) -> tuple[str, list[str] | None]:
    path, _, fields = spec.partition("::")
    return path, (fields.split("+") if fields else None)


def _field(rec: dict, fields: list[str] | None) -> str:
    if not isinstance(rec, dict):
        return str(rec)
    fields = fields or ["text"]
    return "\n".join(str(rec.get(f) or "") for f in fields).strip()


def _read(path: str) -> bytes:
    data = storage.read_bytes(path)
    if path.endswith(".gz") and not path.endswith((".warc.gz",)):
        data = gzip.decompress(data)
    return data


def chunk_text(text: str, chunk_chars: int) -> list[str]:
    text = text.replace("\r\n", "\n")
    paras = _BLANK.split(text) if _BLANK.search(text) else text.split("\n")
    out, cur, n = [], [], 0
    pieces = []
    for p in paras:
        p = p.strip()
        while len(p) > 2 * chunk_chars:  # very long paragraphs: cut after a sentence end
            end = chunk_chars + chunk_chars // 2
            cut = max(p.rfind(". ", 0, end), p.rfind("。", 0, end))
            cut = cut + 1 if cut > chunk_chars // 2 else chunk_chars
            pieces.append(p[:cut].strip())
            p = p[cut:].strip()
        pieces.append(p)
    for p in pieces:
        if not p:
            continue
        cur.append(p)
        n += len(p)
        if n >= chunk_chars:
            out.append("\n\n".join(cur))
            cur, n = [], 0
    if cur:
        out.append("\n\n".join(cur))
    return out


def warc_texts(path: str, min_chars: int = 1) -> Iterator[dict]:
    """HTML responses of a WARC as {url, text} (resiliparse, main content)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    with storage.open_raw(path) as f:
        raw = f.read()
    for rec in ArchiveIterator(io.BytesIO(raw), record_types=WarcRecordType.response):
        html = rec.reader.read()  # fastwarc has parsed the HTTP headers off already
        if not html:
            continue
        text = extract_plain_text(bytes_to_str(html, detect_encoding(html) or "utf-8"), main_content=True)
        if len(text.strip()) >= min_chars:
            yield {"url": rec.headers.get("WARC-Target-URI"), "text": text}


def iter_texts(spec: str, chunk_chars: int = 2000) -> Iterator[str]:
    pattern, fields = parse_source(spec)
    paths = storage.list_files(pattern) if any(c in pattern for c in "*?[") else [pattern]
    if not paths:
        raise FileNotFoundError(f"no files match {pattern}")
    for path in paths:
        low = path.lower()
        if low.endswith((".warc", ".warc.gz")):
            for r in warc_texts(path):
                yield r["text"]
        elif low.endswith(".parquet"):
            tbl = storage.read_parquet(path)
            cols = fields or ["text"]
            for row in tbl.select(cols).to_pylist():
                t = _field(row, cols)
                if t:
                    yield t
        elif low.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
            data = _read(path).decode("utf-8")
            s = data.lstrip()
            recs = json.loads(s) if s.startswith("[") else (json.loads(ln) for ln in data.splitlines() if ln.strip())
            for rec in recs:
                t = _field(rec, fields)
                if t:
                    yield t
        else:
            yield from chunk_text(_read(path).decode("utf-8", errors="replace"), chunk_chars)
