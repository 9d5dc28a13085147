"""The ablation spec (YAML): which curation variants of a pipeline recipe to compare,
the held-out split, the one shared tokenizer, the equal token budget and the seeds.

    name: raw-vs-default
    recipe: ../pipelines/shared.yaml      # the pipeline recipe (relative to this file)
    output: ./runs/ablate                 # the run folder is output/name
    baseline: raw
    variants:
      - {name: raw, stages: [read, tokenize]}   # keep only these stages of the recipe
      - {name: default}                         # the recipe as it is
      - {name: no_quality, drop: [quality]}     # the recipe without these stages
    seeds: [0, 1]
    heldout: {seed: 0, fraction: 0.1, groups: {clean: [wiki, books], web: [web_text]}}
    tokenizer: {vocab_size: 4000, sample_docs: 3000}
    train: {preset: tiny, seq_len: 128, tokens: 2000000, workers: 1, micro_batch_size: 16}
"""
from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.recipe import (
    RecipeError,
    _fmt_validation,
    _interpolate,
    apply_overrides,
    read_mapping,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Variant(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    stages: list[str] | None = None          # keep only these stages of the recipe (read and tokenize always)
    drop: list[str] = Field(default_factory=list)   # or: the recipe without these stages
    set: list[str] = Field(default_factory=list)    # --set style overrides of the variant's recipe

    @model_validator(mode="after")
    def _one_way(self) -> Variant:
        if self.stages is not None and self.drop:
            raise ValueError(f"variant {self.name}: give `stages` or `drop`, not both")
        return self


class HeldOut(_Strict):
    seed: int = 0
    fraction: float = Field(0.1, gt=0, lt=1)
    # group name -> recipe input names; each group is held out separately (fraction of its documents)
    groups: dict[str, list[str]] = Field(min_length=1)
    max_docs: int | None = Field(None, ge=1)   # per group, for evaluation (the rest stays out of training too)
    min_chars: int = Field(200, ge=1)          # shorter documents are never held out (kept in training)


class SharedTokenizer(_Strict):
    path: str | None = None                  # an existing HF tokenizer dir / tokenizer.json, or train one:
    vocab_size: int = Field(4000, ge=300)
    sample_docs: int = Field(3000, ge=1)     # training documents (all sources, before curation) it learns from
    max_chars_per_doc: int = Field(20000, ge=100)


class TrainSettings(_Strict):
    preset: Literal["tiny", "125m", "350m", "1b"] = "tiny"
    model_overrides: dict[str, Any] = Field(default_factory=dict)
    seq_len: int = Field(128, ge=8)
    tokens: int = Field(ge=1)                # the equal budget: every model trains on this many tokens
    backend: Literal["ray", "local"] = "ray"  # trainer.backend: local trains in this process, without Ray
    workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    micro_batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(6e-3, gt=0)
    warmup_steps: int = Field(10, ge=0)
    extra: dict[str, Any] = Field(default_factory=dict)   # other trainer.* keys

    @model_validator(mode="after")
    def _local_is_one_worker(self) -> TrainSettings:
        if self.backend == "local" and self.workers != 1:
            raise ValueError(f"train.backend=local trains in this process: it needs train.workers=1 "
                             f"(got {self.workers})")
        return self


class EvalSettings(_Strict):
    context: int | None = None               # default: train.seq_len
    stride: int | None = None                # default: context // 2
    batch_tokens: int = Field(8192, ge=1)


class AblationSpec(_Strict):
    name: str
    recipe: str
    output: str
    engine: Literal["ray", "spark", "local"] | None = None   # default: the recipe's
    workers: int | None = Field(None, ge=1)
    baseline: str | None = None              # default: the first variant
    reference: str | None = None             # e.g. the full curation: each variant's difference to it too
    variants: list[Variant] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    heldout: HeldOut
    tokenizer: SharedTokenizer = Field(default_factory=SharedTokenizer)
    train: TrainSettings
    eval: EvalSettings = Field(default_factory=EvalSettings)
    source_file: str | None = None

    @model_validator(mode="after")
    def _names(self) -> AblationSpec:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names repeat: {names}")
        for key in ("baseline", "reference"):
            if getattr(self, key) is not None and getattr(self, key) not in names:
                raise ValueError(f"{key} {getattr(self, key)!r} is not a variant ({names})")
        return self

    @property
    def run_dir(self) -> str:
        return os.path.join(self.output, self.name)

    @property
    def baseline_name(self) -> str:
        return self.baseline or self.variants[0].name


def _rel(base: str | None, p: str | None) -> str | None:
    if p is None or "://" in p or os.path.isabs(p) or base is None:
        return p
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(base)), p))


def load_spec(path_or_dict: str | dict, overrides: list[str] | None = None) -> AblationSpec:
    """Validated spec; ``recipe`` and ``tokenizer.path`` are relative to the spec file,
    ``output`` to the working directory."""
    src, raw = read_mapping(path_or_dict, "<ablation spec>")
    raw = _interpolate(apply_overrides(raw, overrides or [], src), "", src)
    raw.pop("source_file", None)
    try:
        spec = AblationSpec(**raw, source_file=None if isinstance(path_or_dict, dict) else src)
    except ValidationError as e:
        raise RecipeError(_fmt_validation(e, src)) from None
    tok = spec.tokenizer.model_copy(update={"path": _rel(spec.source_file, spec.tokenizer.path)})
    return spec.model_copy(update={"recipe": _rel(spec.source_file, spec.recipe), "tokenizer": tok,
                                   "output": os.path.abspath(spec.output)})
