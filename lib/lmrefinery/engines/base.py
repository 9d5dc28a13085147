"""What an engine is: something that runs one function over a list of tasks on
its workers and hands back the results in task order.

Tasks and results travel as cloudpickle bytes, so a stage's round can take a frozen
dataclass (``SignTask(part, input, index, params)``) and return a typed summary;
nothing is squeezed through JSON on the way."""
from __future__ import annotations

import gc
import sys
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
            r = unpack(call_task(fn, pack(t), in_worker=False))
            out.append(r)
            if on_result:
                on_result(i, r)
        return out


def warm_worker(_: object = None) -> int:
    """Run once per worker process at engine start: imports every stage module, so the
    first stage's seconds are its own work, not imports."""
    from ..core.stage import all_stages

    n = len(all_stages())
    freeze_long_lived()
    return n


_frozen_modules = 0  # len(sys.modules) at this worker's last freeze


def freeze_long_lived() -> None:
    """Move everything alive now (imported modules, loaded models) out of the garbage
    collector's reach. Spark's reused Python workers run a full ``gc.collect()`` after
    every task, which walked all of lmrefinery's imports each time: 20-60 ms per task,
    most of a small global round's cost on Spark (docs/scale.md). Called after the
    imports of warm-up and again whenever a task has imported more modules."""
    global _frozen_modules
    gc.collect()
    gc.freeze()
    _frozen_modules = len(sys.modules)


def pack(value: Any) -> bytes:
    data: bytes = cloudpickle.dumps(value)
    return data


def unpack(data: bytes) -> Any:
    return cloudpickle.loads(data)


def call_task(fn: Callable[[Task], Result], task: bytes, in_worker: bool = True) -> bytes:
    """Worker side of every engine: unpickle the task, run the round, pickle its result.
    ``in_worker=False`` (the local engine, in the caller's own process): no freeze there,
    since frozen objects are never collected and that process is the user's."""
    out = pack(fn(unpack(task)))
    if in_worker and len(sys.modules) != _frozen_modules:
        freeze_long_lived()  # this task brought new imports (a stage's models, say)
    return out
