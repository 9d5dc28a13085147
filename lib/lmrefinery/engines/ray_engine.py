"""Ray executor: each task is one Ray task (`num_cpus=cpus_per_task`, spread over
the cluster's nodes), with at most `workers` in flight; results come back in task
order. A task whose worker process dies is retried by Ray (`max_retries`); the
part it was writing commits atomically, so a retry rewrites it whole.

Plain tasks, not Ray Data: a round is a handful of coarse tasks (one per part), so
Ray Data's planner, repartition and per-operator reservations bought nothing and
cost about a second per round (see the README's design section)."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .base import Engine, OnResult, Result, Task, call_task, pack, unpack, warm_worker


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


TASK_RETRIES = 3  # re-runs of a task whose worker process died (not of a task that raised)


def _run_one(fn: bytes, task: bytes) -> tuple[bytes, str]:
    """Worker side: one task, plus the id of the node that ran it. The round's function
    travels as cloudpickle bytes like the task, as on the other engines."""
    import ray

    return call_task(unpack(fn), task), ray.get_runtime_context().get_node_id()


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
        warm = ray.remote(num_cpus=self.cpus_per_task)(warm_worker)
        ray.get([warm.remote() for _ in range(self.workers)])

    def map(self, fn: Callable[[Task], Result], tasks: list[Task],
            on_result: OnResult | None = None) -> list[Result]:
        """At most `workers` tasks in flight (a window refilled as each finishes); results
        are handed to ``on_result`` in task order, as they become available in that order."""
        if not tasks:
            return []
        ray = ensure_ray(self.address)
        remote = ray.remote(num_cpus=self.cpus_per_task, scheduling_strategy="SPREAD",
                            max_retries=TASK_RETRIES)(_run_one)
        fn_ref = ray.put(pack(fn))
        pending: dict[Any, int] = {}
        done: dict[int, Result] = {}
        out: list[Result] = []
        nxt = 0
        try:
            while len(out) < len(tasks):
                while nxt < len(tasks) and len(pending) < self.workers:
                    pending[remote.remote(fn_ref, pack(tasks[nxt]))] = nxt
                    nxt += 1
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    data, node = ray.get(ref)
                    self.nodes.add(node)
                    done[pending.pop(ref)] = unpack(data)
                while len(out) in done:
                    r = done.pop(len(out))
                    if on_result:
                        on_result(len(out), r)
                    out.append(r)
        except Exception:
            # A failed round lets what it had in flight finish (at most workers - 1 tasks)
            # before it raises. Not ray.cancel: in Ray 2.60 cancelling a task that is just
            # completing can fail a check in the driver's task manager and end the driver
            # process (a full test run died that way).
            if pending:
                ray.wait(list(pending), num_returns=len(pending))
            raise
        return out
