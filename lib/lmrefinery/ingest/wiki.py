"""MediaWiki XML dumps -> plain-text articles (the markup removal is ingest/wikitext.py).

Streaming, page by page: the decompressed dump is decoded incrementally (the
encoding comes from the BOM or the XML declaration, UTF-8 otherwise) and cut at
``<page>`` ... ``</page>``; each page is parsed on its own, so memory holds one
page at a time whatever the dump size.

Byte ranges (``spec["range"]``): a multistream ``.xml.bz2`` (Wikipedia's
``pages-articles-multistream``, or anything pbzip2 wrote) is a concatenation of
independent bzip2 streams. A range reads the streams whose magic starts inside
it, and keeps going past its end only to finish a page it opened, so every page
is read by exactly one range. A single-stream file is read whole by the range
holding byte 0 (the others find no stream start and yield nothing).

Only the main namespace (0) becomes documents; redirects, disambiguation pages
and other namespaces are counted (``Skip``) by reason; pages whose text is
empty after markup removal are quarantined as ``empty_text``.
"""
from __future__ import annotations

import bz2
import codecs
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..core import storage
from .formats import Quarantine, ReaderOptions, Record, Skip, reader, snippet, spec_options
from .html_text import ExtractTimeout, time_limit
from .wikitext import DEFAULT_SITE, DISAMBIG_TEMPLATES, SiteInfo, is_disambiguation, parse_siteinfo, wikitext_to_text

