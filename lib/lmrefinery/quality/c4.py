"""C4's rules (Raffel et al. 2020): the line rules its cleaning applies (``c4_line``,
also used by the ``c4_lines`` stage that removes the lines) and the document
signals measured on the lines it would keep (``c4``). Sentences are counted the way
DataTrove's C4 filter counts them, with spaCy's sentencizer rule over spaCy-style
English words (``english_words.sentence_count``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .english_words import sentence_count

_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_END = (".", "?", "!", '"', "'")


@dataclass(frozen=True)
class C4LineRules:
    """C4's line rules (Raffel et al. 2020): which lines its cleaning would drop."""
    min_words_per_line: int = 3
    max_word_length: int | None = 1000
    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    filter_javascript: bool = True
    filter_policy: bool = True

    @classmethod
    def of(cls, t: dict) -> C4LineRules:
        return cls(**{k: t[k] for k in cls.__dataclass_fields__ if k in t})


def c4_line(line: str, r: C4LineRules) -> str | None:
    """One line after C4's rules: the stripped line (citations removed), or None when
    C4 drops it (a word over max_word_length, no terminal punctuation, fewer than
    min_words_per_line words, 'javascript', a cookie/policy notice)."""
    line = line.strip()
    words = line.split()
    maxw = r.max_word_length
    if maxw not in (-1, None) and words and max(map(len, words)) > maxw:
        return None
    if r.remove_citations:
        line = _CITATION.sub("", line)
    if r.filter_no_terminal_punct and (not line.endswith(_END) or line.endswith("...")):
        return None
    if len(words) < r.min_words_per_line:
        return None
    low = line.lower()
    if r.filter_javascript and "javascript" in low:
        return None
    if r.filter_policy and any(p in low for p in _POLICY):
        return None
    return line


def c4(text: str, t: dict) -> dict:
    """C4's document rules, measured on the lines C4's cleaning would keep. The text
    itself is never changed here (a filter decides, it does not rewrite): removing the
    lines is the separate `c4_lines` stage."""
    rules = C4LineRules.of(t)
    lines = text.splitlines()
    n_kept, n_sent, lorem, curly = 0, 0, 0.0, 0.0
    for raw in lines:
        line = c4_line(raw, rules)
        if line is None:
            continue
        low = line.lower()
        if t["filter_lorem_ipsum"] and "lorem ipsum" in low:
            lorem = 1.0
        if t["filter_curly_bracket"] and "{" in line:
            curly = 1.0
        n_sent += sentence_count(line)
        n_kept += 1
    return {"lorem_ipsum": lorem, "curly_bracket": curly, "n_sentences": float(n_sent),
            "lines_removed_frac": (1 - n_kept / len(lines)) if lines else 0.0}
