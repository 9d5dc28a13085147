"""URIs as crawlers write them -> the URI itself, and a normalised key.

``WARC-Target-URI`` is written bare by Common Crawl (``https://a.org/x``) and in
angle brackets by other crawlers (Heritrix-era tools, ``wget --warc-file`` and
WARC/0.18 writers: ``<https://a.org/x>``). ``clean_uri`` gives the URI itself
(brackets and surrounding whitespace removed), which is what the ``url`` column
holds. ``uri_key`` is the form used to compare URIs: scheme and host lower-cased,
the default port of the scheme dropped, the fragment dropped, an empty path
written ``/``; path, query and their case are kept (they are significant).
"""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}


def clean_uri(raw: str | None) -> str | None:
    """The URI without the angle brackets or quotes some writers put around it."""
    if raw is None:
        return None
    u = raw.strip()
    while len(u) >= 2 and (u[0], u[-1]) in (("<", ">"), ('"', '"'), ("'", "'")):
        u = u[1:-1].strip()
    return u or None


def uri_key(raw: str | None) -> str | None:
    """Normalised URI for keys and comparison (the stored URI stays as written)."""
    u = clean_uri(raw)
    if not u:
        return None
    try:
        parts = urlsplit(u)
        port = parts.port
    except ValueError:  # an invalid port or IPv6 literal: compare it as written, minus the fragment
        return u.split("#", 1)[0]
    scheme = parts.scheme.lower()
    if not parts.netloc:
        return urlunsplit((scheme, "", parts.path, parts.query, ""))
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + host
    if port is not None and DEFAULT_PORTS.get(scheme) != port:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
