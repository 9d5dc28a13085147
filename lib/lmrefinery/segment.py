"""Chinese word segmentation, shared by the quality rules and the instruction tools.

jieba is imported on first use only (it is slow to load and most runs never see
Chinese), once per process, with its start-up chatter turned down to warnings.

* ``words(text)`` - jieba's default segmentation (dictionary + HMM for unknown
  words): what the instruction tools use for ROUGE, synonyms and lexicons.
* ``dictionary_words(text)`` - dictionary-only segmentation (no HMM), through
  rjieba (jieba-rs: the same dictionary and DAG search in Rust, ~10x faster) when
  it is installed, else jieba's own ``lcut(text, HMM=False)`` with a warning: what
  the quality rules count.
"""
from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

_jieba: ModuleType | None = None
_dictionary_cut: Callable[[str], list[str]] | None = None


def jieba() -> ModuleType:
    """The jieba module, imported and quietened once."""
    global _jieba
    if _jieba is None:
        import logging

        import jieba as module

        module.setLogLevel(logging.WARNING)
        _jieba = module
    return _jieba


def words(text: str) -> list[str]:
    """jieba's default segmentation of ``text`` (whitespace and punctuation included)."""
    return list(jieba().lcut(text))


def _load_dictionary_cut() -> Callable[[str], list[str]]:
    try:
        import rjieba

        return lambda text: rjieba.cut(text, hmm=False)
    except ImportError:
        import warnings

        warnings.warn("rjieba is not installed: Chinese quality tokens come from jieba (same tokens, ~10x slower)",
                      stacklevel=3)
        module = jieba()
        module.initialize()
        return lambda text: module.lcut(text, HMM=False)


def dictionary_words(text: str) -> list[str]:
    """Dictionary-only (no HMM) segmentation of ``text``; rjieba and jieba give the same
    tokens (tests/test_quality_fast.py checks it on the shared Chinese corpora)."""
    global _dictionary_cut
    if _dictionary_cut is None:
        _dictionary_cut = _load_dictionary_cut()
    return _dictionary_cut(text)


def reset() -> None:
    """Forget the loaded segmenters (tests that check which one gets picked)."""
    global _jieba, _dictionary_cut
    _jieba = _dictionary_cut = None
