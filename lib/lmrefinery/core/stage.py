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
import importlib.resources
import importlib.util
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from .schema import concat, empty_docs, with_reason


class StageDataError(ValueError):
    """A stage stopped because of what its input holds (e.g. a mixed source with no documents
    left): the CLI prints the message and exits 2, no traceback."""


class OptionsError(ValueError):
    """Reader options that do not fit the input format's options model."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems       # (key, message)
        super().__init__("; ".join(f"options.{k}: {m}" if k else m for k, m in problems))


class StageParams(BaseModel):
    """Base for every stage's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class BatchResult:
    kept: pa.Table
    rejected: pa.Table | None = None  # rows + reject_stage + reject_reason
    counters: dict[str, int] = field(default_factory=dict)  # e.g. pii replacements by type

    @staticmethod
    def split(table: pa.Table, stage: str, reasons: list[str | None],
              counters: dict[str, int] | None = None) -> BatchResult:
        """Split a batch by a per-row reason list (None = keep), order kept."""
        import numpy as np

        mask = np.array([r is None for r in reasons], dtype=bool)
        kept = table.filter(pa.array(mask))
        rej_idx = np.flatnonzero(~mask)
        if len(rej_idx):
            rejected = with_reason(table.take(pa.array(rej_idx)), stage, [str(reasons[i]) for i in rej_idx])
        else:
            rejected = None
        return BatchResult(kept, rejected, counters or {})

    @staticmethod
    def rewritten(received: pa.Table, out: pa.Table, stage: str, reasons: list[str | None],
                  counters: dict[str, int] | None = None) -> BatchResult:
        """For a stage that changes text: kept rows come from `out` (the rewritten batch),
        rejected rows from `received`, exactly as the stage got them, so a reject never
        loses what the stage would have changed."""
        kept = BatchResult.split(out, stage, reasons, counters)
        kept.rejected = BatchResult.split(received, stage, reasons).rejected
        return kept


@dataclass
class StageContext:
    """What a stage may know about the run it is part of (picklable)."""

    output_root: str
    stage_dir: str
    seed: int = 0
    inputs: list[dict[str, Any]] = field(default_factory=list)   # recipe input declarations
    run_name: str = "run"


