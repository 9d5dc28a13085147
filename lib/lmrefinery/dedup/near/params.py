"""The `dedup` stage's parameters: shingling, MinHash/LSH shape, verification, keeper rules."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ...core.stage import StageParams
from ..buckets import BUCKET_DOCS, MAX_BUCKETS
from ..minhash import lsh_threshold, optimal_bands_rows

KeepRule = Literal["source", "quality", "longest", "shortest"]


def _default_keep() -> list[KeepRule]:
    return ["source", "quality", "longest"]


class NearParams(StageParams):
    ngram: int = Field(5, ge=1, description="word n-gram size for space-delimited languages")
    char_ngram: int = Field(5, ge=1, description="character n-gram size for Chinese and Japanese")
    script: Literal["mixed", "auto", "words", "chars"] = Field(
        "mixed", description="mixed: CJK characters and words in one token stream (pure-Latin and pure-CJK "
        "texts shingle exactly as words / chars); auto: chars when lang is zh/ja or the text is mostly CJK, "
        "else words (the earlier default; use it to match indexes built with it)")
    num_perm: int = Field(112, ge=2, le=1024, description="MinHash permutations")
    bands: int | None = Field(None, ge=1, description="LSH bands (default 14, or derived from threshold). "
                              "14 bands x 8 rows: S-curve midpoint (1/b)^(1/r) = 0.719, P(candidate) 0.92 at "
                              "Jaccard 0.8 and 0.99 at 0.85; measured recall 0.997 at J >= 0.8 (bench/dedup.py)")
    rows: int | None = Field(None, ge=1, description="rows per band (default 8, or derived from threshold)")
    threshold: float | None = Field(None, gt=0, lt=1, description="target Jaccard; derives bands/rows "
                                    "when they are not given (see lsh_weights), and is the verification "
                                    "threshold; unset: 0.719, the midpoint of 14x8")
    lsh_weights: tuple[float, float] = Field(
        (0.2, 0.8), description="(false-positive, false-negative) weights of the areas minimised when "
        "bands/rows are derived from threshold; (0.5, 0.5) is datasketch's optimal_param. The default leans to "
        "recall because verification removes false candidates exactly (bench/dedup.py threshold curve)")
    seed: int = Field(1, description="MinHash seed (datasketch's default is 1)")
    hash: Literal["xxh3", "sha1"] = Field("xxh3", description="token hash; sha1 = datasketch's default")
    scheme: Literal["affine32", "legacy"] = Field("affine32", description="datasketch permutation scheme")
    verify: bool = Field(True, description="keep only candidate pairs whose exact shingle Jaccard >= threshold")
    keep: list[KeepRule] = Field(default_factory=_default_keep,
                                 description="how the kept member of a cluster is chosen, in order; ties by id")
    prefer_sources: list[str] = Field(default_factory=list, description="sources ranked first, in this order")
    quality_column: str = Field("quality_score", description="signal column for keep=quality (higher wins)")
    buckets: int | None = Field(None, ge=1, le=MAX_BUCKETS, description="band shuffle buckets, node partitions "
                                "and cluster buckets; unset: the buckets of the `against` indexes, else one per "
                                "`bucket_docs` input documents, at least 8 (dedup/buckets.py)")
    bucket_docs: int = Field(BUCKET_DOCS, ge=1, description="with `buckets` unset (and no `against`): input "
                             "documents per bucket")
    against: list[str] = Field(default_factory=list, description="indexes (or dedup stage dirs) of earlier "
                               "releases to deduplicate against")
    max_cc_rounds: int = Field(40, ge=2)

    @model_validator(mode="after")
    def _bands_rows(self) -> NearParams:
        if self.bands is None and self.rows is None:
            if self.threshold is None:
                self.bands, self.rows = 14, 8
            else:
                self.bands, self.rows = optimal_bands_rows(self.threshold, self.num_perm, *self.lsh_weights)
        elif self.bands is None or self.rows is None:
            raise ValueError("set both bands and rows, or neither (then threshold derives them)")
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.threshold is None:
            self.threshold = round(lsh_threshold(self.bands, self.rows), 4)
        return self

    @property
    def n_buckets(self) -> int:
        """The bucket count the rounds run with: set once the stage has resolved it (stage.py)."""
        assert self.buckets is not None, "buckets is resolved when the stage starts"
        return self.buckets

    @property
    def lsh(self) -> tuple[int, int, float]:
        """(bands, rows, threshold): all three are set once the parameters are validated."""
        assert self.bands is not None and self.rows is not None and self.threshold is not None
        return self.bands, self.rows, self.threshold
