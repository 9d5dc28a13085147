"""The Ray engine runs a round as plain Ray tasks: at most `workers` at once, results
and `on_result` calls in task order even when tasks finish out of order, a task
whose worker process dies is run again, and a task that raises fails the round
with its own exception type. Overlap is read from the intervals the tasks
recorded, never from wall time."""
from __future__ import annotations

import os
import sys
import tempfile
import time

import pytest

from lmrefinery.engines.ray_engine import RayEngine
from test_spark_engine import _max_running


def _probe(task: dict) -> dict:
    start = time.time()
    time.sleep(task["sleep"])
    return {"i": task["i"], "pid": os.getpid(), "start": start, "end": time.time()}


def _die_once(task: dict) -> int:
    """Kill this worker process the first time (a marker file records it), succeed after."""
    if not os.path.exists(task["marker"]):
        open(task["marker"], "w").close()
        os._exit(1)
    return task["i"] * 10


def _raise(task: dict) -> int:
    if task["i"] == 2:
        raise ValueError(f"bad part {task['i']}")
    return task["i"]


@pytest.fixture(scope="module")
def by_value(ray_cluster):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    cloudpickle.register_pickle_by_value(sys.modules["test_spark_engine"])
    yield ray_cluster


def test_window_order_and_callbacks(by_value):
    engine = RayEngine(workers=2)
    # the first task is the slowest: later ones finish first, yet come back in order
    tasks = [{"i": i, "sleep": 1.2 if i == 0 else 0.2} for i in range(6)]
    seen: list[int] = []
    res = engine.map(_probe, tasks, on_result=lambda i, r: seen.append(i))
    assert [r["i"] for r in res] == list(range(6))
    assert seen == list(range(6))                       # on_result in task order
    assert _max_running([(r["start"], r["end"]) for r in res]) == 2
    assert res[1]["end"] < res[0]["end"]                 # really finished out of order
    assert engine.nodes_used()


def test_dead_worker_task_is_retried(by_value):
    with tempfile.TemporaryDirectory() as d:
        tasks = [{"i": i, "marker": os.path.join(d, f"m{i}")} for i in range(3)]
        assert RayEngine(workers=2).map(_die_once, tasks) == [0, 10, 20]


def test_task_error_keeps_its_type(by_value):
    engine = RayEngine(workers=2)
    # repeated: the round used to ray.cancel what it had in flight, and a cancel racing a
    # completing task failed a check inside Ray and ended this (the driver's) process
    for _ in range(5):
        with pytest.raises(ValueError, match="bad part 2"):
            engine.map(_raise, [{"i": i} for i in range(8)])
    assert engine.map(_raise, [{"i": i} for i in (0, 1, 3)]) == [0, 1, 3]  # the driver goes on
