"""What a global stage gets from the runner: the engine to run its rounds on, its
input parts, its folder and fingerprint. Only the runner commits what it returns."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..engines.base import Engine
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
