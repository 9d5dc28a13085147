"""Held-out documents for the ablation, decontaminated from every variant.

The recipe's inputs are read once (its own ``read`` stage, through the Runner); in
each held-out group a seeded hash of the document id picks ``fraction`` of the
documents (at least ``min_chars`` long). Those documents, and every other document
whose whitespace-normalised text equals one of them, are removed from the training
inputs *before* any curation: each input becomes one JSONL file of its remaining
documents, which every variant reads instead of the original files. So no variant
can train on a held-out text whatever its stages do.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field

from .spec import AblationSpec, HeldOut

COLUMNS = ["id", "text", "source", "url", "title"]


@dataclass
class HeldOutSplit:
    heldout: dict[str, list[dict]]           # group -> held-out rows {id, text, source}
    train_files: dict[str, str]              # input name -> JSONL of its training documents
    counts: dict[str, dict[str, int]] = field(default_factory=dict)   # input -> read/heldout/removed/train

    def texts(self, group: str) -> list[str]:
        return [r["text"] for r in self.heldout[group]]


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def held_out(doc_id: str, h: HeldOut) -> bool:
    """The document is in the held-out share for this seed (stable across runs and engines)."""
    d = hashlib.sha256(f"{h.seed}:{doc_id}".encode()).digest()
    return int.from_bytes(d[:8], "big") / 2 ** 64 < h.fraction


def read_inputs(spec: AblationSpec, recipe, out: str, engine: str | None) -> list[dict]:
    """Every document the recipe's read stage produces (rows of COLUMNS)."""
    from ..core.recipe import load_recipe
    from ..report.rundata import RunData
    from ..run import run_recipe

    raw = recipe.model_dump(mode="json")
    raw.pop("source_file", None)
    read = next((s for s in raw["stages"] if s["stage"] == "read"), {"stage": "read", "params": {}})
    raw.update(stages=[read], output=out, labels=None, report=False)
    run_recipe(load_recipe(raw, label=f"{spec.name}: read"), engine=engine, workers=spec.workers, quiet=True)
    rows: list[dict] = []
    read = RunData.open(out).stage("read")
    if read is None:
        raise RuntimeError(f"ablate: the read stage of {out} has no committed output")
    for _, t in read.data_tables(columns=COLUMNS):
        rows.extend(t.to_pylist())
    return sorted(rows, key=lambda r: r["id"])


def split_inputs(rows: list[dict], h: HeldOut, input_names: list[str]) -> tuple[dict[str, list[dict]], list[dict]]:
    """(group -> held-out rows, training rows): held-out picked per group, then every
    row whose normalised text equals a held-out text removed from training."""
    unknown = sorted({n for g in h.groups.values() for n in g} - set(input_names))
    if unknown:
        raise ValueError(f"heldout.groups name inputs the recipe does not have: {unknown} (inputs: {input_names})")
    group_of = {n: g for g, names in h.groups.items() for n in names}
    held: dict[str, list[dict]] = {g: [] for g in h.groups}
    for r in rows:
        g = group_of.get(r["source"])
        if g and len(r["text"] or "") >= h.min_chars and held_out(r["id"], h):
            held[g].append({"id": r["id"], "text": r["text"], "source": r["source"]})
    banned = {norm(r["text"]) for g in held.values() for r in g}
    train = [r for r in rows if norm(r["text"]) not in banned]
    if h.max_docs:
        held = {g: v[:h.max_docs] for g, v in held.items()}
    return held, train


def prepare(spec: AblationSpec, recipe, engine: str | None) -> HeldOutSplit:
    """Read, split and write: run_dir/heldout/<group>.jsonl and run_dir/inputs/<input>.jsonl."""
    run = spec.run_dir
    rows = read_inputs(spec, recipe, os.path.join(run, "source"), engine)
    names = [i.name for i in recipe.inputs]
    held, train = split_inputs(rows, spec.heldout, names)
    os.makedirs(os.path.join(run, "heldout"), exist_ok=True)
    os.makedirs(os.path.join(run, "inputs"), exist_ok=True)
    for g, items in held.items():
        _write_jsonl(os.path.join(run, "heldout", f"{g}.jsonl"), items)
    files = {}
    by_src: dict[str, list[dict]] = {n: [] for n in names}
    for r in train:
        by_src[r["source"]].append({"text": r["text"], "url": r["url"], "title": r["title"], "orig_id": r["id"]})
    read_n, train_n = Counter(r["source"] for r in rows), Counter(r["source"] for r in train)
    held_n = Counter(r["source"] for g in held.values() for r in g)
    counts = {}
    for n in names:
        if not by_src[n]:
            raise ValueError(f"input {n!r}: no training documents left after holding out")
        files[n] = os.path.join(run, "inputs", f"{n}.jsonl")
        _write_jsonl(files[n], by_src[n])
        counts[n] = {"read": read_n[n], "heldout_eval": held_n[n], "train": train_n[n],
                     "removed": read_n[n] - train_n[n]}
    return HeldOutSplit(held, files, counts)


def _write_jsonl(path: str, rows: list[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    os.replace(tmp, path)


def contamination(heldout: dict[str, list[dict]], texts) -> int:
    """How many held-out documents have their exact (normalised) text among ``texts``."""
    seen = {norm(t) for t in texts}
    return sum(norm(r["text"]) in seen for g in heldout.values() for r in g)
