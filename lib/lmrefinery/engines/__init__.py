"""Executors. An engine runs a list of independent tasks (one per shard, or
per shuffle bucket) with a picklable function and returns the results in task
order. The row-level work happens inside the function, on Arrow batches, so
both engines run literally the same code and write the same files."""
from .base import Engine, get_engine  # noqa: F401  (public API)
