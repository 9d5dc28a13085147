"""Ray Data executor: tasks become rows of a Dataset, `map_batches` runs the
stage function on them with at most `workers` concurrent tasks."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .base import Engine, OnResult, Result, Task, call_task, pack, unpack


def ensure_ray(address: str | None = None, num_cpus: int | None = None, attempts: int = 3) -> Any:
    """Connect to the cluster named by ``address`` (or ``$RAY_ADDRESS``); without
    one, start a private local instance (``address="local"``) instead of
    attaching to whatever ``/tmp/ray/ray_current_cluster`` names. Local start-up
    is retried (bounded) when Ray's node start-up times out on a busy machine.
    (Ray Train workers are given this cluster's address explicitly: train/trainer.py.)"""
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    kw: dict[str, Any] = dict(ignore_reinit_error=True, log_to_driver=True,
                              logging_level=os.environ.get("LMR_RAY_LOG_LEVEL", "WARNING"))
    if address:
        ray.init(address=address, **kw)
    else:
        # A private local instance; workers import lmrefinery from the same environment.
        for attempt in range(1, attempts + 1):
            try:
                ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kw)
                break
            except Exception as e:  # Ray raises plain Exception on a node start-up time-out
                if attempt == attempts or "time" not in str(e).lower():
                    raise
                print(f"lmrefinery: local Ray did not start ({e}); retrying ({attempt}/{attempts - 1})",
                      file=sys.stderr, flush=True)
                ray.shutdown()
                time.sleep(2 * attempt)
    import logging

    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(os.environ.get("LMR_RAY_LOG_LEVEL", "WARNING"))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = os.environ.get("LMR_RAY_PROGRESS", "0") == "1"
    ctx.execution_options.preserve_order = True
    return ray


def _warm_worker() -> int:
    from ..core.stage import all_stages

    return len(all_stages())


class _Apply:
    def __init__(self, fn: Callable[[Task], Result]) -> None:
        self.fn = fn

    def __call__(self, batch: pa.Table) -> pa.Table:
        import ray

        idx = batch.column("i").to_pylist()
        res = [call_task(self.fn, t) for t in batch.column("task").to_pylist()]
        node = ray.get_runtime_context().get_node_id()
        return pa.table({"i": pa.array(idx, pa.int64()), "result": pa.array(res, pa.binary()),
                         "node": pa.array([node] * len(idx), pa.string())})


class RayEngine(Engine):
    name = "ray"

    def __init__(self, workers: int = 2, address: str | None = None, cpus_per_task: float = 1.0):
        super().__init__(workers)
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.nodes: set[str] = set()  # Ray node ids that ran at least one task

    def nodes_used(self) -> list[str]:
        return sorted(self.nodes)

    def start(self) -> None:
        """Connect/start Ray, then warm `workers` worker processes (they import the stage
        modules once), so the first stage's seconds are the stage's own work."""
        ray = ensure_ray(self.address)
        warm = ray.remote(num_cpus=self.cpus_per_task)(_warm_worker)
        ray.get([warm.remote() for _ in range(self.workers)])

    def map(self, fn: Callable[[Task], Result], tasks: list[Task],
            on_result: OnResult | None = None) -> list[Result]:
        if not tasks:
            return []
        ray = ensure_ray(self.address)
        items = pa.table({"i": pa.array(range(len(tasks)), pa.int64()),
                          "task": pa.array([pack(t) for t in tasks], pa.binary())})
        ds = ray.data.from_arrow(items).repartition(len(tasks))
        ds = ds.map_batches(_Apply(fn), batch_size=1, batch_format="pyarrow",
                            compute=ray.data.TaskPoolStrategy(size=min(self.workers, len(tasks))),
                            num_cpus=self.cpus_per_task)
        out: dict[int, object] = {}
        rows = iter(ds.iter_rows())
        try:
            for row in rows:
                self.nodes.add(row["node"])
                r = unpack(row["result"])
                out[int(row["i"])] = r
                if on_result:
                    on_result(int(row["i"]), r)
        finally:
            # a failure here (a task's error, on_result raising) ends the dataset's executor
            # now, not when the generator is garbage-collected: a long-lived driver (a job
            # that runs many stages, a notebook) keeps no executor of a failed stage alive
            close = getattr(rows, "close", None)
            if close is not None:
                close()
        return [out[i] for i in range(len(tasks))]
