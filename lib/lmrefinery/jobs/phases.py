"""Recipe phases: which stages belong to curation, tokenization or instruction
data, and a recipe cut after the last stage of one phase (keeping the whole
recipe's fingerprint, so every phase's stats and manifests name the same recipe)."""
from __future__ import annotations

import os
from typing import Any

from pydantic import PrivateAttr

from ..core.recipe import Recipe
from .protocol import PhaseError

# Stage modules that belong to a phase other than curation (the rest is curation).
PHASE_MODULES = {
    "tokenize": ("lmrefinery.tokenize",),
    "instruct": ("lmrefinery.instruct",),
}


def resolve_path(path: str, root: str | None = None) -> str:
    """A recipe path as given, else relative to ``root`` (the jobs/ scripts pass their
    checkout, so ``conf/pipelines/mini.yaml`` works from any current directory)."""
    if "://" in path or os.path.isabs(path) or os.path.exists(path) or not root:
        return path
    alt = os.path.join(root, path)
    return alt if os.path.exists(alt) else path


def load(args: Any) -> Recipe:
    """The job's recipe with ``--set`` applied; ``--partition`` moves its output to
    ``<output>/PARTITION`` and defaults the ledger to ``<output>/_ledger/inputs.json``."""
    from ..core import storage
    from ..core.recipe import load_recipe

    recipe = load_recipe(resolve_path(args.recipe, args.root), args.overrides)
    if args.partition:
        base = recipe.output.rstrip("/")
        if not args.ledger:
            args.ledger = storage.join(base, "_ledger", "inputs.json")
        recipe.output = storage.join(base, args.partition)
    return recipe


def stage_phase(name: str) -> str:
    """Which phase a stage belongs to: by the module that defines it."""
    from ..core.stage import get_stage

    mod = get_stage(name).__module__
    for phase, prefixes in PHASE_MODULES.items():
        if any(mod == p or mod.startswith(p + ".") for p in prefixes):
            return phase
    return "curate"


def select_phase(recipe: Recipe, phase: str) -> Recipe:
    """The recipe cut after the last stage of ``phase``.

    Stages before it that are already committed are skipped by the runner, so
    running ``curate`` then ``tokenize`` does each stage once. The cut recipe
    keeps the full recipe's fingerprint, so stats and manifests name the same
    recipe whichever phase wrote them."""
    phases = [stage_phase(s.stage) for s in recipe.stages]
    if phase not in phases:
        listing = ", ".join(f"{s.stage}({p})" for s, p in zip(recipe.stages, phases, strict=True))
        raise PhaseError(f"{recipe.source_file or recipe.name}: no {phase} stages in this recipe "
                         f"(stages: {listing})")
    last = max(i for i, p in enumerate(phases) if p == phase)
    return pin_prefix(recipe, last + 1)


class _Cut(Recipe):
    """A recipe's first stages, with the whole recipe's fingerprint (a private
    attribute: not a recipe key, not in ``model_dump``)."""

    _pinned: str | None = PrivateAttr(default=None)

    def fingerprint(self) -> str:
        return self._pinned or super().fingerprint()


def pin_prefix(recipe: Recipe, n: int) -> Recipe:
    fp = recipe.fingerprint()
    data = recipe.model_dump()
    data["stages"] = data["stages"][:n]
    cut = _Cut(**data)
    cut._pinned = fp
    return cut
