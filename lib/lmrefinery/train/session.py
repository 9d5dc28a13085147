"""Where a training worker runs, and who keeps its checkpoints.

``trainer.backend: ray`` (the default): Ray Train starts one process per worker, places
them on the cluster (GPUs included), restarts the group from the last checkpoint after a
failure and keeps the checkpoints. ``local``: one worker in the calling process, no Ray
at all: a single-GPU box, a notebook, a machine where Ray is not installed. The training
loop is the same; it asks its session for four things only: its rank and world size, its
CUDA device, the checkpoint to resume from, and to keep a new checkpoint.

Both keep checkpoints in the same place, ``run_dir/checkpoint_NNNNNNN/``. The local
session commits one by writing ``local_checkpoints.json`` (an atomic write) after its
files are in place, so a crash while copying leaves the previous checkpoint current.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..core import storage
from .files import download_dir, upload_dir

LOCAL_INDEX = "local_checkpoints.json"


class RaySession:
    """A Ray Train worker (inside ``TorchTrainer``)."""

    def rank_world(self) -> tuple[int, int]:
        import ray.train

        ctx = ray.train.get_context()
        return ctx.get_world_rank(), ctx.get_world_size()

    def cuda_device(self) -> Any:
        import ray.train.torch

        return ray.train.torch.get_device()

    @contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as d:
            yield d

    def keep(self, metrics: dict[str, Any], folder: str | None, name: str) -> None:
        """Hand the checkpoint in ``folder`` (rank 0; None on other ranks) to Ray Train."""
        import ray.train
        from ray.train import Checkpoint

        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder) if folder else None,
                         checkpoint_dir_name=name)


class LocalSession:
    """The one worker of a ``backend: local`` run, in the calling process."""

    def __init__(self, run_dir: str, keep_last: int):
        self.run_dir = run_dir
        self.keep_last = keep_last

    def rank_world(self) -> tuple[int, int]:
        return 0, 1

    def cuda_device(self) -> Any:
        import torch

        return torch.device("cuda", torch.cuda.current_device())

    def committed(self) -> list[dict[str, Any]]:
        """The kept checkpoints, oldest first: ``{"name", "metrics"}``."""
        uri = storage.join(self.run_dir, LOCAL_INDEX)
        if not storage.exists(uri):
            return []
        return list(json.loads(storage.read_bytes(uri))["checkpoints"])

    def latest_uri(self) -> str | None:
        kept = self.committed()
        return storage.join(self.run_dir, kept[-1]["name"]) if kept else None

    @contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        import shutil

        uri = self.latest_uri()
        if uri is None:
            yield None
            return
        local = download_dir(uri)
        try:
            yield local
        finally:
            if local != uri:
                shutil.rmtree(local, ignore_errors=True)

    def keep(self, metrics: dict[str, Any], folder: str | None, name: str) -> None:
        assert folder is not None, "the local session is rank 0"
        upload_dir(folder, storage.join(self.run_dir, name))
        kept = [c for c in self.committed() if c["name"] != name] + [{"name": name, "metrics": metrics}]
        storage.write_bytes(storage.join(self.run_dir, LOCAL_INDEX),
                            json.dumps({"checkpoints": kept[-self.keep_last:]}, indent=1).encode())
        for old in kept[:-self.keep_last]:
            storage.delete_prefix(storage.join(self.run_dir, old["name"]) + "/")


def run_local(loop: Callable[[dict[str, Any]], None], config: dict[str, Any], session: LocalSession,
              max_failures: int) -> None:
    """Run the training loop in this process; after an exception, start it again from the
    latest checkpoint, at most ``max_failures`` times (what Ray Train's FailureConfig does
    for a worker group)."""
    failures = 0
    while True:
        try:
            loop(config | {"session": session})
            return
        except Exception as e:
            failures += 1
            if failures > max_failures:
                raise
            print(f"[train] the local worker failed ({type(e).__name__}: {e}); restarting from "
                  f"{session.latest_uri() or 'the start'} ({failures} of {max_failures} restarts)",
                  file=sys.stderr, flush=True)
