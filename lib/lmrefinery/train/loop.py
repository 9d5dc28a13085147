"""The per-worker training function run by Ray Train's ``TorchTrainer``.

One function serves pretraining and instruction tuning: the difference is the
data (instruction shards carry a loss mask, so only assistant tokens are targets)
and the starting weights. Every checkpoint holds model + optimizer + scheduler +
the consumed-sample count, so a restart (re-running the command, or Ray restarting
the worker group after a failure) continues exactly where the last checkpoint was.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time

import numpy as np

from .files import STATE_FILE, read_state_file, upload_dir

BEST_DIR = "best_checkpoint"
TRAINER_STATE = "trainer_state.json"


def lr_at(step: int, t) -> float:
    """Linear warm-up to ``lr`` then cosine decay to ``lr * min_lr_ratio`` at ``max_steps``.
    ``step`` counts optimizer steps already taken (0 for the first)."""
    if t.warmup_steps and step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    span = max(1, t.max_steps - t.warmup_steps)
    p = min(1.0, (step - t.warmup_steps) / span)
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in n or n.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _batch_fingerprint(ids: np.ndarray) -> int:
    """An order-sensitive integer summary of a micro-batch (logged so tests and people
    can check that a resumed run saw the same data in the same order)."""
    w = (np.arange(ids.size, dtype=np.int64) % 1009) + 1
    return int((ids.reshape(-1).astype(np.int64) * w).sum() % 1_000_000_007)


def train_loop(config: dict) -> None:
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train import Checkpoint

    from ..core import storage
    from . import data as tdata
    from .config import TrainRecipe
    from .export import load_tokenizer, special_ids
    from .metrics import MetricsWriter
    from .mfu import device_name, mfu, peak_flops
    from .model import build_model, flops_per_token, matmul_params, param_counts, use_causal_sdpa

    recipe = TrainRecipe(**config["recipe"])
    t = recipe.trainer
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    use_cuda = t.use_gpu and torch.cuda.is_available()
    if use_cuda:
        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        set_sdpa_backend(t.sdpa_backend)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, int(t.torch_threads or t.cpus_per_worker)))
    amp_dtype = torch.bfloat16 if (t.precision == "bf16" or (t.precision == "auto" and use_cuda)) else None

    tok = load_tokenizer(recipe.tokenizer, recipe.chat_template)
    vocab = len(tok)
    model = build_model(recipe.model.init, recipe.model.preset, vocab, recipe.model.overrides,
                        special=special_ids(tok), attn_implementation=recipe.model.attn_implementation,
                        seed=t.seed)
    if not recipe.data.doc_mask:
        use_causal_sdpa(model)  # no mask tensor: flash/cuDNN attention also under torch.compile
    counts = param_counts(model)
    fpt = flops_per_token(model.config, recipe.data.seq_len, matmul_params(model.config))
    model.to(device)
    raw_model = model
    if world > 1 or t.strategy == "fsdp":
        if t.strategy == "fsdp":
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            mp = MixedPrecisionPolicy(param_dtype=amp_dtype or torch.float32, reduce_dtype=torch.float32)
            for layer in model.model.layers:
                fully_shard(layer, mp_policy=mp)
            fully_shard(model, mp_policy=mp)
        else:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(model, device_ids=[device.index] if use_cuda else None)
    fwd = torch.compile(model) if t.compile else model

    opt = torch.optim.AdamW(_param_groups(raw_model if t.strategy == "ddp" else model, t.weight_decay),
                            lr=t.lr, betas=tuple(t.betas), eps=1e-8,
                            fused=bool(use_cuda), foreach=None if use_cuda else False)

    state = {"step": 0, "consumed_samples": 0, "best_val_loss": None, "tokens": 0}
    resumed_from = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            _load_state(d, model, opt, t.strategy)
            with open(os.path.join(d, TRAINER_STATE)) as f:
                state.update(json.load(f))
        resumed_from = state["step"]

    global_batch = t.micro_batch_size * t.grad_accum * world
    stream = tdata.TrainStream(recipe, rank=rank, world=world, consumed_samples=state["consumed_samples"])
    valid = tdata.valid_batches(recipe, rank=rank, world=world)
    run_dir = recipe.run_dir
    writer = MetricsWriter(recipe, rank == 0, resume_step=state["step"])
    if rank == 0:
        writer.meta({"event": "start", "resumed_from_step": resumed_from, "world_size": world,
                     "params": counts, "flops_per_token": fpt, "device": device_name(),
                     "global_batch_sequences": global_batch, "seq_len": recipe.data.seq_len,
                     "epoch_samples": stream.epoch_samples, "max_steps": t.max_steps,
                     "tokens_per_step": global_batch * recipe.data.seq_len, "tokens_budget": t.tokens})
    peak = t.peak_flops or peak_flops(device_name() if use_cuda else None, "bf16" if amp_dtype else "fp32")
    n_dev = world

    def evaluate() -> float | None:
        if not valid:
            return None
        fwd.eval()
        tot = torch.zeros(2, dtype=torch.float64, device=device)
        with torch.no_grad():
            for b in valid[: t.eval_batches]:
                loss_sum, n = _loss(fwd, b, device, amp_dtype, recipe.data.doc_mask, t.compile)
                tot[0] += loss_sum.double()
                tot[1] += n
        if world > 1:
            dist.all_reduce(tot)
        fwd.train()
        return float(tot[0] / tot[1].clamp(min=1))

    def save_and_report(metrics: dict, val: float | None) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        msd, osd = get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        ckdir = None
        if rank == 0:
            ckdir = tempfile.mkdtemp(prefix="lmr-ckpt-")
            torch.save({"model": msd, "optim": osd}, os.path.join(ckdir, STATE_FILE))
            with open(os.path.join(ckdir, TRAINER_STATE), "w") as f:
                json.dump(state, f)
            if val is not None and state.get("best_step") == state["step"]:
                # the best-by-validation weights survive checkpoint rotation (keep_last)

                best = tempfile.mkdtemp(prefix="lmr-best-")
                torch.save({"model": msd}, os.path.join(best, STATE_FILE))
                with open(os.path.join(best, TRAINER_STATE), "w") as f:
                    json.dump(state, f)
                upload_dir(best, storage.join(run_dir, BEST_DIR))
                shutil.rmtree(best, ignore_errors=True)
            writer.flush()
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(ckdir) if ckdir else None,
                         checkpoint_dir_name=f"checkpoint_{state['step']:07d}")
        if ckdir:
            shutil.rmtree(ckdir, ignore_errors=True)

    model.train()
    win = {"loss": 0.0, "n": 0, "tokens": 0, "time": 0.0, "fp": 0}
    last_val = None
    # testing aid: fail once per run folder (a marker records that the failure happened)
    fail_marker = storage.join(run_dir, "_injected_failure")
    fail_armed = t.fail_at_step is not None and (resumed_from or 0) < t.fail_at_step \
        and not storage.exists(fail_marker)
    while state["step"] < t.max_steps:
        step = state["step"]
        t0 = time.perf_counter()
        lr = lr_at(step, t)
        for g in opt.param_groups:
            g["lr"] = lr
        micro = [stream.next_batch() for _ in range(t.grad_accum)]
        n_tgt = torch.tensor([float(sum(int((m["targets"] != -100).sum()) for m in micro))],
                             dtype=torch.float64, device=device)
        if world > 1:
            dist.all_reduce(n_tgt)
        denom = float(n_tgt.item()) / world  # DDP averages gradients over ranks
        step_loss = torch.zeros((), dtype=torch.float64, device=device)
        for i, m in enumerate(micro):
            sync = i == len(micro) - 1
            if world > 1 and t.strategy == "ddp" and not sync:
                with model.no_sync():
                    loss_sum, _ = _loss(fwd, m, device, amp_dtype, recipe.data.doc_mask, t.compile)
                    (loss_sum / denom).backward()
            else:
                if t.strategy == "fsdp" and hasattr(model, "set_requires_gradient_sync"):
                    model.set_requires_gradient_sync(sync)
                loss_sum, _ = _loss(fwd, m, device, amp_dtype, recipe.data.doc_mask, t.compile)
                (loss_sum / denom).backward()
            step_loss += loss_sum.detach().double()
            win["fp"] = (win["fp"] * 31 + _batch_fingerprint(m["input_ids"])) % 1_000_000_007
        if t.grad_clip > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        else:
            gnorm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
        if hasattr(gnorm, "full_tensor"):  # FSDP2: a DTensor
            gnorm = gnorm.full_tensor()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if world > 1:
            dist.all_reduce(step_loss)
        if use_cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        state["step"] = step + 1
        state["consumed_samples"] += global_batch
        state["tokens"] += global_batch * recipe.data.seq_len
        win["loss"] += float(step_loss.item()) / float(n_tgt.item())
        win["n"] += 1
        win["tokens"] += global_batch * recipe.data.seq_len
        win["time"] += dt
        s = state["step"]

        if fail_armed and s == t.fail_at_step and rank == world - 1:
            storage.write_bytes(fail_marker, f"step {s}\n".encode())
            raise RuntimeError(f"injected failure at step {s} (trainer.fail_at_step)")

        do_eval = s % t.eval_every == 0 or s == t.max_steps
        do_ckpt = s % t.checkpoint_every == 0 or s == t.max_steps or s == t.stop_at_step
        if s % t.log_every == 0 or do_eval or do_ckpt:
            fps = torch.tensor([win["fp"]], dtype=torch.int64, device=device)
            if world > 1:
                all_fp = [torch.zeros_like(fps) for _ in range(world)]
                dist.all_gather(all_fp, fps)
                fp = int(sum(int(x.item()) * (r + 1) for r, x in enumerate(all_fp)) % 1_000_000_007)
            else:
                fp = int(fps.item())
            tps = win["tokens"] / max(win["time"], 1e-9)
            row = {"step": s, "loss": round(win["loss"] / max(win["n"], 1), 6), "lr": lr,
                   "grad_norm": round(float(gnorm), 6), "tokens_per_s": round(tps, 1),
                   "mfu": (round(v, 4) if (v := mfu(fpt, tps, n_dev, peak)) is not None else None),
                   "consumed_samples": state["consumed_samples"], "tokens": state["tokens"],
                   "data_fingerprint": fp}
            if do_eval:
                last_val = evaluate()
                if last_val is not None:
                    row["val_loss"] = round(last_val, 6)
                    row["val_ppl"] = round(math.exp(min(last_val, 50)), 4)
                    if state["best_val_loss"] is None or last_val < state["best_val_loss"]:
                        state["best_val_loss"] = last_val
                        state["best_step"] = s
            if rank == 0:
                writer.log(row)
            win = {"loss": 0.0, "n": 0, "tokens": 0, "time": 0.0, "fp": 0}
        else:
            row = None
        if do_ckpt:
            metrics = {"step": s, "consumed_samples": state["consumed_samples"],
                       "loss": row["loss"] if row else None}
            if row and "val_loss" in row:
                metrics["val_loss"] = row["val_loss"]
            if state.get("best_val_loss") is not None:
                metrics["best_val_loss"] = state["best_val_loss"]
                metrics["best_step"] = state.get("best_step")
            save_and_report(metrics, last_val)
            if t.stop_at_step is not None and s >= t.stop_at_step and s < t.max_steps:
                if rank == 0:
                    writer.meta({"event": "stopped", "step": s})
                    writer.close()
                return
    if rank == 0:
        writer.meta({"event": "finished", "step": state["step"], "best_val_loss": state.get("best_val_loss")})
        writer.close()


def _ce_sum(logits, tgt):
    """Summed cross-entropy in fp32 over (bf16 or fp32) logits, ignoring -100 targets."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                           ignore_index=-100, reduction="sum")


