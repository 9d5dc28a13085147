"""Hooks into the training loop, passed in code (``run_training(recipe, callbacks=[...])``),
never through a recipe. Callbacks travel to every worker with the loop's config (Ray
pickles them), so they must be picklable; each rank calls its own copy. Tests use one
to make a worker fail at a chosen step and watch Ray restart the group."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class StepEnd:
    step: int                 # optimizer steps taken, this one included
    rank: int
    world: int
    resumed_from: int | None  # the checkpoint step this worker group started from (None: fresh)
    run_dir: str


@runtime_checkable
class TrainCallback(Protocol):
    def on_step_end(self, info: StepEnd) -> None:
        """Called on every rank after each optimizer step, before logging and checkpointing."""
