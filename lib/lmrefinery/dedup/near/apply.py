"""Round 7, apply: per input part, drop the rows the choose round decided on (reason
near_duplicate, or exact_duplicate when the normalised text equals the keeper's) and
commit the part."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core import storage
from ..drops import PartOut, apply_drops
from .files import rss_mb


@dataclass(frozen=True)
class ApplyTask:
    out: PartOut
    work: str
    expected_drops: int  # rows of this part the choose round dropped
    counters: dict[str, int] | None = None  # the stage's counters, carried by part 0 only


def drop_rows(t: ApplyTask) -> dict[str, Any]:
    """The part's marker (core/parts.py), with this worker's peak RSS."""
    prefix = storage.join(t.work, "drops", f"p{t.out.part:05d}")
    files = storage.list_files(prefix)
    # the choose round said how many rows of this part go: a lost file is an error
    got = sum(storage.read_parquet(f, columns=["row"]).num_rows for f in files)
    if got != t.expected_drops:
        raise storage.StorageError(f"{prefix}: {got} drop decisions found, the choose round wrote "
                                   f"{t.expected_drops}; scratch was damaged or deleted while the stage ran")
    return apply_drops(t.out, files, t.counters, {"rss_mb": rss_mb()})
