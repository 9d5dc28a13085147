"""Spark executor: a round's tasks are dealt round-robin into one RDD partition per
slot (task slot of the cluster, at least `workers`), and a plain `map` runs the same
stage function over each partition's tasks in Spark's Python workers."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from .base import Engine, OnResult, Result, Task, call_task, pack, unpack, warm_worker

_spark: Any = None

# Settings every lmrefinery Spark session gets, the ones it starts itself and (unless
# spark-submit already set them) the ones spark-submit starts: jobs/pipeline.py.
WORKER_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",
    # JVM <-> Python worker (and accumulator) traffic over Unix sockets: over local
    # TCP every Python task paid about 40 ms more (docs/scale.md, engines section).
    "spark.python.unix.domain.socket.enabled": str(os.name == "posix").lower(),
}
# Only for the local session lmrefinery starts itself.
LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",  # the runner shows progress
}


def get_spark(master: str = "local[*]", workers: int = 2) -> Any:
    global _spark
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if _spark is not None:
        return _spark
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName("lmrefinery")
    for key, value in {**WORKER_CONF, **LOCAL_CONF}.items():
        builder = builder.config(key, value)
    _spark = (builder.config("spark.sql.shuffle.partitions", str(max(2, workers)))
              .config("spark.driver.memory", os.environ.get("LMR_SPARK_DRIVER_MEMORY", "2g"))
              .getOrCreate())
    _spark.sparkContext.setLogLevel("ERROR")
    return _spark


class SparkEngine(Engine):
    name = "spark"

    def __init__(self, workers: int = 2, master: str = "local[*]"):
        super().__init__(workers)
        self.master = master

    def start(self) -> None:
        """Start the session, then one job over `workers` partitions so the Python
        workers are forked and have imported the stage modules (Spark reuses them):
        the first stage's seconds are then the stage's own work, as on Ray."""
        spark = get_spark(self.master, self.workers)
        spark.sparkContext.parallelize(range(self.workers), self.workers).map(warm_worker).collect()

    def map(self, fn: Callable[[Task], Result], tasks: list[Task],
            on_result: OnResult | None = None) -> list[Result]:
        if not tasks:
            return []
        sc = get_spark(self.master, self.workers).sparkContext
        # One Spark task per slot, each running its share of the round's tasks in turn
        # (dealt round-robin, so tasks of neighbouring sizes spread over the slots), and
        # one job over all of them (collect, not toLocalIterator, which runs a job per
        # partition). Not one Spark task per round task: each Spark task costs tens of ms
        # of scheduling and worker hand-off on local[2], where a global round's tasks are
        # often a few ms of work (8 such tasks took 0.35 s a round, 2 Spark tasks 0.1 s).
        # A failed Spark task reruns its whole share; every task commits atomically.
        # A plain RDD map, not a DataFrame's mapInArrow: tasks and results are opaque
        # bytes either way, and the DataFrame path cost about three times as much per task.
        n = min(len(tasks), max(self.workers, sc.defaultParallelism))
        groups = [[(i, pack(tasks[i])) for i in range(j, len(tasks), n)] for j in range(n)]
        done = sc.parallelize(groups, numSlices=n).map(lambda g: [(i, call_task(fn, t)) for i, t in g]).collect()
        results = [data for _, data in sorted((pair for g in done for pair in g), key=lambda p: p[0])]
        out: list[Result] = []
        for i, data in enumerate(results):
            r = unpack(data)
            out.append(r)
            if on_result:
                on_result(i, r)
        return out
