"""Setting up one training worker (a Ray Train worker, or the calling process with
``trainer.backend: local``): device and precision, the model (wrapped for DDP or sharded
with FSDP2, optionally compiled) and its AdamW optimizer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import TrainerSpec, TrainRecipe


@dataclass
class Worker:
    """Everything the step, evaluation and checkpoint helpers need on this rank."""
    recipe: TrainRecipe
    session: Any             # train/session.py: RaySession or LocalSession
    rank: int
    world: int
    device: Any              # torch.device
    use_cuda: bool
    amp_dtype: Any           # torch.bfloat16 or None (fp32)
    model: Any               # the model as trained: DDP-wrapped or FSDP2-sharded when distributed
    fwd: Any                 # what the forward pass calls: ``model``, or it through torch.compile
    opt: Any                 # torch.optim.AdamW
    counts: dict[str, int]   # parameter counts (logged at start)
    flops_per_token: float
    peak_flops: float | None

    @property
    def trainer(self) -> TrainerSpec:
        return self.recipe.trainer

    @property
    def doc_mask(self) -> bool:
        return self.recipe.data.doc_mask

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step over all ranks."""
        return self.trainer.micro_batch_size * self.trainer.grad_accum * self.world


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only (not on norms, biases or vectors)."""
    decay: list[Any] = []
    no_decay: list[Any] = []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in n or n.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


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


def _device(t: TrainerSpec, session: Any) -> tuple[Any, bool]:
    import torch

    if t.use_gpu and torch.cuda.is_available():
        device = session.cuda_device()
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        set_sdpa_backend(t.sdpa_backend)
        return device, True
    torch.set_num_threads(max(1, int(t.torch_threads or t.cpus_per_worker)))
    return torch.device("cpu"), False


def _distribute(model: Any, t: TrainerSpec, world: int, device: Any, use_cuda: bool, amp_dtype: Any) -> Any:
    """DDP across ranks, or FSDP2 (``fully_shard`` per decoder layer, then the whole model)."""
    import torch

    if world == 1 and t.strategy != "fsdp":
        return model
    if t.strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=amp_dtype or torch.float32, reduce_dtype=torch.float32)
        for layer in model.model.layers:
            fully_shard(layer, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if use_cuda else None)


def setup_worker(recipe: TrainRecipe, session: Any) -> Worker:
    import torch

    from .export import load_tokenizer, special_ids
    from .mfu import device_name, peak_flops
    from .model import build_model, flops_per_token, matmul_params, param_counts, use_causal_sdpa

    t = recipe.trainer
    rank, world = session.rank_world()
    device, use_cuda = _device(t, session)
    amp_dtype = torch.bfloat16 if (t.precision == "bf16" or (t.precision == "auto" and use_cuda)) else None
    tok = load_tokenizer(recipe.tokenizer, recipe.chat_template)
    raw = build_model(recipe.model.init, recipe.model.preset, len(tok), recipe.model.overrides,
                      special=special_ids(tok), attn_implementation=recipe.model.attn_implementation, seed=t.seed)
    if not recipe.data.doc_mask:
        use_causal_sdpa(raw)  # no mask tensor: flash/cuDNN attention also under torch.compile
    counts = param_counts(raw)
    fpt = flops_per_token(raw.config, recipe.data.seq_len, matmul_params(raw.config))
    raw.to(device)
    model = _distribute(raw, t, world, device, use_cuda, amp_dtype)
    opt = torch.optim.AdamW(param_groups(raw if t.strategy == "ddp" else model, t.weight_decay),
                            lr=t.lr, betas=(t.betas[0], t.betas[1]), eps=1e-8,
                            fused=bool(use_cuda), foreach=None if use_cuda else False)
    peak = t.peak_flops or peak_flops(device_name() if use_cuda else None, "bf16" if amp_dtype else "fp32")
    return Worker(recipe=recipe, session=session, rank=rank, world=world, device=device, use_cuda=use_cuda,
                  amp_dtype=amp_dtype, model=model, fwd=torch.compile(model) if t.compile else model, opt=opt,
                  counts=counts, flops_per_token=fpt, peak_flops=peak)
