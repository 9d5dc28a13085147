"""What the near-dedup stage reports: the rounds' timings and peak worker memory
(`Rounds`), the cluster counters every run's manifest carries, and dedup_report.json."""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ...core import storage
from .params import NearParams

T = TypeVar("T")
R = TypeVar("R")


def _rss(result: Any) -> float:
    """The peak RSS a round's result reports (a part marker carries it as a key)."""
    return float(result.get("rss_mb", 0) if isinstance(result, dict) else result.rss_mb)


class Rounds:
    """Runs the stage's rounds on the job (its engine), keeping the peak RSS every
    worker reported and the seconds of each phase."""

    def __init__(self, job: Any):
        self.job = job
        self.max_rss_mb = 0.0
        self.phase_seconds: dict[str, float] = {}
        self._since = time.time()

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], step: str = "") -> list[R]:
        results: list[R] = self.job.map(fn, list(tasks), step)
        self.max_rss_mb = max([self.max_rss_mb] + [_rss(x) for x in results])
        return results

    def lap(self, phase: str) -> None:
        """The phase that just ended took the seconds since the previous lap."""
        now = time.time()
        self.phase_seconds[phase] = round(now - self._since, 3)
        self._since = now


@dataclass
class NearReport:
    """Totals of the rounds, as they come in."""

    documents: int = 0
    no_shingles: int = 0
    candidate_pairs: int = 0
    verified_pairs: int | None = None
    cc_rounds: int = 0
    cc_impl: str = "none"
    buckets_from: str = "recipe"  # where the bucket count came from (files.with_buckets)
    hist: Counter[int] = field(default_factory=Counter)      # cluster size -> clusters
    removed: Counter[str] = field(default_factory=Counter)   # reason -> documents
    drops: Counter[int] = field(default_factory=Counter)     # input part -> documents dropped

    @property
    def edges(self) -> int:
        """The edges of the graph the components round reads (verified ones when verify is on)."""
        return self.candidate_pairs if self.verified_pairs is None else self.verified_pairs

    def size_hist(self) -> dict[str, int]:
        return {str(k): self.hist[k] for k in sorted(self.hist)}

    def counters(self) -> dict[str, int]:
        """The stage's counters in the manifest (carried by part 0)."""
        return {"clusters": sum(self.hist.values()), "candidate_pairs": self.candidate_pairs,
                **({"verified_pairs": self.verified_pairs} if self.verified_pairs is not None else {}),
                **{f"cluster_size_{k}": v for k, v in self.size_hist().items()}}

    def write(self, stage_dir: str, params: NearParams, against: list[str], rounds: Rounds, t_start: float) -> None:
        bands, rows, threshold = params.lsh
        report = {"documents": self.documents, "no_shingles": self.no_shingles,
                  "candidate_pairs": self.candidate_pairs, "verified_pairs": self.verified_pairs,
                  "cc_rounds": self.cc_rounds, "cc_impl": self.cc_impl, "clusters": sum(self.hist.values()),
                  "cluster_size_hist": self.size_hist(), "removed": dict(self.removed),
                  "bands": bands, "rows": rows, "threshold": threshold, "against": against,
                  "buckets": params.n_buckets, "buckets_from": self.buckets_from,
                  "phase_seconds": rounds.phase_seconds, "max_worker_rss_mb": rounds.max_rss_mb,
                  "seconds": round(time.time() - t_start, 3)}
        storage.write_bytes(storage.join(stage_dir, "dedup_report.json"),
                            json.dumps(report, indent=1, sort_keys=True).encode())
