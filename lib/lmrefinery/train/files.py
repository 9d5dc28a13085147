"""Checkpoint and model folders on local disk or ``s3://``: copying them in and
out, and reading a checkpoint's state file safely. Shared by the training loop,
the model builder and the exporter (none of them imports another for these)."""
from __future__ import annotations

import os
import shutil
import tempfile

from ..core import storage

STATE_FILE = "state.pt"


def upload_dir(local: str, uri: str) -> None:
    """Copy a local folder to a local path or an ``s3://`` prefix (replacing what is there)."""
    if not storage.is_s3(uri):
        if os.path.abspath(local) == os.path.abspath(uri):
            return
        if os.path.isdir(uri):
            shutil.rmtree(uri)
        shutil.copytree(local, uri)
        return
    storage.delete_prefix(uri)
    for root, _, files in os.walk(local):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                storage.write_bytes(storage.join(uri, os.path.relpath(p, local)), fh.read())


def download_dir(uri: str, local: str | None = None) -> str:
    if not storage.is_s3(uri):
        return uri
    local = local or tempfile.mkdtemp(prefix="lmr-model-")
    for f in storage.list_files(uri.rstrip("/") + "/"):
        storage.write_bytes(os.path.join(local, storage.relpath(f, uri.rstrip("/"))), storage.read_bytes(f))
    return local


def read_state_file(d: str) -> dict:
    """A checkpoint's state.pt with ``weights_only=True``: tensors and plain containers
    only, so a tampered checkpoint cannot run code when it is loaded."""
    import torch

    path = os.path.join(d, STATE_FILE)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError (and friends) for anything else
        raise RuntimeError(f"{path}: not a plain tensor checkpoint, refusing to load it "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
