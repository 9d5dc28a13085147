"""Map stages for instruction data (pure per batch):
  instruct_normalize  per-turn language, shared taxonomy, provenance
  instruct_construct  task-table rows -> instruction pairs through templates
  instruct_filter     pair filters (empty/short, copy, refusal, language mismatch, ...)
  instruct_score      Instruction-Following Difficulty with a local causal LM
Models and lists are loaded in setup(), which the runner calls once per worker.
"""
from __future__ import annotations

from collections import Counter
from typing import Literal

import pyarrow as pa
from pydantic import Field

from ..core.schema import with_reason
from ..core.stage import BatchResult, StageParams, register
from .common import rows_to_table, table_to_rows
from .stage_base import _InstructStage, replace_rows


class NormalizeParams(StageParams):
    lid_model: str | None = Field(None, description="lid.176 path/URL; default: the model cache")
    taxonomy: str | None = Field(None, description="taxonomy YAML; default: the packaged instruct/data/taxonomy.yaml")
    default_category: str = "uncategorized"
    licences: dict[str, str] = Field(default_factory=dict, description="source (input name) -> licence tag")


@register
class InstructNormalize(_InstructStage):
    name = "instruct_normalize"
    changes_text = True
    Params = NormalizeParams
    params: NormalizeParams
    description = ("Conversation rows: per-turn language (fastText), categories mapped to the shared taxonomy, "
                   "provenance.")

    def setup(self) -> None:
        from .normalize import LangID, load_taxonomy

        self.lid = LangID(self.params.lid_model)
        self.tax = load_taxonomy(self.params.taxonomy)
        self.licence_of = {i["name"]: i.get("licence") for i in self.ctx.inputs}
        self.licence_of.update(self.params.licences)

    def process(self, batch: pa.Table) -> BatchResult:
        from .normalize import normalise_row

        rows = table_to_rows(batch)
        reasons: list[str | None] = []
        c: Counter[str] = Counter()
        for r in rows:
            if (r["meta"].get("kind") != "conversation") and not r["meta"].get("messages"):
                reasons.append("not_a_conversation")
                continue
            why = normalise_row(r, self.lid, self.tax, self.licence_of.get(r.get("source")),
                                self.params.default_category)
            reasons.append(why)
            if why is None:
                c[f"category:{r['meta']['category']}"] += 1
                c[f"lang:{r.get('lang')}"] += 1
        out = replace_rows(batch, rows)
        return BatchResult.rewritten(batch, out, self.name, reasons, dict(c))


class ConstructParams(StageParams):
    task: Literal["extractive_qa", "summarization", "nli", "translation", "classification", "dialogue"] | str
    lang: str = Field("en", description="template language (en, zh, or any with templates)")
    columns: dict[str, str] = Field(default_factory=dict, description="task column -> field of the input row")
    label_set: list[str] = Field(default_factory=list, description="classification/NLI labels (rendered as options)")
    template_dirs: list[str] = Field(default_factory=list, description="extra template folders (merged over conf/)")
    source: str | None = None


@register
class InstructConstruct(_InstructStage):
    name = "instruct_construct"
    changes_text = True
    Params = ConstructParams
    params: ConstructParams
    description = ("Task-table rows (typed columns) -> instruction/response conversations through seeded "
                   "Jinja templates.")

    def process(self, batch: pa.Table) -> BatchResult:
        from .templates import construct_row

        p = self.params
        rows = table_to_rows(batch)
        made, reasons = [], []
        for r in rows:
            rec, why = construct_row(r, p.task, p.lang, seed=self.ctx.seed, columns=p.columns,
                                     label_set=p.label_set or None, template_dirs=tuple(p.template_dirs),
                                     source=p.source or r.get("source"))
            reasons.append(why)
            if rec is not None:
                rec["id"] = r["id"]          # one output per input row: keep the row's id
                rec["meta"]["orig_id"] = r["meta"].get("source_id") or r["meta"].get("pos")
                made.append(rec)
        kept = rows_to_table(made)
        rej = [r for r, w in zip(rows, reasons) if w]
        rejected = with_reason(batch.filter(pa.array([w is not None for w in reasons])), self.name,
                               [w for w in reasons if w]) if rej else None
        return BatchResult(kept, rejected, {f"template_task:{p.task}": len(made)})


class FilterParams(StageParams):
    min_response_words: int = Field(1, ge=0)
    min_response_chars: int = Field(2, ge=0)
    copy_threshold: float = Field(0.9, gt=0, le=1.01,
                                  description="ROUGE-L(instruction, response) at which the response is a copy")
    refusal_lists: list[str] = Field(default_factory=lambda: ["refusals_en.txt", "refusals_zh.txt"],
                                     description="phrase files: names in the packaged instruct/data "
                                                 "(or $LMR_INSTRUCT_CONF), or paths")
    check_lang: bool = True
    exempt_categories: list[str] = Field(default_factory=lambda: ["translation"])
    lid_model: str | None = None
    max_turn_chars: int | None = Field(32000, ge=1, description="longest turn allowed (characters); null: no limit")
    max_repetition: float = Field(0.5, gt=0, le=1,
                                  description="1 - distinct/total word 4-grams of an answer above which it is a loop")
    repetition_min_words: int = Field(30, ge=4, description="answers shorter than this are not checked for repetition")
    max_ifd: float | None = Field(None, gt=0,
                                  description="reject rows whose meta.ifd (instruct_score) is at least this")
    min_judge_score: float | None = Field(None, description="reject rows whose meta.judge_score is below this")


@register
class InstructFilter(_InstructStage):
    name = "instruct_filter"
    Params = FilterParams
    params: FilterParams
    description = "Reject empty/short responses, copies of the instruction, refusal boilerplate, language mismatch."

    def setup(self) -> None:
        from .filters import PairFilter

        p = self.params
        self.f = PairFilter(p.min_response_words, p.min_response_chars, p.copy_threshold, p.refusal_lists,
                            p.check_lang, p.lid_model, tuple(p.exempt_categories), max_turn_chars=p.max_turn_chars,
                            max_repetition=p.max_repetition, repetition_min_words=p.repetition_min_words,
                            max_ifd=p.max_ifd, min_judge_score=p.min_judge_score)

    def process(self, batch: pa.Table) -> BatchResult:
        rows = table_to_rows(batch)
        return BatchResult.split(batch, self.name, [self.f(r) for r in rows])


class ScoreParams(StageParams):
    model_dir: str = Field(..., description="local HF causal LM for Instruction-Following Difficulty")
    max_len: int = Field(1024, ge=8, description="tokens of instruction + response scored")
    batch_size: int = Field(8, ge=1)


@register
class InstructScore(_InstructStage):
    name = "instruct_score"
    Params = ScoreParams
    params: ScoreParams
    description = ("Instruction-Following Difficulty with a local causal LM: meta.ifd, loss_with_instruction, "
                   "loss_response_only.")

    def setup(self) -> None:
        from .scoring import IFDScorer

        p = self.params
        self.scorer = IFDScorer(p.model_dir, p.max_len, p.batch_size)

    def process(self, batch: pa.Table) -> BatchResult:
        from .scoring import with_scores

        rows = table_to_rows(batch)
        return BatchResult(replace_rows(batch, with_scores(rows, self.scorer.score(rows))))
