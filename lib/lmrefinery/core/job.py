"""What a global stage gets from the runner: the engine to run its rounds on, its
input parts (and their rows), its folder and fingerprint. Only the runner commits what
it returns; what the stage settled while it ran (`resolve`) goes into its manifest."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..engines.base import Engine
from . import storage
from .progress import StageProgress
from .stagedir import work_dir

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class GlobalJob:
    """One global stage's run: ``map`` runs a round of its tasks on the engine."""

    engine: Engine
    progress: StageProgress
    name: str                # the stage's name
    stage_dir: str
    inputs: list[str]        # the parts of the stage before (Parquet URIs)
    fingerprint: str
    ctx: dict[str, Any]      # StageContext fields
    params: dict[str, Any]   # the stage's validated params, JSON form
    batch_size: int          # rows per Arrow batch (recipe resources)
    # rows of each input part, from the manifest of the stage before (None: read from the
    # parts' Parquet footers when asked for)
    input_rows: list[int] | None = None
    # parameters the stage settled when it ran (e.g. dedup's `buckets`, sized from the
    # input): value and why; the manifest records them (core/commit.py)
    resolved: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def documents(self) -> int:
        """The documents of the stage's input: a function of the input alone, whatever
        the engine or the number of workers."""
        if self.input_rows is None:
            self.input_rows = [storage.parquet_rows(p) for p in self.inputs]
        return sum(self.input_rows)

    def resolve(self, param: str, value: Any, why: str) -> None:
        """Record a parameter the stage chose at run time (the recipe left it unset)."""
        self.resolved[param] = (value, why)

    @property
    def work_dir(self) -> str:
        """Scratch of this attempt (core/stagedir.py)."""
        return work_dir(self.stage_dir, self.fingerprint)

    def map(self, fn: Callable[[T], R], tasks: list[T], step: str = "") -> list[R]:
        """Run one round of this stage: ``fn`` over ``tasks`` on the engine; ``step``
        names the round in the progress display."""
        on_result = self.progress.start_step(step or "tasks", len(tasks))
        out: list[R] = self.engine.map(fn, tasks, on_result=on_result)
        self.progress.finish_step()
        return out


__all__ = ["GlobalJob"]
