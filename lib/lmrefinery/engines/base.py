from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Task = dict[str, Any]     # a task as the engines ship it: JSON-encodable
Result = dict[str, Any]


class Engine:
    name = "base"

    def __init__(self, workers: int = 2, **kw: Any):
        self.workers = workers

    def map(self, fn: Callable[[Task], Result], tasks: list[Task], desc: str = "",
            on_result: Callable[[int, Result], None] | None = None) -> list[Result]:
        raise NotImplementedError

    def nodes_used(self) -> list[str]:
        """Cluster nodes that ran tasks of this engine (where the engine knows them)."""
        return []

    def start(self) -> None:
        """Bring the engine up (Ray/Spark start-up), so it is timed apart from any stage."""


class LocalEngine(Engine):
    """Runs tasks one after another in this process: for debugging and `stage`."""

    name = "local"

    def map(self, fn: Callable[[Task], Result], tasks: list[Task], desc: str = "",
            on_result: Callable[[int, Result], None] | None = None) -> list[Result]:
        out = []
        for i, t in enumerate(tasks):
            r = fn(t)
            out.append(r)
            if on_result:
                on_result(i, r)
        return out


def call_task(fn: Callable[[Task], Result], task_json: str) -> str:
    return json.dumps(fn(json.loads(task_json)), sort_keys=True)
