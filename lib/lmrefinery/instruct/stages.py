"""Recipe stages for instruction data, one module per family; this module imports
them all (registering every stage) and keeps the names others import from here.

map stages (stages_map.py, pure per batch):
  instruct_normalize  per-turn language, shared taxonomy, provenance
  instruct_construct  task-table rows -> instruction pairs through templates
  instruct_filter     pair filters (empty/short, copy, refusal, language mismatch)
  instruct_score      Instruction-Following Difficulty with a local causal LM
global stages (rounds of map tasks; the driver only sees small summaries):
  instruct_dedup      (stage_dedup.py) exact duplicates of the prompt (user turns),
                      reusing the exact_dedup rounds (choose/apply); `dedup` and
                      `decontaminate` from the dedup family work on these rows too
  instruct_balance    (stages_decide.py, rounds in decide_rounds.py) caps/floors/
                      temperature per category, task, language
  instruct_split      (stages_decide.py) train/validation/test by hash, stratified,
                      near-dup clusters kept together
  instruct_version    (stages_version.py) pass-through that also writes an immutable
                      dataset version + exports
The shared base class and helpers are in stage_base.py.
"""
from __future__ import annotations

# in pipeline order: the order the stages register in (`lmrefinery stages`)
# isort: off
from .stage_base import _InstructStage
from .stages_map import (ConstructParams, FilterParams, InstructConstruct, InstructFilter, InstructNormalize,
                         InstructScore, NormalizeParams, ScoreParams)
from .stage_dedup import InstructDedup, PromptDedupParams
from .stages_decide import BalanceParams, InstructBalance, InstructSplit, SplitParams
from .stages_version import InstructVersion, VersionParams, expand_repeats
# isort: on

__all__ = ["_InstructStage", "InstructNormalize", "NormalizeParams", "InstructConstruct", "ConstructParams",
           "InstructFilter", "FilterParams", "InstructScore", "ScoreParams", "InstructDedup", "PromptDedupParams",
           "InstructBalance", "BalanceParams", "InstructSplit", "SplitParams", "InstructVersion", "VersionParams",
           "expand_repeats"]
