"""The `tokenize` stage's recipe parameters: which tokenizer (given or trained),
how sources are mixed, how the output is split and sharded."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..core.recipe import StrictModel
from ..core.stage import StageParams


class TrainTokenizer(StrictModel):
    vocab_size: int = Field(32000, ge=300, le=1 << 20)
    sample_docs: int = Field(20000, ge=1, description="documents sampled across (source, lang) groups")
    min_frequency: int = Field(2, ge=1)
    max_chars_per_doc: int = Field(20000, ge=100, description="longer sampled documents are cut for training")
    specials: dict[str, str] = Field(default_factory=dict, description="override eos/bos/pad/eot token strings")


class Mixing(StrictModel):
    mode: Literal["none", "proportions", "epochs"] = "none"
    weights: dict[str, float] = Field(default_factory=dict,
                                      description="source -> target token share (proportions) or epochs")
    total_tokens: int | None = Field(None, ge=1,
                                     description="proportions: train tokens wanted (default: natural total)")
    on_empty_source: Literal["error", "warn"] = Field(
        "error", description="a source with a positive weight but no train documents left: error stops the run; "
                             "warn tokenizes the others (weights rescaled) and records it in dataset.json")


class TokenizeParams(StageParams):
    tokenizer: str | None = Field(None, description="HF tokenizer dir or tokenizer.json to use")
    train: TrainTokenizer | None = Field(None, description="train a byte-level BPE on this stage's input first")
    eos_token: str | None = None
    add_bos: bool = False
    shard_tokens: int = Field(50_000_000, ge=1, description="target tokens per shard")
    valid_fraction: float = Field(0.005, ge=0.0, lt=1.0, description="documents held out by content hash")
    mix: Mixing = Field(default_factory=Mixing)
    conversations: bool = Field(True, description="rows with meta.messages -> chat template + loss mask")
    encode_batch: int = Field(1024, ge=1)

    @model_validator(mode="after")
    def _one_tokenizer(self) -> TokenizeParams:
        if (self.tokenizer is None) == (self.train is None):
            raise ValueError("give exactly one of `tokenizer` (a path) or `train` (settings to train one)")
        return self
