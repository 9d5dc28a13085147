"""Hooks through which features outside core/ take part in a run without core/
importing them: the input ledger chooses what the read stage reads and records it,
the HTML report is written from the stored stats (lmrefinery/run.py wires them)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

InputFiles = list[dict[str, Any]]   # the read stage's input objects (path, rel, size, etag, ...)


@dataclass
class FinishedRun:
    """A run whose stages are all committed. ``stats`` is the run's result; a hook run
    before the stats are stored may add keys to it (they go into stats.json);
    ``stored`` is stats.json as written (with its history), None until then."""

    recipe_name: str
    output: str
    stats: dict[str, Any]
    read_files: InputFiles
    stored: dict[str, Any] | None = None


class RunHook(Protocol):
    def __call__(self, run: FinishedRun) -> None: ...


@dataclass
class RunHooks:
    """``select_inputs`` narrows the read stage's input objects (None: read them all;
    an empty list: nothing new, the run stops); ``before_store`` hooks run once every
    stage is committed, before stats.json is written; ``after_store`` hooks after."""

    select_inputs: Callable[[InputFiles], InputFiles] | None = None
    before_store: list[RunHook] = field(default_factory=list)
    after_store: list[RunHook] = field(default_factory=list)


__all__ = ["FinishedRun", "InputFiles", "RunHook", "RunHooks"]
