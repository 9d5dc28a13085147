"""What an engine is: something that runs one function over a list of tasks on
its workers and hands back the results in task order.

Tasks and results travel as cloudpickle bytes, so a stage's round can take a frozen
dataclass (``SignTask(part, input, index, params)``) and return a typed summary;
nothing is squeezed through JSON on the way."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cloudpickle

Task = Any      # any picklable value; global stages use frozen dataclasses
Result = Any    # whatever the round returns (BatchResult summaries, small dataclasses)
OnResult = Callable[[int, Any], None]


class Engine:
    name = "base"

    def __init__(self, workers: int = 2, **kw: Any):
        self.workers = workers

    def map(self, fn: Callable[[Task], Result], tasks: list[Task],
            on_result: OnResult | None = None) -> list[Result]:
        raise NotImplementedError

    def nodes_used(self) -> list[str]:
        """Cluster nodes that ran tasks of this engine (where the engine knows them)."""
        return []

    def start(self) -> None:
        """Bring the engine up (Ray/Spark start-up), so it is timed apart from any stage."""


class LocalEngine(Engine):
    """Runs tasks one after another in this process: for debugging and `stage`.
    Tasks still make the pickle round trip, so what works here works on a cluster."""

    name = "local"

    def map(self, fn: Callable[[Task], Result], tasks: list[Task],
            on_result: OnResult | None = None) -> list[Result]:
        out = []
        for i, t in enumerate(tasks):
            r = unpack(call_task(fn, pack(t)))
            out.append(r)
            if on_result:
                on_result(i, r)
        return out


def warm_worker(_: object = None) -> int:
    """Run once per worker process at engine start: imports every stage module, so the
    first stage's seconds are its own work, not imports."""
    from ..core.stage import all_stages

    return len(all_stages())


def pack(value: Any) -> bytes:
    data: bytes = cloudpickle.dumps(value)
    return data


def unpack(data: bytes) -> Any:
    return cloudpickle.loads(data)


def call_task(fn: Callable[[Task], Result], task: bytes) -> bytes:
    """Worker side of every engine: unpickle the task, run the round, pickle its result."""
    return pack(fn(unpack(task)))
