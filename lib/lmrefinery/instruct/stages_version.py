"""instruct_version: a global stage that passes its rows through and also writes an
immutable, content-addressed dataset version with exports and a manifest."""
from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from ..core import storage
from ..core.stage import BatchResult, StageParams, register
from .common import table_to_rows
from .stage_base import PartOf, _InstructStage, parts_of


class VersionParams(StageParams):
    prefix: str | None = Field(None, description="dataset prefix (default: <output>/dataset)")
    formats: list[str] = Field(default_factory=lambda: ["alpaca", "messages", "parquet"])
    txt_separator: str = "<sep>"
    name: str | None = None


def pass_part(t: PartOf) -> dict[str, Any]:
    """Commit the part unchanged; returns its marker."""
    t0 = time.time()
    tbl = storage.read_parquet(t.input)
    return t.commit([BatchResult(tbl)], tbl.num_rows, t0)


def expand_repeats(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A row with ``meta.repeat = k`` (from instruct_balance's upsampling) -> the row and
    k - 1 copies, named and marked as ``instruct build --upsample`` names them."""
    from .balance import repeat_copy

    k = row["meta"].get("repeat")
    if not isinstance(k, int) or isinstance(k, bool) or k <= 1:
        return [row]
    base = {**row, "meta": {key: v for key, v in row["meta"].items() if key != "repeat"}}
    return [base] + [repeat_copy(base, j) for j in range(1, k)]


@register
class InstructVersion(_InstructStage):
    name = "instruct_version"
    kind = "global"
    Params = VersionParams
    params: VersionParams
    description = ("Pass rows through and write an immutable, content-addressed dataset version with exports "
                   "and a manifest.")

    def execute(self, job: Any) -> list[dict[str, Any]]:
        from .versioning import build_version

        p = self.params
        parts: list[dict[str, Any]] = job.map(pass_part, parts_of(job), "pass")
        rows = []
        for part in parts:
            for r in table_to_rows(storage.read_parquet(storage.join(job.stage_dir, part["output"]["path"]))):
                rows.extend(expand_repeats(r))
        prefix = p.prefix or storage.join(job.ctx["output_root"], "dataset")
        srcs = [pth for i in job.ctx.get("inputs", []) for pth in i.get("paths", [])]
        recipe = {"run": job.ctx.get("run_name"), "fingerprint": job.fingerprint}
        m = build_version(rows, prefix, recipe=recipe, sources=srcs, formats=tuple(p.formats), sep=p.txt_separator,
                          name=p.name or job.ctx.get("run_name", "instruct"))
        for part in parts:
            part["version"] = m["version"]
        return parts
