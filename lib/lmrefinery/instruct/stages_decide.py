"""Global instruct stages that decide per row over all inputs at once, through the
summary -> decide -> apply rounds of decide_rounds.py:
  instruct_balance  caps/floors/temperature per category, task, language
  instruct_split    train/validation/test by hash, stratified, near-dup clusters kept together
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import Field

from ..core.stage import StageParams, register
from .decide_rounds import Decision, Light, decide_and_apply
from .stage_base import _InstructStage


class BalanceParams(StageParams):
    by: list[str] = Field(default_factory=lambda: ["category"],
                          description="group fields: category, task, lang, source")
    temperature: float = Field(1.0, gt=0, description="sampling temperature over groups (1 = natural mix)")
    caps: dict[str, int] = Field(default_factory=dict, description="group -> max rows ('*' = every group)")
    floors: dict[str, int] = Field(default_factory=dict, description="group -> min rows (shortfall reported)")
    total: int | None = Field(None, ge=1)
    prefer: str | None = Field(None, description="meta score deciding which rows a downsampled group keeps "
                                                 "(judge_score: highest first; -ifd: lowest first); default a hash")
    upsample: bool = Field(False, description="meet floors (and temperature targets above a group's size) by "
                           "repetition: rows get meta.repeat = copies; instruct_version exports them repeated "
                           "and tokenize writes them that many times")


@register
class InstructBalance(_InstructStage):
    name = "instruct_balance"
    kind = "global"
    Params = BalanceParams
    params: BalanceParams
    description = ("Caps/floors and temperature sampling per category/task/language; before/after in "
                   "balance_report.json.")

    def decide(self, light: list[Light]) -> tuple[dict[str, Decision], dict[str, Any]]:
        """Rows the balance drops; with upsampling, the repeat count of the rows it repeats."""
        from . import balance as bal

        p = self.params
        kept, report = bal.balance(light, p.by, p.temperature, p.caps, p.floors, p.total, upsample=p.upsample,
                                   seed=self.ctx.seed, prefer=p.prefer)
        ids = {r["id"] for r in light}
        keep_ids = {r["id"] for r in kept if r["id"] in ids}
        decisions: dict[str, Decision] = {r["id"]: {"drop": "balance_downsampled"} for r in light
                                          if r["id"] not in keep_ids}
        # upsampling: the stage keeps one row per document (in = kept + rejected) and
        # records its multiplicity instead of writing copies
        extra = Counter(r["meta"]["repeat_of"] for r in kept if r["id"] not in ids)
        for i, k in extra.items():
            decisions[i] = {"set": {"repeat": k + 1}}
        report["repeated_rows"] = len(extra)
        report["repeat_copies"] = sum(extra.values())
        return decisions, report

    def execute(self, job: Any) -> list[dict[str, Any]]:
        prefer = self.params.prefer
        return decide_and_apply(job, False, self.decide, "balance_report.json",
                                (prefer.lstrip("-"),) if prefer else ())


class SplitParams(StageParams):
    fractions: dict[str, float] = Field(default_factory=lambda: {"train": 0.9, "validation": 0.05, "test": 0.05})
    stratify: str | None = Field("category", description="meta field to stratify by (null: none)")
    near_dup: bool = Field(True, description="keep MinHash near-duplicate clusters of prompts in one split")
    threshold: float = Field(0.7, gt=0, le=1, description="Jaccard of prompt word bigrams for a near duplicate")
    link_fields: list[str] = Field(default_factory=lambda: ["group"],
                                   description="meta fields whose equal values keep rows in one split "
                                               "(pair_id, parent_id and repeat_of always do)")
    previous_version: str | None = Field(None, description="version dir, PREFIX@VERSION or PREFIX: rows already "
                                                           "there keep their split (test never goes to train)")


@register
class InstructSplit(_InstructStage):
    name = "instruct_split"
    kind = "global"
    Params = SplitParams
    params: SplitParams
    description = ("Deterministic train/validation/test (meta.split) by hash, stratified, near-dup clusters "
                   "never straddle.")

    def decide(self, light: list[Light], previous: dict[str, str] | None) -> tuple[dict[str, Decision],
                                                                                   dict[str, Any]]:
        """meta.split and meta.cluster of every row (`previous`: id -> split of a version to keep)."""
        from . import split as spl

        p = self.params
        rows = [{"id": r["id"], "meta": r["meta"], "lang": r["lang"], "_prompt": r["prompt"]} for r in light]
        for r in rows:
            r["meta"]["messages"] = [{"role": "user", "content": r.pop("_prompt")}]
        out, report = spl.assign_splits(rows, p.fractions, p.stratify or "", self.ctx.seed, p.near_dup,
                                        p.threshold, tuple(p.link_fields), previous)
        return {r["id"]: {"set": {"split": r["meta"]["split"], "cluster": r["meta"]["cluster"]}}
                for r in out}, report

    def execute(self, job: Any) -> list[dict[str, Any]]:
        p = self.params
        previous = None
        if p.previous_version:
            from .versioning import version_splits

            previous = version_splits(p.previous_version)
        return decide_and_apply(job, True, lambda light: self.decide(light, previous), "split_report.json",
                                tuple(p.link_fields))
