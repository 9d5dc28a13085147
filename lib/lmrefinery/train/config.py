"""Training recipes (``conf/train/*.yaml``): strict pydantic models, the same
``${VAR:-default}`` interpolation and ``--set a.b=c`` overrides as pipeline recipes."""
from __future__ import annotations

import math
import os
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from ..core.recipe import RecipeError, StrictModel, _fmt_validation, _interpolate, apply_overrides, read_mapping


class ModelSpec(StrictModel):
    preset: Literal["tiny", "125m", "350m", "1b"] = "tiny"
    init: str = "scratch"                    # "scratch" or an HF causal-LM directory
    overrides: dict[str, Any] = Field(default_factory=dict)   # LlamaConfig keys
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flex_attention"] = "sdpa"


class DataSpec(StrictModel):
    # A tokenize-stage output (its dataset.json, or the folder holding it; local or s3://),
    # or a list of shard prefixes (".../shard-00000" without .bin).
    train: str | list[str]
    train_split: str = "train"
    valid: str | list[str] | None = None     # default: the train source's `valid_split`, if it has one
    valid_split: str = "valid"
    seq_len: int = Field(128, ge=8)
    doc_mask: bool = True                    # block attention at document boundaries in packed rows
    shuffle: bool = True
    cache_dir: str | None = None             # local cache for s3:// shards (default: read ranges over HTTP)


class TrainerSpec(StrictModel):
    # ray: Ray Train workers (any number, GPUs, restarts); local: one worker in the calling
    # process, no Ray (a single-GPU box, a notebook, a machine without Ray); see train/session.py
    backend: Literal["ray", "local"] = "ray"
    workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    strategy: Literal["ddp", "fsdp"] = "ddp"
    precision: Literal["auto", "bf16", "fp32"] = "auto"   # auto: bf16 autocast on GPU, fp32 on CPU
    compile: bool = False                    # torch.compile the model and the cross-entropy
    sdpa_backend: Literal["auto", "cudnn", "flash", "efficient", "math"] = "auto"  # GPU attention kernel
    torch_threads: int | None = None         # CPU: threads per worker (default: cpus_per_worker)
    micro_batch_size: int = Field(8, ge=1)   # sequences per worker per micro-step
    grad_accum: int = Field(1, ge=1)
    max_steps: int = Field(100, ge=1)
    # train on this many tokens instead: max_steps = ceil(tokens / (micro_batch_size * grad_accum *
    # workers * data.seq_len)), set when the recipe loads (giving both is an error unless they agree)
    tokens: int | None = Field(None, ge=1)
    lr: float = Field(3e-4, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(10, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(1.0, ge=0)      # 0: off
    seed: int = 0
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(50, ge=1)
    eval_batches: int = Field(8, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    keep_last: int = Field(3, ge=1)
    # which weights model/ holds after the run: the last step's ("last"; the best-by-validation
    # ones go to model-best/) or the best-by-validation ones ("best"; the last step's go to model-last/)
    keep: Literal["last", "best"] = "last"
    max_failures: int = Field(2, ge=0)
    peak_flops: float | None = None          # per device; default: table in train/mfu.py
    stop_at_step: int | None = None          # end the run early (as if killed) after this step's checkpoint

    @model_validator(mode="after")
    def _local_is_one_worker(self) -> TrainerSpec:
        if self.backend == "local" and (self.workers != 1 or self.strategy != "ddp"):
            raise ValueError(f"trainer.backend=local runs one worker in this process: it needs trainer.workers=1 "
                             f"(got {self.workers}) and trainer.strategy=ddp (got {self.strategy}); "
                             f"use trainer.backend=ray for more workers or FSDP")
        return self


class SFTSpec(StrictModel):
    eval_prompts: int = Field(32, ge=0)      # held-out conversations scored by generation
    max_new_tokens: int = Field(64, ge=1)
    zh_tokenize: Literal["char", "jieba"] = "char"
    samples_in_report: int = Field(5, ge=0)


class LoggingSpec(StrictModel):
    tensorboard: bool = False
    mlflow_uri: str | None = None
    wandb_project: str | None = None
    console: bool = True


class TrainRecipe(StrictModel):
    name: str
    kind: Literal["pretrain", "sft"] = "pretrain"
    output: str                              # run storage path (local or s3://); the run lives in output/name
    tokenizer: str                           # HF tokenizer directory or tokenizer.json of the tokenizer stage
    chat_template: str | None = None         # a Jinja file; default: the built-in template (train/export.py)
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    sft: SFTSpec = Field(default_factory=SFTSpec)
    logging: LoggingSpec = Field(default_factory=LoggingSpec)
    ray_address: str | None = None
    source_file: str | None = None

    @model_validator(mode="after")
    def _steps_from_tokens(self) -> TrainRecipe:
        t = self.trainer
        if t.tokens is None:
            return self
        derived = steps_for_tokens(t.tokens, t, self.data.seq_len)
        if "max_steps" in t.model_fields_set and t.max_steps != derived:
            raise ValueError(
                f"trainer.tokens={t.tokens} means {derived} steps of {tokens_per_step(t, self.data.seq_len)} "
                f"tokens (micro_batch_size x grad_accum x workers x data.seq_len), but trainer.max_steps="
                f"{t.max_steps}; give one of them (or values that agree)")
        self.trainer = t.model_copy(update={"max_steps": derived})
        return self

    @property
    def run_dir(self) -> str:
        from ..core import storage

        return storage.join(self.output.rstrip("/"), self.name)


def tokens_per_step(t: TrainerSpec, seq_len: int) -> int:
    """Training tokens per optimizer step (all workers together)."""
    return t.micro_batch_size * t.grad_accum * t.workers * seq_len


def steps_for_tokens(tokens: int, t: TrainerSpec, seq_len: int) -> int:
    """Optimizer steps that train on at least ``tokens`` tokens."""
    return max(1, math.ceil(tokens / tokens_per_step(t, seq_len)))


def load_train_recipe(path_or_dict: str | dict, overrides: list[str] | None = None) -> TrainRecipe:
    src, raw = read_mapping(path_or_dict, "<train recipe>")
    raw = apply_overrides(raw, overrides or [], src)
    raw = _interpolate(raw, "", src)
    raw.pop("source_file", None)
    try:
        recipe = TrainRecipe(**raw, source_file=None if isinstance(path_or_dict, dict) else src)
    except ValidationError as e:
        raise RecipeError(_fmt_validation(e, src)) from None
    return absolute_paths(recipe)


def _abs(p):
    if p is None or (isinstance(p, str) and "://" in p):
        return p
    if isinstance(p, list):
        return [_abs(x) for x in p]
    return os.path.abspath(os.path.expanduser(p))


def absolute_paths(recipe: TrainRecipe) -> TrainRecipe:
    """Local paths made absolute against the submitting process's working directory:
    Ray Train workers run elsewhere (their own working directory, possibly another
    node with the same mounts), where a relative path would name another file."""
    return recipe.model_copy(update={
        "output": _abs(recipe.output), "tokenizer": _abs(recipe.tokenizer),
        "chat_template": _abs(recipe.chat_template),
        "model": recipe.model if recipe.model.init == "scratch" else
        recipe.model.model_copy(update={"init": _abs(recipe.model.init)}),
        "data": recipe.data.model_copy(update={"train": _abs(recipe.data.train), "valid": _abs(recipe.data.valid),
                                               "cache_dir": _abs(recipe.data.cache_dir)})})
