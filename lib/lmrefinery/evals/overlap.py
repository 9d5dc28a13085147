"""Word-overlap F1 between an extracted text and its reference: the score the article
extraction benchmarks report (bag of lower-cased \\w+ words, precision and recall over
their multiset intersection). Used to check HTML extraction against gold article bodies."""
from __future__ import annotations

import collections
import re

_WORD = re.compile(r"\w+")


def word_f1(candidate: str, reference: str) -> float:
    """F1 of the two texts' word multisets; 0.0 when they share no word."""
    ca = collections.Counter(_WORD.findall(candidate.lower()))
    cb = collections.Counter(_WORD.findall(reference.lower()))
    overlap = sum((ca & cb).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(ca.values()), overlap / sum(cb.values())
    return 2 * precision * recall / (precision + recall)
