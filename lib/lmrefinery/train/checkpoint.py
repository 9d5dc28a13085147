"""Checkpoints of a training run: the trainer state that travels with them, restoring
from the session's latest checkpoint, and saving + keeping one (rank 0 writes it, the
session keeps it: Ray Train or the local session, see ``session.py``; the
best-by-validation weights are also copied to ``best_checkpoint/`` so they survive
``keep_last`` rotation)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from ..core import storage
from .files import STATE_FILE, read_state_file, upload_dir
from .worker import Worker

BEST_DIR = "best_checkpoint"
TRAINER_STATE = "trainer_state.json"


@dataclass
class TrainState:
    """Progress saved in every checkpoint (``trainer_state.json``)."""
    step: int = 0                 # optimizer steps taken
    consumed_samples: int = 0     # sequences consumed over all ranks (where the data stream resumes)
    best_val_loss: float | None = None
    tokens: int = 0
    best_step: int | None = None  # step of best_val_loss (absent from the file until there is one)

    def advance(self, global_batch: int, seq_len: int) -> None:
        self.step += 1
        self.consumed_samples += global_batch
        self.tokens += global_batch * seq_len

    def record_val(self, val: float) -> None:
        if self.best_val_loss is None or val < self.best_val_loss:
            self.best_val_loss = val
            self.best_step = self.step

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if d["best_step"] is None:
            del d["best_step"]
        return d


def restore(w: Worker) -> tuple[TrainState, int | None]:
    """Model and optimizer from the session's latest checkpoint, if any; the state and
    the step resumed from (None for a fresh start)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    with w.session.latest_checkpoint() as d:
        if d is None:
            return TrainState(), None
        blob = read_state_file(d)
        set_state_dict(w.model, w.opt, model_state_dict=blob["model"], optim_state_dict=blob["optim"],
                       options=StateDictOptions(full_state_dict=True))
        with open(os.path.join(d, TRAINER_STATE)) as f:
            state = TrainState(**json.load(f))
    return state, state.step


def _write(folder: str, blob: dict[str, Any], state: TrainState) -> None:
    import torch

    torch.save(blob, os.path.join(folder, STATE_FILE))
    with open(os.path.join(folder, TRAINER_STATE), "w") as f:
        json.dump(state.to_json(), f)


def save_and_report(w: Worker, state: TrainState, metrics: dict[str, Any], val: float | None, writer: Any) -> None:
    """Gather the full state dict (a collective: every rank calls this), write the
    checkpoint on rank 0 and hand it to the session with the metrics."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    msd, osd = get_state_dict(w.model, w.opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    ckdir = None
    if w.rank == 0:
        ckdir = tempfile.mkdtemp(prefix="lmr-ckpt-")
        _write(ckdir, {"model": msd, "optim": osd}, state)
        if val is not None and state.best_step == state.step:
            best = tempfile.mkdtemp(prefix="lmr-best-")
            _write(best, {"model": msd}, state)
            upload_dir(best, storage.join(w.recipe.run_dir, BEST_DIR))
            shutil.rmtree(best, ignore_errors=True)
        writer.flush()
    w.session.keep(metrics, ckdir, f"checkpoint_{state.step:07d}")
    if ckdir:
        shutil.rmtree(ckdir, ignore_errors=True)


def report_metrics(state: TrainState, row: dict[str, Any] | None) -> dict[str, Any]:
    """The metrics handed to the session with a checkpoint."""
    metrics: dict[str, Any] = {"step": state.step, "consumed_samples": state.consumed_samples,
                               "loss": row["loss"] if row else None}
    if row and "val_loss" in row:
        metrics["val_loss"] = row["val_loss"]
    if state.best_val_loss is not None:
        metrics["best_val_loss"] = state.best_val_loss
        metrics["best_step"] = state.best_step
    return metrics
