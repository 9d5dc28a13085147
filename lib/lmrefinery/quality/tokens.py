"""Word tokenizers of the quality rules, chosen per language (``tokenizer:`` in
``quality/languages/<lang>.yaml``): ``english`` (spaCy's blank-English rules, the
tokenizer DataTrove and the rule papers count words with; ``english_words.py``),
``regex`` (one regex, close to spaCy for other space-separated scripts), ``jieba``
(Chinese dictionary words) and ``script_runs`` (runs of one script: Japanese). Each
document is tokenised once; the rules share the words.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from ..segment import dictionary_words
from .english_words import english_words

# close to spaCy's blank-English tokens (DataTrove's English word tokenizer): a word
# keeps inner . @ & + (X3.4, amazon.co.uk, a.m), digit,digit and digit/digit or
# digit:digit (5,000 1/2 10:43) and letter-digit hyphens (IL-2, ICD-10); hyphens
# before letters and between numbers split (post - emergence, 11 - 12); clitics are
# tokens of their own (I 'm, don 't); a single letter keeps its period (S.); URLs,
# "..." and "--" are one token; any other punctuation is one character per token
_WORD = (r"\w+(?:(?:[.@&+](?=\w)|(?<=\d),(?=\d)|(?<=[^\W\d_])-(?=\d)|(?<=\d)[/:](?=\d))\w+)*"
         r"(?:(?<=\b[A-Za-z])\.)?")
_TOKEN = re.compile(r"(?:https?://|www\.)[^\s<>\"]+|" + _WORD + r"|['’]\w+|\.{2,}|-{2,}|[^\w\s]")

_SCRIPT_RUNS = re.compile(
    r"[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff々〆]+|[\u3040-\u309f]|[\u30a0-\u30ffー\uff66-\uff9f]+"
    r"|[^\W\d_\u3040-\u30ff\u3400-\u9fff]+|\d+|[^\w\s]+")


_ASCII_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def tok_regex(text: str) -> list[str]:
    """``_TOKEN.findall(text)``, faster. No token holds whitespace and no part of the
    pattern looks across it (Python's \\s is exactly what ``str.split()`` splits on), so
    the text is tokenised chunk by chunk: a chunk of word characters only (``isalnum``;
    \\w is isalnum or "_") is one token; a word followed by one other mark is two (the
    word, then the mark), except a single ASCII letter with its period (``S.``); every
    other chunk goes through the regex. tests/test_quality_fast.py checks equality."""
    out: list[str] = []
    add, extend, findall = out.append, out.extend, _TOKEN.findall
    for c in text.split():
        if c.isalnum():
            add(c)
            continue
        head, last = c[:-1], c[-1]
        if head.isalnum() and not (last.isalnum() or last == "_"):
            if last == "." and len(head) == 1 and head in _ASCII_LETTERS:
                add(c)
            else:
                add(head)
                add(last)
        else:
            extend(findall(c))
    return out


def tok_script_runs(text: str) -> list[str]:
    return _SCRIPT_RUNS.findall(text)


def tok_jieba(text: str) -> list[str]:
    """Chinese words: jieba's dictionary segmentation without HMM (``segment.dictionary_words``),
    whitespace tokens dropped. tests/test_quality_fast.py checks that rjieba's tokens equal
    jieba's on the Chinese texts of the shared corpora."""
    return [w for w in (t.strip() for t in dictionary_words(text)) if w]


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {
    "english": english_words, "regex": tok_regex, "jieba": tok_jieba, "script_runs": tok_script_runs}
DEFAULT_TOKENIZER = "english"  # languages without a file get the English rules, and their words

