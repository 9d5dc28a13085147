"""The storage layer's error type (core/storage.py, core/s3.py)."""
from __future__ import annotations


class StorageError(RuntimeError):
    """An I/O problem with a message that names the object."""
