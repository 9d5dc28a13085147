from __future__ import annotations

import json
import time
from typing import Callable, Iterable


class Engine:
    name = "base"

    def __init__(self, workers: int = 2, **kw):
        self.workers = workers

    def map(self, fn: Callable[[dict], dict], tasks: list[dict], desc: str = "",
            on_result: Callable[[int, dict], None] | None = None) -> list[dict]:
        raise NotImplementedError

    def nodes_used(self) -> list[str]:
        """Cluster nodes that ran tasks of this engine (where the engine knows them)."""
        return []

    def start(self) -> None:
        """Bring the engine up (Ray/Spark start-up), so it is timed apart from any stage."""

    def shutdown(self) -> None:
        pass


class LocalEngine(Engine):
    """Runs tasks one after another in this process: for debugging and `stage`."""

    name = "local"

    def map(self, fn, tasks, desc="", on_result=None):
        out = []
        for i, t in enumerate(tasks):
            r = fn(t)
            out.append(r)
            if on_result:
                on_result(i, r)
        return out


def call_task(fn: Callable[[dict], dict], task_json: str) -> str:
    return json.dumps(fn(json.loads(task_json)), sort_keys=True)


def get_engine(name: str, workers: int = 2, ray_address: str | None = None,
               spark_master: str = "local[*]", cpus_per_task: float = 1.0) -> Engine:
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(workers=workers, address=ray_address, cpus_per_task=cpus_per_task)
    if name == "spark":
        from .spark_engine import SparkEngine

        return SparkEngine(workers=workers, master=spark_master)
    if name == "local":
        return LocalEngine(workers=1)
    raise ValueError(f"unknown engine {name!r}: expected ray, spark or local")


def timed(it: Iterable):
    t0 = time.time()
    for x in it:
        yield time.time() - t0, x
