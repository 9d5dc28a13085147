"""Habits that keep the code readable, checked where CI runs the suite (make test, .ci/run):
ruff and mypy as configured in pyproject.toml (mypy strict on core/ and engines/, checked
everywhere else) must pass, and functions and modules stay under the size limits. A size
exception needs a line in LONG_FUNCTIONS / LONG_MODULES with its reason (generated or table
files only); there are none today."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
BIN = Path(sys.executable).parent
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: install the dev extra (pip install -e '.[dev]')")
    return str(path)


def _env() -> dict[str, str]:
    # this checkout's lib/ first, whatever the editable install of the venv points at
    return dict(os.environ, PYTHONPATH=str(LIB))


def test_ruff_passes():
    r = subprocess.run([_tool("ruff"), "check", "lib", "jobs", "tests", "bench", "deploy"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=_env())
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


@pytest.mark.slow
def test_mypy_passes(tmp_path):
    r = subprocess.run([_tool("mypy"), "--cache-dir", str(tmp_path / "mypy-cache")],
                       cwd=ROOT, capture_output=True, text=True, timeout=900, env=_env())
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]


# Functions longer than MAX_FUNCTION_LINES today, each with why it is still that long.
LONG_FUNCTIONS: dict[str, str] = {}

# Modules longer than MAX_MODULE_LINES today, each with why.
LONG_MODULES: dict[str, str] = {}


def _function_lengths(node: ast.AST, prefix: str, out: dict[str, int]) -> None:
    """``prefix + Class.function`` -> lines, nested functions and methods included."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + child.name
            out[name] = child.end_lineno - child.lineno + 1
            _function_lengths(child, name + ".", out)
        elif isinstance(child, ast.ClassDef):
            _function_lengths(child, prefix + child.name + ".", out)


def _sizes() -> tuple[dict[str, int], dict[str, int]]:
    functions: dict[str, int] = {}
    modules: dict[str, int] = {}
    for path in sorted((LIB / "lmrefinery").rglob("*.py")):
        rel = path.relative_to(LIB / "lmrefinery").as_posix()
        source = path.read_text(encoding="utf-8")
        modules[rel] = len(source.splitlines())
        _function_lengths(ast.parse(source), f"{rel}::", functions)
    return functions, modules


def test_no_long_functions_or_modules():
    functions, modules = _sizes()
    long_f = {k: n for k, n in functions.items() if n > MAX_FUNCTION_LINES}
    long_m = {k: n for k, n in modules.items() if n > MAX_MODULE_LINES}
    assert not set(long_f) - set(LONG_FUNCTIONS), f"functions over {MAX_FUNCTION_LINES} lines: " \
        f"{ {k: n for k, n in long_f.items() if k not in LONG_FUNCTIONS} }"
    assert not set(long_m) - set(LONG_MODULES), f"modules over {MAX_MODULE_LINES} lines: " \
        f"{ {k: n for k, n in long_m.items() if k not in LONG_MODULES} }"
    # an exception that is no longer needed is taken off the list
    assert not set(LONG_FUNCTIONS) - set(long_f), f"no longer long, drop: {set(LONG_FUNCTIONS) - set(long_f)}"
    assert not set(LONG_MODULES) - set(long_m), f"no longer long, drop: {set(LONG_MODULES) - set(long_m)}"


def test_the_training_loop_reads_in_one_screen():
    """#18 build 4: the per-worker function stays short; its pieces live in train/ modules."""
    functions, _ = _sizes()
    assert functions["train/loop.py::train_loop"] <= 60, functions["train/loop.py::train_loop"]
