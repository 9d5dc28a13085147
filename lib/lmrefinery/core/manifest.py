"""The commit protocol.

A stage writes its part files first (each write atomic: tmp file + rename on
disk, a single PUT on S3), then one small marker per part, and finally
``_manifest.json``. The manifest is the commit point: a stage without one, or
with one whose fingerprint differs from the current recipe/input/code, is not
done. Readers of a stage only ever open the files its manifest lists.
"""
from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from typing import Any

from . import storage

MANIFEST = "_manifest.json"


def read_json(uri: str) -> dict[str, Any] | None:
    try:
        if not storage.exists(uri):
            return None
        data: dict[str, Any] | None = json.loads(storage.read_bytes(uri))
        return data
    except (ValueError, storage.StorageError):
        return None


def write_json(uri: str, obj: dict[str, Any]) -> None:
    storage.write_bytes(uri, json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False).encode())


def read_manifest(stage_dir: str) -> dict[str, Any] | None:
    return read_json(storage.join(stage_dir, MANIFEST))


def committed(stage_dir: str, fingerprint: str) -> dict[str, Any] | None:
    m = read_manifest(stage_dir)
    if m and m.get("fingerprint") == fingerprint and m.get("complete"):
        return m
    return None


@lru_cache(maxsize=1)
def code_version() -> str:
    from .. import __version__

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=__file__.rsplit("/", 3)[0]).stdout.strip()
    except Exception:
        rev = ""
    return f"{__version__}+{rev}" if rev else __version__


# Fields that legitimately differ between two runs of the same work.
VOLATILE = ("seconds", "engine", "workers", "created", "code_version", "inputs_abs", "skipped_parts")
