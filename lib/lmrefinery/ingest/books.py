"""Books: Project Gutenberg plain text and EPUB -> documents.

Plain text: the Gutenberg header (everything up to the ``*** START OF ...``
line) and footer (from ``*** END OF ...`` / ``End of (the) Project Gutenberg``
on, licence included) are removed, line endings normalised, and hard-wrapped
lines joined into paragraphs: with a space between Latin words, with nothing
between CJK characters (Chinese and Japanese are written without spaces).
Blank lines and indented lines (full-width ``　　`` included) start a new
paragraph. A book longer than ``max_chars`` is split on paragraph boundaries
into several documents; ``meta`` keeps ``book_key`` (the file stem), ``part``
and ``parts`` so the order can be restored.

EPUB: read with EbookLib (spine order), each chapter's XHTML to text, then the
same splitting.
"""
from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterator

from pydantic import Field

from ..core import storage
from .formats import Quarantine, ReaderOptions, Record, reader, snippet, spec_options


class BookOptions(ReaderOptions):
    """``inputs[].options`` of the gutenberg (book) and epub formats."""
    max_chars: int = Field(200_000, ge=1, description="a longer book is split on paragraph boundaries")
    max_bytes: int = Field(256 << 20, ge=1, description="a larger file is quarantined as too_large")
    strip_gutenberg: bool = Field(True, description="remove the Project Gutenberg header and footer")
    join_lines: bool = Field(True, description="join hard-wrapped lines into paragraphs")
    min_chars: int = Field(1, ge=0, description="a shorter book: empty_text")
    lang: str | None = Field(None, description="language of the books (else from the header)")


DEFAULTS = BookOptions().model_dump()

_START = re.compile(r"^\s*\*{3}\s*START OF (THIS|THE) PROJECT GUTENBERG E-?BOOK.*$|"
                    r"^\s*\*END\*THE SMALL PRINT!.*$", re.I | re.M)
_END = re.compile(r"^\s*\*{3}\s*END OF (THIS|THE) PROJECT GUTENBERG E-?BOOK.*$|"
                  r"^\s*End of (the )?Project Gutenberg'?s?\b.*$|"
                  r"^\s*End of this Project Gutenberg.*$", re.I | re.M)
_PRODUCED = re.compile(r"^\s*(Produced by|This e-?book was produced by|E-?text prepared by|Transcribed from)\b", re.I)


def _opts(spec: dict) -> dict:
    return spec_options(spec, BookOptions).model_dump()


def book_key(rel: str) -> str:
    base = os.path.basename(rel)
    for ext in (".gz", ".bz2", ".zst", ".txt", ".epub"):
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
    return base


def decode_book(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 1 << 20]).best()
    enc = best.encoding if best else "cp1252"
    return data.decode(enc, "replace"), enc


def strip_gutenberg(text: str) -> tuple[str, dict]:
    """Body of a Gutenberg text and what the header said (title, author, language)."""
    info: dict = {}
    m = _START.search(text)
    header = text[: m.start()] if m else text[:5000]
    for key in ("Title", "Author", "Language", "Release Date"):
        mm = re.search(rf"^{key}:\s*(.+)$", header, re.M)
        if mm:
            info[key.lower().replace(" ", "_")] = mm.group(1).strip()
    if m:
        text = text[m.end():]
        info["gutenberg_header"] = True
    e = _END.search(text)
    if e:
        text = text[: e.start()]
        info["gutenberg_footer"] = True
    # producer credits right after the header
    paras = re.split(r"\n\s*\n", text.strip("\n"), maxsplit=3)
    while paras and _PRODUCED.match(paras[0]):
        paras.pop(0)
    return "\n\n".join(paras), info


def _is_cjk(ch: str) -> bool:
    if not ch:
        return False
    o = ord(ch)
    return (0x2E80 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0xFF00 <= o <= 0xFFEF or 0x3000 <= o <= 0x303F
            or 0x20000 <= o <= 0x2FA1F or 0xAC00 <= o <= 0xD7AF)


def paragraphs(text: str, join_lines: bool = True) -> list[str]:
    """Blank lines and indented lines start paragraphs; other line breaks are
    hard wraps and are joined (CJK: without a space)."""
    out: list[str] = []
    cur: list[str] = []

    def flush():
        if cur:
            p = cur[0]
            for ln in cur[1:]:
                if _is_cjk(p[-1:]) or _is_cjk(ln[:1]):
                    p += ln
                elif p.endswith("-") and len(p) > 1 and p[-2].isalpha() and ln[:1].islower():
                    p += ln  # a word hyphenated across lines keeps its hyphen
                else:
                    p += " " + ln
            out.append(p)
            cur.clear()

    for raw in text.split("\n"):
        line = raw.rstrip()
        if not line.strip():
            flush()
            continue
        indented = line[:1] in (" ", "\t", "\u3000")
        if indented or not join_lines:
            flush()
        cur.append(line.strip(" \t\u3000") if not indented else line.strip())
        if not join_lines:
            flush()
    flush()
    return out