class Stage:
    name: ClassVar[str]
    kind: ClassVar[str] = "map"          # "map" | "read" | "global"
    # False: a filter, which only decides (and may add signal columns); kept rows keep the
    # text they came with. True: a transform (clean, c4_lines, pii), which may rewrite text.
    # Either way a rejected row is the row the stage received (tests/test_stage_contract.py).
    changes_text: ClassVar[bool] = False
    # Base columns a stage may fill in on every row, rejects included (lid: `lang`, and
    # line labels in `meta`). Any other base column of a reject is exactly as received.
    annotates: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[StageParams]] = StageParams
    description: ClassVar[str] = ""
    # code outside the stage's own folders that decides its output (module or package names,
    # e.g. "lmrefinery.segment"): part of code_hash, so an edit there re-runs the stage
    code_outside: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: StageParams, ctx: StageContext):
        self.params = params
        self.ctx = ctx

    def setup(self) -> None:
        """Load models etc. Called once per worker process before the first batch."""

    def process(self, batch: pa.Table) -> BatchResult:  # pragma: no cover - abstract
        raise NotImplementedError

    # global stages implement this instead of process()
    def execute(self, job: Any) -> list[dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    # read stages implement read() instead of process(), and may plan and check inputs
    def read(self, spec: dict[str, Any]) -> Iterator[BatchResult]:  # pragma: no cover - abstract
        """The documents of one read task (an input object, or a byte range of one)."""
        raise NotImplementedError

    @classmethod
    def plan_tasks(cls, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The read tasks for the recipe's input objects: one per object unless a read
        stage splits large ones."""
        return files

    @classmethod
    def check_input(cls, fmt: str, options: dict[str, Any] | None) -> Any:
        """The typed reader options of input format ``fmt`` (read stages): KeyError for a
        format no reader knows, OptionsError for options that do not fit it."""
        raise KeyError(f"stage {cls.name!r} reads no input format")

    @classmethod
    def code_hash(cls) -> str:
        """Changes to a stage's code change its fingerprint, so re-runs redo it. The code is
        every module of the package (folder) each class of the stage lives in, so a round or
        helper moved to a sibling module is covered without a list to keep up to date; plus the
        modules and packages named in `code_outside`. Read through importlib.resources, so a
        wheel, Ray's py_modules and a Spark --py-files zip hash the same bytes."""
        h = hashlib.sha256()
        names: list[str] = []
        for klass in cls.__mro__:
            if klass not in (Stage, object) and klass.__module__.rpartition(".")[0]:
                names.append(klass.__module__.rpartition(".")[0])
        for name in dict.fromkeys([*names, *cls.code_outside]):   # in order, once each
            for rel, source in _python_sources(name):
                h.update(f"{name}/{rel}".encode())
                h.update(source)
        return h.hexdigest()[:16]


def _python_sources(name: str) -> list[tuple[str, bytes]]:
    """(relative path, bytes) of a package's .py files, sub-packages included, sorted; or of
    one module when `name` is a module."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ImportError(f"code_outside names {name!r}, which is not importable")
    if spec.submodule_search_locations is None:   # a module
        return [(name.rpartition(".")[2] + ".py", inspect.getsource(importlib.import_module(name)).encode())]
    out: list[tuple[str, bytes]] = []

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".py"):
                out.append((prefix + entry.name, entry.read_bytes()))

    walk(importlib.resources.files(name), "")
    return sorted(out)


def process_for_sources(stage: Stage, batch: pa.Table, sources: list[str] | None) -> BatchResult:
    """Run a map stage on the rows whose `source` is listed (a recipe's per-stage `sources:`);
    the other rows pass through unchanged, in their place, with the stage's new columns
    null, and are counted as `passed_through`."""
    if sources is None:
        return stage.process(batch)
    import numpy as np
    import pyarrow.compute as pc

    mask = pc.fill_null(pc.is_in(batch.column("source"), pa.array(sources, pa.string())), False)
    res = stage.process(batch.filter(mask))
    rest = batch.filter(pc.invert(mask))
    if rest.num_rows == 0:
        return res
    merged = pa.concat_tables([res.kept, rest], promote_options="default")
    first: dict[str, int] = {}
    for i, doc_id in enumerate(batch.column("id").to_pylist()):
        first.setdefault(doc_id, i)
    order = [first.get(doc_id, batch.num_rows + k) for k, doc_id in enumerate(merged.column("id").to_pylist())]
    res.kept = merged.take(pa.array(np.argsort(order, kind="stable")))
    res.counters = dict(res.counters, passed_through=rest.num_rows)
    return res


_REGISTRY: dict[str, type[Stage]] = {}

# Modules that define stages, in pipeline order. A module listed here that is
# not part of this install is skipped; one that exists but fails to import is an error.
STAGE_MODULES = [
    "lmrefinery.ingest.read",
    "lmrefinery.clean.normalize",
    "lmrefinery.clean.length",
    "lmrefinery.clean.lines",
    "lmrefinery.lid.stage",
    "lmrefinery.quality.stage",
    "lmrefinery.quality.model_stage",
    "lmrefinery.pii.stage",
    "lmrefinery.dedup.exact",
    "lmrefinery.dedup.near",
    "lmrefinery.dedup.decontaminate",
    "lmrefinery.tokenize.stage",
    "lmrefinery.instruct.stages_map",
    "lmrefinery.instruct.stage_dedup",
    "lmrefinery.instruct.stages_decide",
    "lmrefinery.instruct.stages_version",
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


__all__ = ["Stage", "StageParams", "StageDataError", "OptionsError", "BatchResult", "StageContext", "register",
           "get_stage", "process_for_sources",
           "all_stages", "concat", "empty_docs", "with_reason"]
