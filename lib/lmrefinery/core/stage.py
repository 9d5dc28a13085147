"""The stage API.

A map stage is a pure function over a ``pyarrow.Table`` batch that returns the
kept rows and the rejected rows with a reason (``BatchResult``). Engines call
it; they never look inside. A global stage (exact/near dedup, shuffle) needs
data from all shards at once and describes its work as a few rounds of map
tasks over files (see ``dedup/exact.py``), still engine-neutral.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from .schema import concat, empty_docs, with_reason


class StageParams(BaseModel):
    """Base for every stage's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class BatchResult:
    kept: pa.Table
    rejected: pa.Table | None = None  # rows + reject_stage + reject_reason
    counters: dict[str, int] = field(default_factory=dict)  # e.g. pii replacements by type

    @staticmethod
    def split(table: pa.Table, stage: str, reasons: list[str | None], counters=None) -> BatchResult:
        """Split a batch by a per-row reason list (None = keep), order kept."""
        import numpy as np

        mask = np.array([r is None for r in reasons], dtype=bool)
        kept = table.filter(pa.array(mask))
        rej_idx = np.flatnonzero(~mask)
        if len(rej_idx):
            rejected = with_reason(table.take(pa.array(rej_idx)), stage, [reasons[i] for i in rej_idx])
        else:
            rejected = None
        return BatchResult(kept, rejected, counters or {})


@dataclass
class StageContext:
    """What a stage may know about the run it is part of (picklable)."""

    output_root: str
    stage_dir: str
    seed: int = 0
    inputs: list[dict] = field(default_factory=list)   # recipe input declarations
    run_name: str = "run"
    extra: dict = field(default_factory=dict)


class Stage:
    name: ClassVar[str]
    kind: ClassVar[str] = "map"          # "map" | "read" | "global"
    Params: ClassVar[type[StageParams]] = StageParams
    description: ClassVar[str] = ""

    def __init__(self, params: StageParams, ctx: StageContext):
        self.params = params
        self.ctx = ctx

    def setup(self) -> None:
        """Load models etc. Called once per worker process before the first batch."""

    def process(self, batch: pa.Table) -> BatchResult:  # pragma: no cover - abstract
        raise NotImplementedError

    # global stages implement this instead of process()
    def execute(self, job: Any) -> list[dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def code_hash(cls) -> str:
        """Changes to a stage's code change its fingerprint, so re-runs redo it."""
        h = hashlib.sha256()
        for klass in cls.__mro__:
            if klass in (Stage, object):
                continue
            try:
                h.update(inspect.getsource(inspect.getmodule(klass)).encode())
            except (OSError, TypeError):
                pass
        return h.hexdigest()[:16]


_REGISTRY: dict[str, type[Stage]] = {}

# Modules that define stages, in pipeline order. A module listed here that is
# not part of this install is skipped; one that exists but fails to import is an error.
STAGE_MODULES = [
    "lmrefinery.ingest.read",
    "lmrefinery.clean.normalize",
    "lmrefinery.clean.length",
    "lmrefinery.lid.stage",
    "lmrefinery.quality.stage",
    "lmrefinery.quality.model_stage",
    "lmrefinery.pii.stage",
    "lmrefinery.dedup.exact",
    "lmrefinery.dedup.near",
    "lmrefinery.dedup.decontaminate",
    "lmrefinery.tokenize.stage",
    "lmrefinery.instruct.stages",
]
_loaded = False


def register(cls: type[Stage]) -> type[Stage]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"stage {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in STAGE_MODULES:
        try:
            spec = importlib.util.find_spec(mod)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            continue
        importlib.import_module(mod)
    _loaded = True


def get_stage(name: str) -> type[Stage]:
    _load_all()
    if name not in _REGISTRY:
        from .names import unknown_name

        raise KeyError(unknown_name("stage", name, all_stages()))
    return _REGISTRY[name]


def all_stages() -> list[str]:
    _load_all()
    return list(_REGISTRY)


__all__ = ["Stage", "StageParams", "BatchResult", "StageContext", "register", "get_stage",
           "all_stages", "concat", "empty_docs", "with_reason"]