def split_parts(paras: list[str], max_chars: int) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    size = 0
    for p in paras:
        while len(p) > max_chars:  # one giant paragraph: cut at a sentence end if there is one
            cut = max(p.rfind(". ", 0, max_chars), p.rfind("。", 0, max_chars))
            cut = cut + 1 if cut > max_chars // 2 else max_chars
            if cur:
                parts.append("\n\n".join(cur))
                cur, size = [], 0
            parts.append(p[:cut].strip())
            p = p[cut:].strip()
        if cur and size + len(p) + 2 > max_chars:
            parts.append("\n\n".join(cur))
            cur, size = [], 0
        cur.append(p)
        size += len(p) + 2
    if cur:
        parts.append("\n\n".join(cur))
    return [p for p in parts if p]


def _emit(spec: dict, o: dict, body: str, info: dict, lang: str | None = None) -> Iterator[Record | Quarantine]:
    rel = spec["rel"]
    key = book_key(rel)
    paras = paragraphs(body, bool(o["join_lines"]))
    text_len = sum(len(p) for p in paras)
    if text_len < int(o["min_chars"]):
        yield Quarantine("empty_text", "book", f"{rel}: no text after removing the Gutenberg header/footer")
        return
    parts = split_parts(paras, int(o["max_chars"]))
    title = info.pop("title", None)
    for i, t in enumerate(parts):
        meta = {"book_key": key, "part": i, "parts": len(parts), **info}
        yield Record({"text": t, "title": title, "lang": lang, "meta": meta}, f"part:{i}")


def _read_capped(spec: dict, cap: int) -> bytes | Quarantine:
    try:
        with storage.open_read(spec["path"]) as f:
            data = f.read(cap + 1)
    except Exception as e:  # noqa: BLE001 - truncated gzip etc.
        return Quarantine("corrupt_compression", "book", f"{spec['rel']}: {type(e).__name__}: {e}")
    if len(data) > cap:
        return Quarantine("too_large", "book", f"{spec['rel']}: larger than max_bytes={cap}", snippet(data[:2000]))
    return data


@reader("gutenberg", "book", options=BookOptions)
def read_book(spec: dict):
    """Plain-text book (Gutenberg header/footer removed, wraps joined), split into parts."""
    o = _opts(spec)
    data = _read_capped(spec, int(o["max_bytes"]))
    if isinstance(data, Quarantine):
        yield data
        return
    text, enc = decode_book(data)
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    info: dict = {"encoding": enc}
    if o["strip_gutenberg"]:
        text, more = strip_gutenberg(text)
        info.update(more)
    lang = (o.get("lang") or None)
    yield from _emit(spec, o, text, info, lang)


@reader("epub", options=BookOptions)
def read_epub(spec: dict):
    """EPUB book (EbookLib, spine order), split into parts."""
    import io
    import warnings

    o = _opts(spec)
    data = _read_capped(spec, int(o["max_bytes"]))
    if isinstance(data, Quarantine):
        yield data
        return
    try:
        import ebooklib
        from ebooklib import epub

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
    except Exception as e:  # noqa: BLE001
        yield Quarantine("unreadable_epub", "book", f"{spec['rel']}: {type(e).__name__}: {e}", snippet(data[:200]))
        return
    from resiliparse.extract.html2text import extract_plain_text

    chapters = []
    for idref, _ in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        html = item.get_content().decode("utf-8", "replace")
        txt = extract_plain_text(html, main_content=False, preserve_formatting=True, alt_texts=False, links=False)
        if txt.strip():
            chapters.append(txt.strip())
    info: dict = {"format": "epub"}
    t = book.get_metadata("DC", "title")
    if t:
        info["title"] = t[0][0]
    a = book.get_metadata("DC", "creator")
    if a:
        info["author"] = a[0][0]
    lang = book.get_metadata("DC", "language")
    # chapters are already paragraphs per line: keep line breaks as paragraph breaks
    body = "\n\n".join(chapters)
    o = dict(o, join_lines=False)
    yield from _emit(spec, o, body, info, lang[0][0] if lang else None)
