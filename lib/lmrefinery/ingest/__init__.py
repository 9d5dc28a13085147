"""Ingest: raw objects -> documents. `formats.py` holds the registry and the
generic readers; each source family adds its own module below, which registers its
formats when imported (``_load_formats``, called by ``formats.get_reader``)."""
import importlib

FORMAT_MODULES = [
    "lmrefinery.ingest.web",           # warc, wet, html
    "lmrefinery.ingest.wiki",          # mediawiki
    "lmrefinery.ingest.books",         # gutenberg / plain books, epub
    "lmrefinery.ingest.instructions",  # alpaca, sharegpt, belle, ... -> conversations
]


def _load_formats() -> None:
    for mod in FORMAT_MODULES:
        importlib.import_module(mod)
