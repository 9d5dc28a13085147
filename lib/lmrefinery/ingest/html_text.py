"""HTML bytes -> a document: the charset (HTTP header, then ``<meta>``, then detection
through Resiliparse, labels mapped to their WHATWG supersets), the main content
(Trafilatura or Resiliparse) under a per-document CPU-time limit, and the HTTP
response parsing of WARC records."""
from __future__ import annotations

import codecs
import gzip
import re
import signal
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from .formats import Quarantine, Record, snippet

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_:.\-]+)""", re.I)
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "iso-8859-1": "cp1252",
              "latin1": "cp1252", "latin-1": "cp1252", "ascii": "cp1252", "us-ascii": "cp1252",
              "iso8859-1": "cp1252", "big5": "big5hkscs", "shift_jis": "cp932", "sjis": "cp932",
              "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "unicode": "utf-8", "utf8": "utf-8"}


def _norm_charset(name: str | None) -> str | None:
    if not name:
        return None
    name = name.strip().strip("\"'").lower()
    name = _SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def charset_from_content_type(ct: str | None) -> str | None:
    if not ct:
        return None
    m = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", ct, re.I)
    return m.group(1) if m else None


def decode_html(body: bytes, http_charset: str | None = None) -> tuple[str, str, str, int]:
    """(text, encoding, where the encoding came from, replaced chars)."""
    if body.startswith(codecs.BOM_UTF8):
        return body[3:].decode("utf-8", "replace"), "utf-8", "bom", 0
    candidates = []
    enc = _norm_charset(http_charset)
    if enc:
        candidates.append((enc, "http"))
    m = _META_CHARSET.search(body[:8192])
    if m:
        enc = _norm_charset(m.group(1).decode("ascii", "ignore"))
        if enc:
            candidates.append((enc, "meta"))
    for enc, where in candidates:
        try:
            return body.decode(enc), enc, where, 0
        except UnicodeDecodeError:
            continue  # a wrong declaration: try the next source
    from resiliparse.parse.encoding import detect_encoding

    enc = _norm_charset(detect_encoding(body[:65536])) or "utf-8"
    if candidates and enc == "utf-8":
        try:
            return body.decode("utf-8"), "utf-8", "detected", 0
        except UnicodeDecodeError:
            enc, where = candidates[0]  # declared one, with replacements
            text = body.decode(enc, "replace")
            return text, enc, where, text.count("\ufffd")
    text = body.decode(enc, "replace")
    return text, enc, "detected", text.count("\ufffd")


class ExtractTimeout(BaseException):
    """BaseException: extractors catch `Exception` broadly and would swallow it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupts the block after `seconds` of this process's CPU time (``ITIMER_PROF``:
    user + system, all threads) on the main thread; a no-op elsewhere. CPU time, not
    wall time: a page is not rejected because the node was busy or the worker was
    descheduled, so what is kept depends on the input and the config, not on load."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise ExtractTimeout(f"extraction took longer than {seconds}s")

    import time

    old = signal.signal(signal.SIGPROF, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_PROF, seconds)
    t0 = time.process_time()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)
        if old_delay:  # someone else's CPU timer (a profiler) was pending: re-arm what is left of it
            left = old_delay - (time.process_time() - t0)
            signal.setitimer(signal.ITIMER_PROF, max(left, 0.001), old_interval)


def extract_main_text(html: str, opts: dict[str, Any]) -> tuple[str, str | None]:
    """(text, title) with the configured extractor."""
    if len(html) > opts["max_html_bytes"]:
        html = html[: opts["max_html_bytes"]]
    if opts["extractor"] == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        tree = HTMLTree.parse(html)
        title = tree.title or None
        return extract_plain_text(tree, main_content=bool(opts["main_content"])), title
    if opts["extractor"] != "trafilatura":
        raise ValueError(f"unknown extractor {opts['extractor']!r}: trafilatura or resiliparse")
    import trafilatura

    text = trafilatura.extract(html, include_comments=bool(opts["include_comments"]),
                               include_tables=bool(opts["include_tables"]),
                               favor_precision=bool(opts["favor_precision"]),
                               favor_recall=bool(opts["favor_recall"]),
                               deduplicate=bool(opts["deduplicate"])) or ""
    m = re.search(r"<title[^>]*>(.*?)</title>", html[:65536], re.I | re.S)
    title = re.sub(r"\s+", " ", m.group(1)).strip() if m else None
    import html as _html

    return text, (_html.unescape(title) if title else None)


def html_to_record(body: bytes, http_charset: str | None, opts: dict[str, Any], pos: str, where: str,
                   base: dict[str, Any]) -> Record | Quarantine:
    if not body.strip():
        return Quarantine("empty_page", pos, f"{where}: empty body", None, base.get("meta", {}))
    html, enc, enc_src, bad = decode_html(body, http_charset)
    if bad and bad > max(16, len(html) // 10):
        return Quarantine("undecodable", pos, f"{where}: {bad} undecodable characters as {enc}",
                          snippet(body), base.get("meta", {}))
    try:
        with time_limit(float(opts["timeout_s"])):
            text, title = extract_main_text(html, opts)
    except ExtractTimeout as e:
        return Quarantine("extract_timeout", pos, f"{where}: {e}", snippet(body), base.get("meta", {}))
    except Exception as e:  # noqa: BLE001 - a broken page must not stop the file
        return Quarantine("extract_error", pos, f"{where}: {type(e).__name__}: {e}", snippet(body),
                          base.get("meta", {}))
    text = (text or "").strip()
    if len(text) < int(opts["min_chars"]):
        return Quarantine("empty_text", pos, f"{where}: no main content extracted", snippet(html),
                          base.get("meta", {}))
    doc = dict(base)
    doc["text"] = text
    doc["title"] = doc.get("title") or title
    meta = dict(doc.get("meta") or {})
    meta.update(charset=enc, charset_source=enc_src, extractor=opts["extractor"])
    if bad:
        meta["replaced_chars"] = bad
    if opts.get("keep_html"):
        meta["html"] = html
    doc["meta"] = meta
    return Record(doc, pos)


def parse_http(block: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of an HTTP response block."""
    head, sep, body = block.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = block.partition(b"\n\n")
    lines = head.decode("iso-8859-1").splitlines()
    status = None
    if lines and lines[0].startswith("HTTP/"):
        parts = lines[0].split()
        if len(parts) > 1 and parts[1].isdigit():
            status = int(parts[1])
    headers: dict[str, str] = {}
    for ln in lines[1:]:
        k, c, v = ln.partition(":")
        if c:
            headers.setdefault(k.strip().lower(), v.strip())  # first wins (CC duplicates some)
    return status, headers, body


def content_decode(body: bytes, headers: dict[str, str]) -> bytes:
    ce = headers.get("content-encoding", "").lower()
    if ce in ("gzip", "x-gzip"):
        try:
            return gzip.decompress(body)
        except Exception:
            return body
    if ce == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return body
    return body
