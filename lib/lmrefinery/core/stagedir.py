"""A stage's folder between attempts: what an older attempt left there is kept only
when it belongs to the same fingerprint (same recipe, inputs and code), so a crashed
run resumes and a changed one starts clean. ``work_dir`` is a global stage's scratch."""
from __future__ import annotations

import os
import time

from . import manifest as mf
from . import storage

ATTEMPT = "_attempt.json"


def work_dir(stage_dir: str, fingerprint: str) -> str:
    """Scratch of one attempt: under the fingerprint, so nothing written for another
    recipe, input or code version can be read by this one."""
    return storage.join(stage_dir, "_work", fingerprint)


def prepare_stage_dir(sdir: str, fp: str) -> None:
    """Make a stage folder safe to (re)start for fingerprint ``fp``: what an older
    recipe/input/code left there — a committed result, or the scratch, index and
    markers of a crashed attempt — is deleted; a crashed attempt of the same
    fingerprint is kept, so it resumes. Leftover ``.tmp-`` files go in every case."""
    old = mf.read_manifest(sdir)
    attempt = mf.read_json(storage.join(sdir, ATTEMPT))
    owner = (attempt or old or {}).get("fingerprint")
    if owner is None and storage.list_files(sdir.rstrip("/") + "/"):
        owner = "unknown"  # files of unknown provenance (an older release): not reusable
    if owner is not None and owner != fp:
        storage.delete_prefix(sdir)
    _clean_tmp(sdir)
    mf.write_json(storage.join(sdir, ATTEMPT), {"fingerprint": fp, "started": round(time.time(), 3)})


def _clean_tmp(sdir: str) -> None:
    """Remove half-written ``.tmp-`` files of a local stage folder (S3 has none: its
    writes are atomic)."""
    if storage.is_s3(sdir) or not os.path.isdir(sdir):
        return
    for root, _, fs in os.walk(sdir):
        for f in fs:
            if storage.is_tmp_name(f):
                os.remove(os.path.join(root, f))


__all__ = ["ATTEMPT", "prepare_stage_dir", "work_dir"]
