"""Spark executor: tasks become rows of a DataFrame and `mapInArrow` runs the
same stage function in the Python workers."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from .base import Engine, OnResult, Result, Task, call_task, pack, unpack

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
        get_spark(self.master, self.workers)

    def map(self, fn: Callable[[Task], Result], tasks: list[Task],
            on_result: OnResult | None = None) -> list[Result]:
        if not tasks:
            return []
        spark = get_spark(self.master, self.workers)
        # One task per partition, sliced evenly (parallelize, not a hash repartition that
        # leaves some partitions empty and others doubled), and one job over all of them
        # (collect, not toLocalIterator, which runs a job per partition: one task at a time).
        rows = spark.sparkContext.parallelize([(i, pack(t)) for i, t in enumerate(tasks)],
                                              numSlices=len(tasks))
        df = spark.createDataFrame(rows, "i long, task binary")

        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for b in batches:
                res = [call_task(fn, t) for t in b.column("task").to_pylist()]
                yield pa.RecordBatch.from_arrays([b.column("i"), pa.array(res, pa.binary())],
                                                 names=["i", "result"])

        out: dict[int, object] = {}
        for row in sorted(df.mapInArrow(run, "i long, result binary").collect(), key=lambda r: r["i"]):
            r = unpack(row["result"])
            out[int(row["i"])] = r
            if on_result:
                on_result(int(row["i"]), r)
        return [out[i] for i in range(len(tasks))]
