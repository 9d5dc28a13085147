"""The package's import graph has no cycles, counting imports inside functions
too (a lazy import that closes a loop is still a loop a reader must untangle)."""
from __future__ import annotations

import ast
import os

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")


def _modules() -> dict[str, str]:
    mods = {}
    for folder, _, files in os.walk(os.path.join(LIB, "lmrefinery")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, LIB)[:-3].replace(os.sep, ".")
                mods[name.removesuffix(".__init__")] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                deps |= {c for c in [base, *(f"{base}.{a.name}" for a in node.names)] if c in mods}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    assert len(graph) > 50 and "lmrefinery.core.runner" in graph
    assert cycles(graph) == []


def test_core_imports_only_core_and_engines():
    """#18 build 3 (hooks, not imports): core/ and engines/ know nothing of the stage
    families and features; those plug in through the stage registry and core/hooks.py."""
    allowed = ("lmrefinery.core", "lmrefinery.engines")
    graph = import_graph()
    wrong = {name: sorted(d for d in deps if d != "lmrefinery" and not d.startswith(allowed))
             for name, deps in graph.items() if name.startswith(allowed)}
    assert {k: v for k, v in wrong.items() if v} == {}
