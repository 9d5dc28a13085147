"""Heuristic quality rules: Gopher quality, Gopher repetition, C4, FineWeb
(+ a CJK punctuation-density rule of ours), and ``evaluate``, which runs them.

Each rule set computes named *signals* for a document and compares them with
named *thresholds*; a check that fails yields a reason ``<rule>:<check>``.
Defaults are the published values, following DataTrove's implementation
(``datatrove.pipeline.filters``). Per-language settings (tokenizer, stop words,
threshold overrides) come from ``quality/languages/<lang>.yaml`` (package data).

Where things live: thresholds, checks and language settings in ``thresholds.py``;
tokenizers in ``tokens.py``; the rule sets in ``gopher.py``, ``c4.py`` and
``fineweb.py`` (with the CJK rule). This module is the one to import from.

Speed: one tokenisation per document (the regex only on chunks that are not plain
words; Chinese by rjieba); n-gram repetition uses 64-bit rolling hashes of word
hashes in numpy, only at positions whose shorter n-gram repeats; token classes are
decided once per distinct token.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .c4 import C4LineRules, c4, c4_line
from .fineweb import CJK_PUNCT, TERMINAL, cjk, fineweb
from .gopher import PUNCT, dup_counts, gopher_quality, gopher_repetition
from .thresholds import (
    CHECKS,
    DEFAULTS,
    RULE_ORDER,
    SIGNALS,
    LangConf,
    conf_folder,
    load_lang_confs,
    signal_column,
)
from .tokens import TOKENIZERS, tok_jieba, tok_regex, tok_script_runs

__all__ = [
    "CHECKS", "CJK_PUNCT", "DEFAULTS", "PUNCT", "RULE_ORDER", "SIGNALS", "TERMINAL", "TOKENIZERS",
    "C4LineRules", "LangConf", "Verdict",
    "c4", "c4_line", "cjk", "conf_folder", "dup_counts", "evaluate", "fineweb", "gopher_quality",
    "gopher_repetition", "load_lang_confs", "signal_column", "tok_jieba", "tok_regex", "tok_script_runs",
]


@dataclass
class Verdict:
    signals: dict[str, dict[str, float]]   # rule -> signal -> value
    reasons: list[str]                     # every check that fired, in rule order


def _fires(sig: float | None, op: str, thr: Any) -> bool:
    if thr is None or sig is None or (isinstance(sig, float) and math.isnan(sig)):
        return False
    return bool(sig > thr if op == "max" else sig < thr)


def _signals(rule: str, text: str, t: dict, conf: LangConf, words: Callable[[], list[str]]) -> dict:
    """One rule set's signals; ``words()`` tokenises the document on first use."""
    if rule == "gopher_repetition":
        return gopher_repetition(text, words(), t)
    if rule == "gopher_quality":
        return gopher_quality(text, words(), t, conf.stop_words)
    if rule == "c4":
        return c4(text, t)
    if rule == "fineweb":
        return fineweb(text, len(words()), t)
    return cjk(text, t)


def _fired(rule: str, sig: dict, t: dict) -> list[str]:
    """The rule set's checks whose signal is past its threshold, as ``<rule>:<check>``."""
    fired = []
    for check, s, op, key in CHECKS[rule]:
        thr = 0.0 if key == "_flag" else 1.0 if key == "_one" else t.get(key)
        if key == "_flag" and not t.get(f"filter_{check}", True):
            continue
        if _fires(sig.get(s), op, thr):
            fired.append(f"{rule}:{check}")
    return fired


def evaluate(text: str, conf: LangConf, rules: list[str], all_signals: bool = True) -> Verdict:
    """Run the rule sets in order on one document. With all_signals=False the
    evaluation stops at the first rule set that fires (faster, fewer signals)."""
    text = text or ""
    tok = TOKENIZERS[conf.tokenizer]
    tokens: list[list[str]] = []

    def words() -> list[str]:
        if not tokens:
            tokens.append(tok(text))
        return tokens[0]

    signals: dict[str, dict] = {}
    reasons: list[str] = []
    for r in RULE_ORDER:
        if r not in rules:
            continue
        t = conf.rules[r]
        if not t.get("enabled", True):
            continue
        if r == "cjk" and t.get("min_punct_per_100_chars") is None:
            continue
        signals[r] = sig = _signals(r, text, t, conf, words)
        fired = _fired(r, sig, t)
        reasons.extend(fired)
        if fired and not all_signals:
            break
    return Verdict(signals, reasons)
