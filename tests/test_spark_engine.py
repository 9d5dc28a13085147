"""The Spark engine runs a map's tasks in parallel: on local[2], N tasks that
each record when they start and end show two of them running at the same time
(and never more than the two slots: the tasks are dealt into one partition per slot), results in
task order.
Overlap is read from the intervals the tasks recorded, never from wall time."""
from __future__ import annotations

import os
import sys
import time

from lmrefinery.engines.spark_engine import SparkEngine


def _probe(task: dict) -> dict:
    start = time.time()
    time.sleep(task["sleep"])
    return {"i": task["i"], "pid": os.getpid(), "start": start, "end": time.time()}


def _max_running(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (an end before a start at the same time)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def test_tasks_overlap_on_two_slots(spark):
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    engine = SparkEngine(workers=2, master="local[2]")
    n = 6
    seen = []
    res = engine.map(_probe, [{"i": i, "sleep": 0.5} for i in range(n)], on_result=lambda i, r: seen.append(i))
    assert [r["i"] for r in res] == list(range(n))
    assert sorted(seen) == list(range(n))
    assert _max_running([(r["start"], r["end"]) for r in res]) == 2
    assert len({r["pid"] for r in res}) == 2  # two Python workers took the tasks


def test_max_running_counts_overlaps():
    assert _max_running([(0, 1), (1, 2), (2, 3)]) == 1
    assert _max_running([(0, 2), (1, 3), (1.5, 1.8)]) == 3


def _gc_view(_: int) -> dict:
    import gc

    import lmrefinery.dedup.near.stage  # noqa: F401  (a stage module: imports if not yet there)

    return {"pid": os.getpid(), "frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}


def test_reused_workers_keep_imports_out_of_the_per_task_gc(spark):
    """pyspark's reused workers run a full gc.collect() after every task; the engine moves
    what a worker imported (and loaded) out of the collector's reach, so that collect walks
    only a task's own objects, not every module lmrefinery imported."""
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    engine = SparkEngine(workers=2, master="local[2]")
    engine.start()
    for _ in range(2):  # the second round runs in workers the first one already used
        views = engine.map(_gc_view, list(range(4)))
    for v in views:
        assert v["frozen"] > 50_000, v  # lmrefinery's imports are frozen ...
        assert v["tracked"] < v["frozen"] / 4, v  # ... and the collector sees a small rest


def _import_a_module(_: int) -> int:
    import lmrefinery.instruct.split  # noqa: F401  (not imported by the stages' warm-up)

    return len(sys.modules)


def test_local_engine_never_freezes_the_callers_objects():
    """The freeze is for engine workers; the local engine runs tasks in the user's own
    process, whose objects must stay collectable."""
    import gc

    from lmrefinery.engines.base import LocalEngine

    sys.modules.pop("lmrefinery.instruct.split", None)
    before = gc.get_freeze_count()
    LocalEngine().map(_import_a_module, [0, 1])
    assert gc.get_freeze_count() == before
