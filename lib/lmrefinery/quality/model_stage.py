"""The `quality_model` stage: score documents with a fastText quality
classifier (trained by `lmrefinery quality-model train`) and keep them by
threshold or by GPT-3-style Pareto sampling.

`quality_score` = P(reference-like). `mode: threshold` keeps score >= threshold.
`mode: pareto` keeps a document when a Pareto(alpha) draw exceeds 1 - score
(GPT-3 used alpha = 9): mostly high scores, some low ones for diversity. The
draw comes from a hash of (seed, document id), so the decision does not depend
on batching, worker count or engine.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import xxhash
from pydantic import Field

from ..core.stage import BatchResult, Stage, StageParams, register
from .model import ft_line, positive_scores


class QualityModelParams(StageParams):
    model: str = Field(description="classifier .bin/.ftz: path, s3:// or https:// URL (cached)")
    mode: str = Field("threshold", pattern="^(threshold|pareto|score)$",
                      description="threshold | pareto | score (only add the column)")
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    pareto_alpha: float = Field(9.0, gt=0.0)
    seed: int | None = Field(None, description="Pareto seed; None = the recipe seed")
    max_chars: int = Field(10_000, ge=1, description="characters scored (the same as in training)")


def uniform_from_ids(ids: list[str], seed: int) -> np.ndarray:
    """A deterministic U[0,1) per document id."""
    s = str(seed).encode()
    return np.array([(xxhash.xxh3_64_intdigest(i.encode(), seed=0) ^ xxhash.xxh3_64_intdigest(s)) >> 11
                     for i in ids], dtype=np.float64) / float(1 << 53)


def pareto_keep(scores: np.ndarray, u: np.ndarray, alpha: float) -> np.ndarray:
    draw = (1.0 - u) ** (-1.0 / alpha) - 1.0   # numpy.random.pareto's (Lomax) inverse CDF
    return draw > 1.0 - scores


@register
class QualityModelStage(Stage):
    name = "quality_model"
    Params = QualityModelParams
    params: QualityModelParams
    description = "Score with a fastText quality classifier; keep by threshold or seeded Pareto sampling."

    def setup(self) -> None:
        import fasttext

        from ..models import resolve

        fasttext.FastText.eprint = lambda *a, **k: None
        self.model = fasttext.load_model(resolve(self.params.model, "quality.bin"))

    def process(self, batch: pa.Table) -> BatchResult:
        p = self.params
        texts = batch.column("text").to_pylist()
        scores = positive_scores(self.model, [ft_line(t, p.max_chars) for t in texts])
        if p.mode == "threshold":
            keep = scores >= p.threshold
            why = "quality_model:below_threshold"
        elif p.mode == "pareto":
            seed = self.ctx.seed if p.seed is None else p.seed
            keep = pareto_keep(scores, uniform_from_ids(batch.column("id").to_pylist(), seed), p.pareto_alpha)
            why = "quality_model:pareto_sample"
        else:
            keep = np.ones(len(texts), dtype=bool)
            why = None
        arr = pa.array(scores, pa.float64())
        if "quality_score" in batch.column_names:
            batch = batch.set_column(batch.column_names.index("quality_score"), "quality_score", arr)
        else:
            batch = batch.append_column("quality_score", arr)
        return BatchResult.split(batch, self.name, [None if k else why for k in keep])
