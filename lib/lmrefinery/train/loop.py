"""The per-worker training function: run by Ray Train's ``TorchTrainer``, or in the
calling process with ``trainer.backend: local`` (``config["session"]``, see ``session.py``).

One function serves pretraining and instruction tuning: the difference is the
data (instruction shards carry a loss mask, so only assistant tokens are targets)
and the starting weights. Every checkpoint holds model + optimizer + scheduler +
the consumed-sample count, so a restart (re-running the command, or Ray restarting
the worker group after a failure) continues exactly where the last checkpoint was.

The pieces live next to this file: ``worker`` (setup), ``step`` (one optimizer step),
``evallog`` (validation and the logged row), ``checkpoint`` (state, save, restore).
"""
from __future__ import annotations

from typing import Any

from .callbacks import StepEnd
from .checkpoint import report_metrics, restore, save_and_report
from .config import TrainRecipe
from .data import TrainStream, valid_batches
from .evallog import Window, add_validation, evaluate, metrics_row
from .metrics import MetricsWriter
from .mfu import device_name
from .step import train_step
from .worker import setup_worker


def train_loop(config: dict[str, Any]) -> None:
    recipe = TrainRecipe(**config["recipe"])
    callbacks = config.get("callbacks") or ()
    t, seq_len = recipe.trainer, recipe.data.seq_len
    session = config.get("session")
    if session is None:
        from .session import RaySession

        session = RaySession()
    w = setup_worker(recipe, session)
    state, resumed_from = restore(w)
    stream = TrainStream(recipe, rank=w.rank, world=w.world, consumed_samples=state.consumed_samples)
    valid = valid_batches(recipe, rank=w.rank, world=w.world)
    writer = MetricsWriter(recipe, w.rank == 0, resume_step=state.step)
    if w.rank == 0:
        writer.meta({"event": "start", "resumed_from_step": resumed_from, "world_size": w.world,
                     "params": w.counts, "flops_per_token": w.flops_per_token, "device": device_name(),
                     "global_batch_sequences": w.global_batch, "seq_len": seq_len,
                     "epoch_samples": stream.epoch_samples, "max_steps": t.max_steps,
                     "tokens_per_step": w.global_batch * seq_len, "tokens_budget": t.tokens})
        writer.flush()  # a start is on record even if this attempt fails before its first checkpoint
    w.model.train()
    win, last_val = Window(), None
    while state.step < t.max_steps:
        out = train_step(w, stream, state.step, win.fingerprint)
        state.advance(w.global_batch, seq_len)
        win.add(out, w.global_batch * seq_len)
        s = state.step
        for cb in callbacks:
            cb.on_step_end(StepEnd(step=s, rank=w.rank, world=w.world, resumed_from=resumed_from,
                                   run_dir=recipe.run_dir))
        do_eval = s % t.eval_every == 0 or s == t.max_steps
        do_ckpt = s % t.checkpoint_every == 0 or s == t.max_steps or s == t.stop_at_step
        row = None
        if s % t.log_every == 0 or do_eval or do_ckpt:
            row = metrics_row(w, state, out, win)
            if do_eval:
                last_val = evaluate(w, valid)
                add_validation(row, state, last_val)
            if w.rank == 0:
                writer.log(row)
            win = Window()
        if do_ckpt:
            save_and_report(w, state, report_metrics(state, row), last_val, writer)
            if t.stop_at_step is not None and t.stop_at_step <= s < t.max_steps:
                if w.rank == 0:
                    writer.meta({"event": "stopped", "step": s})
                    writer.close()
                return
    if w.rank == 0:
        writer.meta({"event": "finished", "step": state.step, "best_val_loss": state.best_val_loss})
        writer.close()
