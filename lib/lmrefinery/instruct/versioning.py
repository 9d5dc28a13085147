"""Immutable, content-addressed dataset versions.

``build_version(rows, prefix, ...)`` writes ``PREFIX/versions/<id>/``:
``data/<split>.parquet`` (document rows), ``export/<split>.<fmt>`` and, last,
``manifest.json`` (the commit point). ``<id>`` is a hash of the content (ids,
messages, split, category, language of every record) and of the recipe, so the
same build gives the same version and any change gives a new one. An existing
version is never rewritten. The manifest lists sources with checksums, the
recipe hash, counts by source / category / language / split / origin, the
files with checksums and the parent version (the previous ``LATEST`` unless
given). ``diff(a, b)`` says what changed between two versions.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter

from ..core import storage
from ..core.manifest import read_json, write_json
from . import export as ex
from .common import content_hash, messages, table_to_rows

MANIFEST = "manifest.json"


def _counts(rows: list[dict], key) -> dict:
    return dict(sorted(Counter(str(key(r) or "unknown") for r in rows).items()))


def content_id(rows: list[dict], recipe_hash: str = "") -> str:
    lines = sorted(f"{r['id']}\t{content_hash(messages(r))}\t{r['meta'].get('split', 'train')}\t"
                   f"{r['meta'].get('category')}\t{r.get('lang')}" for r in rows)
    h = hashlib.sha256(recipe_hash.encode())
    for line in lines:
        h.update(line.encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def source_checksums(paths: list[str]) -> list[dict]:
    out = []
    for pattern in paths or []:
        for p in storage.list_files(pattern):
            data = storage.read_bytes(p)
            out.append({"path": p, "bytes": len(data), "sha256": storage.sha256(data)})
    return out


def latest(prefix: str) -> str | None:
    d = read_json(storage.join(prefix, "versions", "LATEST.json"))
    return d["version"] if d else None


def version_dir(prefix_or_dir: str, version: str | None = None) -> str:
    if version:
        return storage.join(prefix_or_dir, "versions", version)
    return prefix_or_dir


def build_version(rows: list[dict], prefix: str, *, recipe: dict | None = None, sources: list[str] | None = None,
                  parent: str | None = None, formats: tuple[str, ...] = ("alpaca", "messages", "parquet"),
                  sep: str = "<sep>", reports: dict | None = None, name: str = "instruct") -> dict:
    recipe_hash = hashlib.sha256(json.dumps(recipe or {}, sort_keys=True, default=str).encode()).hexdigest()[:16]
    vid = "v-" + content_id(rows, recipe_hash)
    vdir = storage.join(prefix, "versions", vid)
    existing = read_json(storage.join(vdir, MANIFEST))
    if existing:
        existing["reused"] = True
        return existing
    if parent is None:
        parent = latest(prefix)
    splits: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        splits.setdefault(r["meta"].get("split", "train"), []).append(r)
    files = []
    for sp, rs in sorted(splits.items()):
        info = ex.write(rs, storage.join(vdir, "data", f"{sp}.parquet"), "parquet")
        files.append({"path": f"data/{sp}.parquet", "split": sp, "format": "parquet", **info})
        for fmt in formats:
            if fmt == "parquet":
                continue
            rel = f"export/{sp}.{ex.EXT[fmt]}"
            info = ex.write(rs, storage.join(vdir, rel), fmt, sep=sep)
            files.append({"path": rel, "split": sp, "format": fmt, **info})
    m = {"name": name, "version": vid, "parent": parent, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         "recipe_hash": recipe_hash, "recipe": recipe or {}, "sources": source_checksums(sources or []),
         "records": len(rows),
         "counts": {"source": _counts(rows, lambda r: r.get("source")),
                    "category": _counts(rows, lambda r: r["meta"].get("category")),
                    "lang": _counts(rows, lambda r: r.get("lang")),
                    "split": _counts(rows, lambda r: r["meta"].get("split", "train")),
                    "origin": _counts(rows, lambda r: r["meta"].get("origin"))},
         "files": files, "reports": reports or {}, "txt_separator": sep}
    write_json(storage.join(vdir, MANIFEST), m)        # commit point
    write_json(storage.join(prefix, "versions", "LATEST.json"), {"version": vid})
    return m


def load_version(ref: str) -> tuple[dict, str]:
    """A version directory, or PREFIX@VERSION, or PREFIX (its LATEST)."""
    if "@" in ref:
        prefix, vid = ref.rsplit("@", 1)
        vdir = version_dir(prefix, vid)
    else:
        vdir = ref
        if not storage.exists(storage.join(vdir, MANIFEST)):
            v = latest(ref)
            if v:
                vdir = version_dir(ref, v)
    m = read_json(storage.join(vdir, MANIFEST))
    if m is None:
        raise FileNotFoundError(f"{ref}: no version manifest found")
    return m, vdir


def version_rows(ref: str) -> list[dict]:
    m, vdir = load_version(ref)
    rows = []
    for f in m["files"]:
        if f["format"] == "parquet":
            rows.extend(table_to_rows(storage.read_parquet(storage.join(vdir, f["path"]))))
    return rows


def version_splits(ref: str) -> dict[str, str]:
    """id -> split of every row of a version (to pin a new build to it)."""
    return {r["id"]: r["meta"].get("split", "train") for r in version_rows(ref)}


def _is_leak(move: str) -> bool:
    """A move between train and a held-out split: what was evaluated on is now
    trained on, or the other way round (a model trained on the old version has seen it)."""
    a, b = move.split("->")
    return (a == "train") != (b == "train")


def diff(a: str, b: str, sample: int = 5) -> dict:
    ma, _ = load_version(a)
    mb, _ = load_version(b)
    ra = {r["id"]: r for r in version_rows(a)}
    rb = {r["id"]: r for r in version_rows(b)}
    added = sorted(set(rb) - set(ra))
    removed = sorted(set(ra) - set(rb))
    changed, moved = [], []
    moves: Counter = Counter()
    for i in sorted(set(ra) & set(rb)):
        sa, sb = ra[i]["meta"].get("split", "train"), rb[i]["meta"].get("split", "train")
        if content_hash(messages(ra[i])) != content_hash(messages(rb[i])):
            changed.append(i)
        elif sa != sb:
            moved.append(i)
            moves[f"{sa}->{sb}"] += 1
    deltas = {}
    for k in ("source", "category", "lang", "split", "origin"):
        ca, cb = ma["counts"].get(k, {}), mb["counts"].get(k, {})
        d = {x: cb.get(x, 0) - ca.get(x, 0) for x in sorted(set(ca) | set(cb)) if cb.get(x, 0) != ca.get(x, 0)}
        if d:
            deltas[k] = d
    return {"a": ma["version"], "b": mb["version"], "b_parent": mb.get("parent"),
            "records": {"a": len(ra), "b": len(rb)}, "added": len(added), "removed": len(removed),
            "changed": len(changed), "moved_split": len(moved), "moves": dict(sorted(moves.items())),
            "leaking_moves": sum(n for m, n in moves.items() if _is_leak(m)), "count_deltas": deltas,
            "recipe_changed": ma.get("recipe_hash") != mb.get("recipe_hash"),
            "sources_changed": [s["path"] for s in mb.get("sources", [])
                                if s["sha256"] not in {x["sha256"] for x in ma.get("sources", [])}],
            "examples": {"added": added[:sample], "removed": removed[:sample], "changed": changed[:sample],
                         "moved": moved[:sample]}}


def format_diff(d: dict) -> str:
    lines = [f"{d['a']} -> {d['b']}" + (f" (parent of b: {d['b_parent']})" if d.get("b_parent") else ""),
             f"records: {d['records']['a']} -> {d['records']['b']}  added {d['added']}  removed {d['removed']}  "
             f"changed {d['changed']}  moved split {d['moved_split']}",
             f"recipe changed: {d['recipe_changed']}"]
    if d.get("moves"):
        lines.append("  moves: " + ", ".join(f"{m} {n}" for m, n in d["moves"].items()))
    if d.get("leaking_moves"):
        lines.append(f"ERROR: {d['leaking_moves']} rows moved between train and a held-out split "
                     "(a model trained on one version has seen the other's evaluation rows)")
    if d["sources_changed"]:
        lines.append("sources new or changed: " + ", ".join(d["sources_changed"]))
    for k, v in d["count_deltas"].items():
        lines.append(f"  {k}: " + ", ".join(f"{x} {n:+d}" for x, n in v.items()))
    for k, ids in d["examples"].items():
        if ids:
            lines.append(f"  e.g. {k}: {', '.join(ids)}")
    return "\n".join(lines)