_COMPILED_CE = {}


def _compiled_ce():
    """``_ce_sum`` through torch.compile: the fp32 upcast, log-sum-exp and the gradient
    (softmax - one-hot, written straight back in the logits' dtype) become a few fused
    kernels instead of eager CE's full-size fp32 copies of the logits (32k vocabulary:
    4 bytes x 32000 per token, several times over in forward and backward)."""
    if "fn" not in _COMPILED_CE:
        import torch

        _COMPILED_CE["fn"] = torch.compile(_ce_sum)
    return _COMPILED_CE["fn"]


def set_sdpa_backend(name: str | None) -> None:
    """Restrict PyTorch's SDPA to one backend ("cudnn", "flash", "efficient", "math");
    None or "auto" leaves PyTorch's choice (flash attention 2 on an H100). Call before
    torch.compile traces the model: the choice is baked into the compiled graph."""
    import torch

    if name in (None, "auto"):
        return
    b = torch.backends.cuda
    b.enable_cudnn_sdp(name == "cudnn")
    b.enable_flash_sdp(name == "flash")
    b.enable_mem_efficient_sdp(name == "efficient")
    b.enable_math_sdp(name in ("math", "cudnn"))  # math: fallback where cuDNN rejects a shape


def _loss(fwd, b: dict, device, amp_dtype, doc_mask: bool, compiled_ce: bool = False):
    """Summed next-token cross-entropy over target positions, and the target count.
    ``compiled_ce``: the cross-entropy through torch.compile (same value, fewer bytes moved)."""
    import torch

    ids = torch.as_tensor(b["input_ids"], dtype=torch.long, device=device)
    tgt_host = torch.as_tensor(b["targets"], dtype=torch.long)
    n_tgt = int((tgt_host != -100).sum())  # counted on the host: no device sync mid-step
    tgt = tgt_host.to(device)
    pos = torch.as_tensor(b["position_ids"], dtype=torch.long, device=device) if doc_mask else None
    ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else _null()
    with ctx:
        logits = fwd(input_ids=ids, position_ids=pos, use_cache=False).logits
    loss_sum = (_compiled_ce() if compiled_ce else _ce_sum)(logits, tgt)
    return loss_sum, n_tgt


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _load_state(d: str, model, opt, strategy: str) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    blob = read_state_file(d)
    set_state_dict(model, opt, model_state_dict=blob["model"], optim_state_dict=blob["optim"],
                   options=StateDictOptions(full_state_dict=True))
