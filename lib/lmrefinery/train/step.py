"""One optimizer step: the learning-rate schedule, the loss of a micro-batch, and
gradient accumulation over ``grad_accum`` micro-batches (DDP skips the gradient
all-reduce until the last one, FSDP2 is told the same)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import TrainerSpec
from .worker import Worker

FINGERPRINT_MOD = 1_000_000_007


def lr_at(step: int, t: TrainerSpec) -> float:
    """Linear warm-up to ``lr`` then cosine decay to ``lr * min_lr_ratio`` at ``max_steps``.
    ``step`` counts optimizer steps already taken (0 for the first)."""
    if t.warmup_steps and step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    span = max(1, t.max_steps - t.warmup_steps)
    p = min(1.0, (step - t.warmup_steps) / span)
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def batch_fingerprint(ids: np.ndarray) -> int:
    """An order-sensitive integer summary of a micro-batch (logged so tests and people
    can check that a resumed run saw the same data in the same order)."""
    w = (np.arange(ids.size, dtype=np.int64) % 1009) + 1
    return int((ids.reshape(-1).astype(np.int64) * w).sum() % FINGERPRINT_MOD)


def _ce_sum(logits: Any, tgt: Any) -> Any:
    """Summed cross-entropy in fp32 over (bf16 or fp32) logits, ignoring -100 targets."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                           ignore_index=-100, reduction="sum")


_COMPILED_CE: dict[str, Any] = {}


def _compiled_ce() -> Any:
    """``_ce_sum`` through torch.compile: the fp32 upcast, log-sum-exp and the gradient
    (softmax - one-hot, written straight back in the logits' dtype) become a few fused
    kernels instead of eager CE's full-size fp32 copies of the logits (32k vocabulary:
    4 bytes x 32000 per token, several times over in forward and backward)."""
    if "fn" not in _COMPILED_CE:
        import torch

        _COMPILED_CE["fn"] = torch.compile(_ce_sum)
    return _COMPILED_CE["fn"]


def batch_loss(fwd: Any, b: dict[str, Any], device: Any, amp_dtype: Any, doc_mask: bool,
               compiled_ce: bool = False) -> tuple[Any, int]:
    """Summed next-token cross-entropy over target positions, and the target count.
    ``compiled_ce``: the cross-entropy through torch.compile (same value, fewer bytes moved)."""
    import contextlib

    import torch

    ids = torch.as_tensor(b["input_ids"], dtype=torch.long, device=device)
    tgt_host = torch.as_tensor(b["targets"], dtype=torch.long)
    n_tgt = int((tgt_host != -100).sum())  # counted on the host: no device sync mid-step
    tgt = tgt_host.to(device)
    pos = torch.as_tensor(b["position_ids"], dtype=torch.long, device=device) if doc_mask else None
    ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    with ctx:
        logits = fwd(input_ids=ids, position_ids=pos, use_cache=False).logits
    loss_sum = (_compiled_ce() if compiled_ce else _ce_sum)(logits, tgt)
    return loss_sum, n_tgt


@dataclass(frozen=True)
class StepOutcome:
    """What one optimizer step measured (the mean loss is over all ranks' target tokens)."""
    lr: float
    loss: float          # token-weighted mean loss of the step
    grad_norm: float
    seconds: float
    fingerprint: int     # running data fingerprint of this rank, after the step's micro-batches


def train_step(w: Worker, stream: Any, step: int, fingerprint: int) -> StepOutcome:
    """Draw this rank's ``grad_accum`` micro-batches from ``stream``, forward/backward,
    clip, optimizer step. ``fingerprint`` the rank's running data fingerprint so far (in the logging window)."""
    import torch
    import torch.distributed as dist

    t, model = w.trainer, w.model
    t0 = time.perf_counter()
    lr = lr_at(step, t)
    for g in w.opt.param_groups:
        g["lr"] = lr
    micro = [stream.next_batch() for _ in range(t.grad_accum)]
    n_tgt = torch.tensor([float(sum(int((m["targets"] != -100).sum()) for m in micro))],
                         dtype=torch.float64, device=w.device)
    if w.world > 1:
        dist.all_reduce(n_tgt)
    denom = float(n_tgt.item()) / w.world  # DDP averages gradients over ranks
    step_loss = torch.zeros((), dtype=torch.float64, device=w.device)
    for i, m in enumerate(micro):
        sync = i == len(micro) - 1
        if w.world > 1 and t.strategy == "ddp" and not sync:
            with model.no_sync():
                loss_sum, _ = batch_loss(w.fwd, m, w.device, w.amp_dtype, w.doc_mask, t.compile)
                (loss_sum / denom).backward()
        else:
            if t.strategy == "fsdp" and hasattr(model, "set_requires_gradient_sync"):
                model.set_requires_gradient_sync(sync)
            loss_sum, _ = batch_loss(w.fwd, m, w.device, w.amp_dtype, w.doc_mask, t.compile)
            (loss_sum / denom).backward()
        step_loss += loss_sum.detach().double()
        fingerprint = (fingerprint * 31 + batch_fingerprint(m["input_ids"])) % FINGERPRINT_MOD
    gnorm = _clip_or_measure(model, t.grad_clip)
    w.opt.step()
    w.opt.zero_grad(set_to_none=True)
    if w.world > 1:
        dist.all_reduce(step_loss)
    if w.use_cuda:
        torch.cuda.synchronize()
    return StepOutcome(lr=lr, loss=float(step_loss.item()) / float(n_tgt.item()), grad_norm=float(gnorm),
                       seconds=time.perf_counter() - t0, fingerprint=fingerprint)


def _clip_or_measure(model: Any, grad_clip: float) -> Any:
    """The gradient norm (clipped to ``grad_clip`` when that is > 0), as a plain tensor."""
    import torch

    if grad_clip > 0:
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    else:
        gnorm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    if hasattr(gnorm, "full_tensor"):  # FSDP2: a DTensor
        gnorm = gnorm.full_tensor()
    return gnorm
