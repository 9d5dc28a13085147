"""Ingest: raw objects -> documents. `formats.py` holds the registry and the
generic readers; each source family adds its own module below."""
import importlib
import importlib.util

FORMAT_MODULES = [
    "lmrefinery.ingest.web",           # warc, wet, html
    "lmrefinery.ingest.wiki",          # mediawiki
    "lmrefinery.ingest.books",         # gutenberg / plain books, epub
    "lmrefinery.ingest.instructions",  # alpaca, sharegpt, belle, ... -> conversations
]


def _load_formats() -> None:
    for mod in FORMAT_MODULES:
        if _exists(mod):
            importlib.import_module(mod)


def _exists(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except ModuleNotFoundError:  # parent package not in this install
        return False
