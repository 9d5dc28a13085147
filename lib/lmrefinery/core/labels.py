"""Score a run against the planted labels that `lmrefinery samples` writes.

Only labelled documents that this run actually read count. For planted
duplicates (`exact_dup`, `near_dup`) the unit is the group: an original and
its copies; a group is resolved when exactly one member survives, and the
original counts with its group, not as a `good` document."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa

from . import manifest as mf
from . import storage


def _keys(table: pa.Table) -> list[str | None]:
    cols = table.column_names
    urls = table.column("url").to_pylist() if "url" in cols else [None] * table.num_rows
    titles = table.column("title").to_pylist() if "title" in cols else [None] * table.num_rows
    files: list[str | None] = [None] * table.num_rows
    if "meta" in cols:
        files = [json.loads(m or "{}").get("book_key") for m in table.column("meta").to_pylist()]
    return [u or f or t for u, t, f in zip(urls, titles, files)]


def evaluate_labels(labels_uri: str, out_root: str, stage_rows: list[dict[str, Any]]) -> dict[str, Any]:
    labels: dict[str, dict[str, Any]] = {}
    for line in storage.read_bytes(labels_uri).decode().splitlines():
        if line.strip():
            d = json.loads(line)
            labels[d["key"]] = d
    removed_by: dict[str, str] = {}
    removed_at: dict[str, int] = {}
    seen: set[str] = set()
    final_keys: set[str] = set()
    for n, row in enumerate(stage_rows):
        sdir = storage.join(out_root, "stages", f"{row['index']:02d}-{row['stage']}")
        m = mf.read_manifest(sdir)
        if not m:
            continue
        for r in m["rejects"]:
            for k in _keys(storage.read_parquet(storage.join(sdir, r["path"]))):
                if k is not None and k in labels and k not in removed_by:
                    removed_by[k] = row["stage"]
                    removed_at[k] = row["index"]
        if n == 0 or n == len(stage_rows) - 1:
            keys: set[str] = set()
            for o in m["outputs"]:
                keys.update(k for k in _keys(storage.read_parquet(storage.join(sdir, o["path"]))) if k)
            if n == 0:
                seen = keys | set(removed_by)
            if n == len(stage_rows) - 1:
                final_keys = keys
    groups: dict[str, list[str]] = defaultdict(list)
    for k, d in labels.items():
        if d.get("of") and k in seen:
            groups[d["of"]].append(k)
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"planted": 0, "removed": 0, "kept": 0, "removed_by": Counter()})
    for k, d in labels.items():
        if k not in seen or k in groups or d.get("of"):
            continue
        e = out[d["kind"]]
        e["planted"] += 1
        if k in removed_by:
            e["removed"] += 1
            e["removed_by"][removed_by[k]] += 1
        elif k in final_keys:
            e["kept"] += 1
    for orig, copies in groups.items():
        kind = labels[copies[0]]["kind"]
        e = out[kind]
        members = [orig] + copies if orig in seen else copies
        survivors = [m for m in members if m in final_keys]
        e["planted"] += len(members) - 1  # redundant copies
        e["kept"] += max(0, len(survivors) - 1)
        # walk the removals in stage order: one counts as removing a redundant copy
        # only while another member is still alive (the last one going is not a dedup)
        alive = set(members)
        for member in sorted((x for x in members if x in removed_by), key=lambda x: (removed_at[x], x)):
            if len(alive) > 1:
                e["removed"] += 1
                e["removed_by"][removed_by[member]] += 1
            alive.discard(member)
    return {k: {**v, "removed_by": dict(v["removed_by"])} for k, v in sorted(out.items())}