_REDIRECT_TEXT = re.compile(r"^\s*#\s*(redirect|転送|重定向|weiterleitung|redirection|перенаправление)\b", re.I)
_ENC_DECL = re.compile(rb"""<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")


class WikiOptions(ReaderOptions):
    """``inputs[].options`` of the mediawiki (wiki) format."""
    namespaces: list[int] = Field(default_factory=lambda: [0], description="namespaces that become documents")
    min_chars: int = Field(1, ge=0, description="text shorter than this after markup removal: empty_text")
    keep_wikitext: bool = Field(False, description="keep the wikitext in meta")
    disambiguation_templates: list[str] = Field(default_factory=list, description="extra disambiguation "
                                                "template names")
    chunk_bytes: int = Field(1 << 20, ge=1, description="decompressed bytes read per step")
    max_page_chars: int = Field(64 << 20, ge=1, description="a larger page is quarantined as too_large")
    timeout_s: float = Field(60.0, ge=0, description="per-page markup removal timeout (0 = none)")


def _opts(spec: dict[str, Any]) -> dict[str, Any]:
    return spec_options(spec, WikiOptions).model_dump()


def sniff_encoding(head: bytes) -> str:
    for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                     (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if head.startswith(bom):
            return enc
    if head[:4] == b"<\x00?\x00":
        return "utf-16-le"
    if head[:4] == b"\x00<\x00?":
        return "utf-16-be"
    m = _ENC_DECL.search(head[:512])
    if m:
        try:
            return codecs.lookup(m.group(1).decode()).name
        except LookupError:
            pass
    return "utf-8"


# ------------------------------------------------------------ streaming
_MAGIC = re.compile(rb"BZh[1-9]1AY&SY")


def _bz2_range_chunks(spec: dict, start: int, end: int, problems: list) -> Iterator[tuple[bytes, bool]]:
    """Decompressed bytes of the bzip2 streams that start in [start, end), then
    of the following streams, flagged owned=False (only to finish a page)."""
    f = storage.open_raw(spec["path"])
    try:
        f.seek(start)
        buf, buf_abs = b"", start           # buf[0] is at absolute offset buf_abs
        while True:                         # find the first stream start >= start
            chunk = f.read(1 << 20)
            if not chunk:
                return
            buf += chunk
            m = _MAGIC.search(buf)
            if m:
                buf_abs += m.start()
                buf = buf[m.start():]
                break
            keep = buf[-9:]
            buf_abs += len(buf) - len(keep)
            buf = keep
        stream_start = buf_abs
        d = bz2.BZ2Decompressor()
        fed = False                         # has the current decompressor seen any byte?
        while True:
            if not buf:
                buf = f.read(1 << 20)
                if not buf:
                    if fed and not d.eof:
                        problems.append(("corrupt_compression",
                                         f"truncated bzip2 stream starting at byte {stream_start}"))
                    return
            if not buf.strip(b"\x00") and not fed:
                return                      # zero padding at the end of the file
            try:
                out = d.decompress(buf)
                fed = True
            except (OSError, EOFError, ValueError) as e:
                problems.append(("corrupt_compression", f"bzip2 stream at byte {stream_start}: {e}"))
                return
            if out:
                yield out, stream_start < end
            if d.eof:
                used = len(buf) - len(d.unused_data)
                buf_abs += used
                buf = d.unused_data
                stream_start = buf_abs
                d = bz2.BZ2Decompressor()
                fed = False
            else:
                buf_abs += len(buf)
                buf = b""
    finally:
        f.close()


def _whole_chunks(spec: dict, problems: list, chunk: int) -> Iterator[tuple[bytes, bool]]:
    f = storage.open_read(spec["path"])
    read = getattr(f, "read1", f.read)  # read1: what is decoded so far, so a later break loses nothing before it
    try:
        while True:
            try:
                b = read(chunk)
            except (EOFError, OSError, ValueError) as e:
                problems.append(("corrupt_compression", f"{type(e).__name__}: {e}"))
                return
            except Exception as e:  # zstd and friends
                problems.append(("corrupt_compression", f"{type(e).__name__}: {e}"))
                return
            if not b:
                return
            yield b, True
    finally:
        f.close()


def _file_head(spec: dict) -> bytes:
    """The first decompressed bytes of the dump (encoding, siteinfo)."""
    f = storage.open_read(spec["path"])
    try:
        return f.read(1 << 16)
    except Exception:
        return b""
    finally:
        f.close()


def iter_pages(spec: dict[str, Any], problems: list[tuple[str, str]]) -> Iterator[tuple[str | None, bool, int]]:
    """(page XML, whether this range owns it, its length in chars) per ``<page>``; an
    oversized page comes as (None, owned, length). Problems found on the way are appended."""
    o = _opts(spec)
    rng = spec.get("range")
    head = _file_head(spec)
    enc = sniff_encoding(head)
    if rng and storage.compression_of(spec["path"]) == "bz2":
        chunks = _bz2_range_chunks(spec, rng[0], rng[1], problems)
    else:
        chunks = _whole_chunks(spec, problems, int(o["chunk_bytes"]))
    dec = codecs.getincrementaldecoder(enc)(errors="replace")
    max_page = int(o["max_page_chars"])
    buf = ""
    in_page = False
    owned_page = False
    dropped = 0          # chars of an oversized page already thrown away
    for data, owned in chunks:
        scan_from = max(0, len(buf) - 7) if in_page else 0   # where "</page>" may start
        buf += dec.decode(data)
        while True:
            if not in_page:
                i = buf.find("<page>")
                if i < 0:
                    i = buf.find("<page ")
                if i < 0:
                    buf = buf[-6:]
                    if not owned:
                        return
                    break
                if not owned:
                    return  # a page that starts in the next range
                buf = buf[i:]
                in_page, owned_page, dropped, scan_from = True, owned, 0, 0
            j = buf.find("</page>", scan_from)
            if j < 0:
                if len(buf) > max_page:  # a giant page: keep memory flat, report it once it ends
                    dropped += len(buf) - 8
                    buf = buf[-8:]
                break
            if dropped:
                yield None, owned_page, dropped + j + 7
            else:
                yield buf[: j + 7], owned_page, j + 7
            buf = buf[j + 7:]
            in_page, scan_from = False, 0
    if in_page and (buf.strip() or dropped):
        problems.append(("truncated_page", f"dump ends inside a page ({dropped + len(buf)} chars read)"))


def _text_of(el, name):
    for child in el.iter():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == name:
            return child.text
    return None


@reader("mediawiki", "wiki", options=WikiOptions)
def read_mediawiki(spec: dict[str, Any]) -> Iterator[Record | Quarantine | Skip]:
    """MediaWiki XML dump (.xml, .xml.bz2, multistream): one document per main-namespace article."""
    o = _opts(spec)
    rel = spec["rel"]
    head_text = _file_head(spec).decode(sniff_encoding(_file_head(spec)).replace("-sig", ""), "replace")
    site = parse_siteinfo(head_text)
    base_url = None
    m = re.search(r"<base>(https?://[^<]+?)/wiki/", head_text)
    if m:
        base_url = m.group(1) + "/wiki/"
    lang = None
    m = re.search(r"<dbname>([a-z\-]+?)wiki</dbname>", head_text) or re.search(r'xml:lang="([a-zA-Z\-]+)"', head_text)
    if m:
        lang = m.group(1)
    extra = {t.lower() for t in o["disambiguation_templates"]}
    wanted = set(int(x) for x in o["namespaces"])
    problems: list[tuple[str, str]] = []
    for page, _, size in iter_pages(spec, problems):
        if page is None:
            yield Quarantine("too_large", f"chars:{size}", f"{rel}: a page of {size} characters > "
                             f"max_page_chars={o['max_page_chars']}")
            continue
        try:
            el = ET.fromstring(page)
        except ET.ParseError as e:
            yield Quarantine("malformed_xml", f"page:{len(page)}", f"{rel}: {e}", snippet(page))
            continue
        title = _text_of(el, "title") or ""
        pid = _text_of(el, "id")
        pos = f"page:{pid}" if pid else f"title:{title}"
        ns_s = _text_of(el, "ns")
        if ns_s is not None and ns_s.strip().lstrip("-").isdigit():
            ns = int(ns_s)
        else:
            ns = site.namespace_of(title)
        if ns not in wanted:
            yield Skip(f"namespace_{ns}")
            continue
        text = _text_of(el, "text") or ""
        if any(c.tag.rsplit("}", 1)[-1] == "redirect" for c in el) or _REDIRECT_TEXT.match(text):
            yield Skip("redirect")
            continue
        if is_disambiguation(text, extra):
            yield Skip("disambiguation")
            continue
        meta = {"page_id": pid, "ns": ns, "revision_id": None, "timestamp": _text_of(el, "timestamp")}
        rev = next((c for c in el if c.tag.rsplit("}", 1)[-1] == "revision"), None)
        if rev is not None:
            meta["revision_id"] = _text_of(rev, "id")
        try:
            with time_limit(float(o["timeout_s"])):
                plain = wikitext_to_text(text, site)
        except ExtractTimeout as e:
            yield Quarantine("extract_timeout", pos, f"{rel} page {title!r}: {e}", snippet(text), meta)
            continue
        except Exception as e:  # noqa: BLE001
            yield Quarantine("wikitext_error", pos, f"{rel} page {title!r}: {type(e).__name__}: {e}",
                             snippet(text), meta)
            continue
        if "\ufffd" in plain:
            meta["replaced_chars"] = plain.count("\ufffd")
        if len(plain) < int(o["min_chars"]):
            yield Quarantine("empty_text", pos, f"{rel} page {title!r}: no text after markup removal", snippet(text),
                             meta)
            continue
        if o.get("keep_wikitext"):
            meta["wikitext"] = text
        url = base_url + title.replace(" ", "_") if base_url else None
        yield Record({"text": plain, "title": title, "url": url, "lang": lang, "meta": meta}, pos)
    for reason, detail in problems:
        yield Quarantine(reason, "end", f"{rel}: {detail}")


# names tests import from here
__all__ = ["DEFAULT_SITE", "DISAMBIG_TEMPLATES", "SiteInfo", "WikiOptions", "iter_pages", "parse_siteinfo",
           "read_mediawiki", "sniff_encoding", "wikitext_to_text"]
