"""Executors. An engine runs a list of independent tasks (one per shard, or
per shuffle bucket) with a picklable function and returns the results in task
order. The row-level work happens inside the function, on Arrow batches, so
both engines run literally the same code and write the same files."""
from .base import Engine, LocalEngine

__all__ = ["Engine", "LocalEngine", "get_engine"]


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

