"""The `length_filter` stage: documents outside [min_chars, max_chars]
(Unicode characters, so Chinese and English are measured alike) are rejected."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from ..core.stage import BatchResult, Stage, StageParams, register


class LengthParams(StageParams):
    min_chars: int = Field(50, ge=0)
    max_chars: int = Field(1_000_000, ge=1)

    @model_validator(mode="after")
    def _range_not_empty(self) -> LengthParams:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) > max_chars ({self.max_chars}) would reject every "
                             "document")
        return self


@register
class LengthFilter(Stage):
    name = "length_filter"
    Params = LengthParams
    params: LengthParams
    description = "Reject documents shorter than min_chars or longer than max_chars (characters)."

    def process(self, batch: pa.Table) -> BatchResult:
        n = pc.utf8_length(batch.column("text").fill_null("")).to_pylist()
        lo, hi = self.params.min_chars, self.params.max_chars
        reasons = ["too_short" if x < lo else "too_long" if x > hi else None for x in n]
        batch = batch.append_column("n_chars", pa.array(n, pa.int64())) if "n_chars" not in batch.column_names \
            else batch
        return BatchResult.split(batch, self.name, reasons)
