"""Files the code reads at run time: package data, or a user's override folder.

Defaults (quality rule sets per language, instruction templates, taxonomy,
refusal lists, the built-in mini recipe) ship inside the package and are read
through ``importlib.resources``, so they travel with a wheel, a Ray
``py_modules`` upload and a Spark ``--py-files`` zip alike. A user may point a
stage at their own folder (a parameter or an environment variable); a folder
that does not exist, or package data that is missing, is an error that names
what is missing. There is no fallback to other defaults.

Everything is handled as a :class:`Traversable` (a real directory or a folder
inside a zip), so callers read with ``iterdir``/``read_text`` rather than
``os.listdir``/``open``.
"""
from __future__ import annotations

import os
import pathlib
from importlib.resources import files
from importlib.resources.abc import Traversable


class MissingResource(FileNotFoundError):
    """Package data or a configured override folder is not there."""


def package_folder(package: str, *parts: str) -> Traversable:
    """A folder of package data; MissingResource when the installed package lacks it."""
    folder = files(package).joinpath(*parts)
    if not folder.is_dir():
        where = getattr(files(package), "__fspath__", lambda: str(files(package)))()
        raise MissingResource(
            f"package data {package.replace('.', '/')}/{'/'.join(parts)} is missing from the installed "
            f"lmrefinery at {where}; reinstall the package (its wheel ships this folder)")
    return folder


def config_folder(explicit: str | None, env_var: str, package: str, *parts: str) -> Traversable:
    """The folder to read: ``explicit`` (a parameter), else ``$env_var``, else
    the package's own. A user-given folder must exist."""
    given, origin = (explicit, "parameter") if explicit else (os.environ.get(env_var), f"${env_var}")
    if given:
        if not os.path.isdir(given):
            raise MissingResource(f"{origin}: folder {given} does not exist")
        return pathlib.Path(given)
    return package_folder(package, *parts)


def files_in(folder: Traversable, suffixes: tuple[str, ...]) -> list[Traversable]:
    """Files of ``folder`` whose names end with one of ``suffixes``, sorted by name."""
    return sorted((f for f in folder.iterdir() if f.is_file() and f.name.endswith(suffixes)),
                  key=lambda f: f.name)


def fingerprint_files(folder: Traversable, suffixes: tuple[str, ...]) -> bytes:
    """Names and contents of the matching files, for a stage's code hash."""
    return b"".join(f.name.encode() + b"\0" + f.read_bytes() for f in files_in(folder, suffixes))
