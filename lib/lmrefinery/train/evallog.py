"""Validation loss and the logged metrics row: step outcomes are summed over a
logging window (``log_every`` steps) and turned into one ``metrics.jsonl`` row."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .checkpoint import TrainState
from .mfu import mfu
from .step import FINGERPRINT_MOD, StepOutcome, batch_loss
from .worker import Worker


@dataclass
class Window:
    """Sums over the steps since the last logged row."""
    loss: float = 0.0
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    fingerprint: int = 0

    def add(self, out: StepOutcome, tokens: int) -> None:
        self.loss += out.loss
        self.steps += 1
        self.tokens += tokens
        self.seconds += out.seconds
        self.fingerprint = out.fingerprint


def evaluate(w: Worker, valid: list[dict[str, Any]]) -> float | None:
    """Mean validation loss per target token over all ranks (None without validation data)."""
    import torch
    import torch.distributed as dist

    if not valid:
        return None
    w.fwd.eval()
    tot = torch.zeros(2, dtype=torch.float64, device=w.device)
    with torch.no_grad():
        for b in valid[: w.trainer.eval_batches]:
            loss_sum, n = batch_loss(w.fwd, b, w.device, w.amp_dtype, w.doc_mask, w.trainer.compile)
            tot[0] += loss_sum.double()
            tot[1] += n
    if w.world > 1:
        dist.all_reduce(tot)
    w.fwd.train()
    return float(tot[0] / tot[1].clamp(min=1))


def _global_fingerprint(w: Worker, fp: int) -> int:
    """The ranks' window fingerprints combined in rank order (a collective)."""
    import torch
    import torch.distributed as dist

    fps = torch.tensor([fp], dtype=torch.int64, device=w.device)
    if w.world == 1:
        return int(fps.item())
    all_fp = [torch.zeros_like(fps) for _ in range(w.world)]
    dist.all_gather(all_fp, fps)
    return int(sum(int(x.item()) * (r + 1) for r, x in enumerate(all_fp)) % FINGERPRINT_MOD)


def metrics_row(w: Worker, state: TrainState, out: StepOutcome, win: Window) -> dict[str, Any]:
    """The logged row for the window ending at ``state.step`` (a collective: every rank calls it)."""
    tps = win.tokens / max(win.seconds, 1e-9)
    util = mfu(w.flops_per_token, tps, w.world, w.peak_flops)
    return {"step": state.step, "loss": round(win.loss / max(win.steps, 1), 6), "lr": out.lr,
            "grad_norm": round(out.grad_norm, 6), "tokens_per_s": round(tps, 1),
            "mfu": round(util, 4) if util is not None else None,
            "consumed_samples": state.consumed_samples, "tokens": state.tokens,
            "data_fingerprint": _global_fingerprint(w, win.fingerprint)}


def add_validation(row: dict[str, Any], state: TrainState, val: float | None) -> None:
    """Validation loss/perplexity into the row, and the best one so far into the state."""
    if val is None:
        return
    row["val_loss"] = round(val, 6)
    row["val_ppl"] = round(math.exp(min(val, 50)), 4)
    state.record_val(val)
