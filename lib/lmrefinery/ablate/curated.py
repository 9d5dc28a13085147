"""``curated.json``: what the training phase of an ablation needs from its curation
phase (``lmrefinery ablate --phase curate``, then ``--phase train``), with every path
relative to the run folder. So the two phases can run on different machines: curate
where the inputs and the curation engine are, copy the small part of the run folder
the training needs (``copy_curated``), train and evaluate on a GPU machine, which needs
neither the inputs nor Ray (``train.backend: local``)."""
from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Any

from .heldout import HeldOutSplit
from .spec import AblationSpec

CURATED = "curated.json"
# below a variant's tokenize folder: what training reads (dataset.json names its shards and tokenizer)
DATASET_FILES = ("dataset.json", "shards", "tokenizer")


def _relative(path: str, run: str) -> str:
    """``path`` relative to the run folder when it lies inside it (else as it is)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(run))
    return path if rel.startswith("..") else rel


def write_curated(run: str, split: HeldOutSplit, tokenizer: str, variants: list[dict[str, Any]]) -> str:
    saved = {"tokenizer": _relative(tokenizer, run), "heldout": {g: f"heldout/{g}.jsonl" for g in split.heldout},
             "inputs": split.counts,
             "variants": [v | {"dataset": _relative(v["dataset"], run)} for v in variants]}
    path = os.path.join(run, CURATED)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(saved, f, indent=1, ensure_ascii=False)
    os.replace(path + ".tmp", path)
    return path


def _read(run: str) -> dict[str, Any]:
    from ..core.recipe import RecipeError

    path = os.path.join(run, CURATED)
    if not os.path.exists(path):
        raise RecipeError(f"{path}: not there; run `lmrefinery ablate SPEC --phase curate` first (it writes it), "
                          f"or check the spec's output and name")
    with open(path, encoding="utf-8") as f:
        saved: dict[str, Any] = json.load(f)
    return saved


def load_curated(spec: AblationSpec) -> tuple[HeldOutSplit, str, list[dict[str, Any]]]:
    """The held-out split, the tokenizer and the spec's variants (VariantData fields,
    absolute paths) from the run folder's curated.json."""
    from ..core.recipe import RecipeError

    run = spec.run_dir
    saved = _read(run)
    have = {v["name"]: v for v in saved["variants"]}
    missing = [v.name for v in spec.variants if v.name not in have]
    if missing:
        raise RecipeError(f"{os.path.join(run, CURATED)}: variants {missing} of the spec were not curated "
                          f"(there: {sorted(have)})")
    heldout = {}
    for g, p in saved["heldout"].items():
        with open(os.path.join(run, p), encoding="utf-8") as f:
            heldout[g] = [json.loads(line) for line in f]
    variants = [have[v.name] | {"dataset": os.path.join(run, have[v.name]["dataset"])} for v in spec.variants]
    return HeldOutSplit(heldout, {}, saved["inputs"]), os.path.join(run, saved["tokenizer"]), variants


def copy_curated(run: str, dest: str) -> list[str]:
    """Copy what ``--phase train`` reads from the run folder ``run`` to ``dest`` (a new
    run folder: output/name of the spec used there); returns the files, relative."""
    saved = _read(run)
    wanted = [CURATED, *saved["heldout"].values()]
    tops = [os.path.join(v["dataset"], f) for v in saved["variants"] for f in DATASET_FILES]
    if not os.path.isabs(saved["tokenizer"]):   # a given tokenizer.path outside the run folder stays where it is
        tops.append(saved["tokenizer"])
    for top in tops:
        src = os.path.join(run, top)
        found = [src] if os.path.isfile(src) else glob.glob(os.path.join(src, "**"), recursive=True)
        wanted += [os.path.relpath(p, run) for p in found if os.path.isfile(p)]
    for rel in wanted:
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(os.path.join(run, rel), os.path.join(dest, rel))
    return sorted(wanted)
