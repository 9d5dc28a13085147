"""Spark executor: tasks become the elements of an RDD, one per partition, and a
plain `map` runs the same stage function in Spark's Python workers."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from .base import Engine, OnResult, Result, Task, call_task, pack, unpack, warm_worker

_spark: Any = None


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
    _spark = (SparkSession.builder.master(master).appName("lmrefinery")
              .config("spark.sql.execution.arrow.pyspark.enabled", "true")
              .config("spark.ui.enabled", "false")
              .config("spark.ui.showConsoleProgress", "false")  # the runner shows progress
              .config("spark.sql.shuffle.partitions", str(max(2, workers)))
              .config("spark.driver.memory", os.environ.get("LMR_SPARK_DRIVER_MEMORY", "2g"))
              .config("spark.python.worker.reuse", "true")
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
        spark = get_spark(self.master, self.workers)
        # One task per partition, sliced evenly (not a hash repartition that leaves some
        # partitions empty and others doubled), and one job over all of them (collect, not
        # toLocalIterator, which runs a job per partition: one task at a time). A plain RDD
        # map, not a DataFrame's mapInArrow: tasks and results are opaque bytes either way,
        # and the DataFrame path cost about three times as much per task (0.11 s against
        # 0.04 s on local[2]).
        packed = spark.sparkContext.parallelize([pack(t) for t in tasks], numSlices=len(tasks))
        results = packed.map(lambda task: call_task(fn, task)).collect()
        out: list[Result] = []
        for i, data in enumerate(results):
            r = unpack(data)
            out.append(r)
            if on_result:
                on_result(i, r)
        return out
