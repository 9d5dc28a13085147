"""Gopher's rule sets (Rae et al. 2021, as DataTrove implements them).

* ``gopher_repetition`` - duplicate paragraphs and lines (count and characters),
  the share of characters in the most frequent 2-, 3- and 4-gram, and in
  duplicated 5- to 10-grams. The n-grams use 64-bit rolling hashes of word hashes
  in numpy, looked at only where the shorter n-gram repeats.
* ``gopher_quality`` - word count, mean word length, symbol ratios, bullet and
  ellipsis lines, alphabetic words and stop words; token classes are decided once
  per distinct token.
"""
from __future__ import annotations

import math
import re
import sys
import unicodedata
from collections import Counter

import numpy as np


def _build_punct() -> frozenset[str]:
    chars = set()
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        cat = unicodedata.category(c)
        if cat[0] in "PS" or cat == "Cc":
            chars.add(c)
    return frozenset(chars)


PUNCT = _build_punct()


def dup_counts(items: list[str]) -> tuple[int, int]:
    """(number of elements seen before, their characters) - DataTrove's find_duplicates."""
    if not items:
        return 0, 0
    uniq = set(items)
    return len(items) - len(uniq), sum(map(len, items)) - sum(map(len, uniq))


_P = np.uint64(0x9E3779B97F4A7C15)
_PARA = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


def _ngram_repetition(words: list[str], total_chars: int, sig: dict) -> None:
    """Gopher's n-gram repetition signals from 64-bit rolling hashes.

    An n+1-gram can only repeat where its n-gram prefix repeats, so after the
    2-grams only positions in repeated groups (``cand``, with their hashes ``hc``)
    are carried on and extended by one word: normal text sorts one full array and
    then a few small ones. In a group of equal n-grams the first occurrence is the
    smallest position; every later one is a duplicate, and ``dup_n_gram`` counts the
    characters of duplicates taken greedily left to right without overlap."""
    n_w = len(words)
    for n in (2, 3, 4):
        sig[f"top_{n}_gram"] = 0.0
    for n in range(5, 11):
        sig[f"dup_{n}_gram"] = 0.0
    if n_w < 2 or total_chars == 0:
        return
    with np.errstate(over="ignore"):
        wh = np.fromiter(map(hash, words), dtype=np.int64, count=n_w).view(np.uint64)
        cl = np.zeros(n_w + 1, dtype=np.int64)  # cl[i]: characters of words[:i], no spaces
        np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=n_w), out=cl[1:])
        cand = np.arange(n_w - 1)
        hc = wh[:-1] * _P + wh[1:]
        for n in range(2, min(n_w, 10) + 1):
            if n > 2 and len(cand):
                fits = cand < n_w - n + 1
                cand, hc = cand[fits], hc[fits]
                hc = hc * _P + wh[cand + (n - 1)]
            top, j = 1, 0  # no n-gram repeats: Counter's most common is the one at position 0
            if len(cand):
                order = hc.argsort()
                hs, pos = hc[order], cand[order]
                new = np.empty(len(hs), dtype=bool)
                new[0] = True
                np.not_equal(hs[1:], hs[:-1], out=new[1:])
                starts = np.flatnonzero(new)
                if len(starts) == len(hs):
                    cand = cand[:0]
                else:
                    counts = np.diff(np.append(starts, len(hs)))
                    first = np.minimum.reduceat(pos, starts)
                    if n <= 4:
                        top = int(counts.max())
                        j = int(first[counts == top].min())  # ties: first seen
                    else:
                        sig[f"dup_{n}_gram"] = _greedy_chars(np.sort(pos[pos != first[np.cumsum(new) - 1]]),
                                                             n, cl) / total_chars
                    repeated = np.repeat(counts > 1, counts)
                    cand, hc = pos[repeated], hs[repeated]
            if n <= 4:
                sig[f"top_{n}_gram"] = float((cl[j + n] - cl[j] + n - 1) * top) / total_chars


def _greedy_chars(dup: np.ndarray, n: int, cl: np.ndarray) -> int:
    """Characters of the n-grams at the sorted positions ``dup`` taken left to right,
    skipping any that overlaps the last one taken."""
    nxt = np.searchsorted(dup, dup + n).tolist()
    k, taken = 0, []
    while k < len(nxt):
        taken.append(k)
        k = nxt[k]
    d = dup[taken]
    return int((cl[d + n] - cl[d]).sum())


def gopher_repetition(text: str, words: list[str], t: dict) -> dict:
    sig: dict = {}
    n = len(text)
    paras = _PARA.split(text.strip())
    d, c = dup_counts(paras)
    sig["dup_para_frac"] = d / len(paras)
    sig["dup_para_char_frac"] = c / n if n else 0.0
    lines = _LINES.split(text)
    d, c = dup_counts(lines)
    sig["dup_line_frac"] = d / len(lines)
    sig["dup_line_char_frac"] = c / n if n else 0.0
    _ngram_repetition(words, n, sig)
    return sig


def gopher_quality(text: str, words: list[str], t: dict, stop_words: frozenset) -> dict:
    """Symbols are tokens made only of punctuation/symbol/control characters (PUNCT);
    alpha words are tokens with a word character that is not a digit or "_" (a letter,
    or a numeric that is not a decimal digit). Each distinct token is looked at once."""
    n_all = len(words)
    n_sym = sym_chars = n_nonalpha = n_stop = 0
    for w, c in Counter(words).items():
        if w.isalpha() or not w:  # the usual word: no symbol, has a letter
            pass
        elif not any(map(str.isalnum, w)):
            n_nonalpha += c
            if all(map(PUNCT.__contains__, w)):
                n_sym += c
                sym_chars += c * len(w)
        elif not any(ch.isalnum() and not ch.isdecimal() for ch in w):
            n_nonalpha += c
        if w in stop_words:
            n_stop += c
    n = n_all - n_sym
    sig = {"n_words": float(n)}
    sig["mean_word_length"] = ((sum(map(len, words)) - sym_chars) / n) if n else 0.0
    sig["hash_ratio"] = text.count("#") / n_all if n_all else 0.0
    sig["ellipsis_ratio"] = (text.count("...") + text.count("…")) / n_all if n_all else 0.0
    lines = text.splitlines() or [""]
    sig["bullet_lines_ratio"] = sum(1 for s in lines if s.lstrip().startswith(("•", "-"))) / len(lines)
    sig["end_ellipsis_lines_ratio"] = sum(1 for s in lines if s.rstrip().endswith(("...", "…"))) / len(lines)
    sig["alpha_words_ratio"] = (n_all - n_nonalpha) / n_all if n_all else 0.0
    sig["stop_words"] = float(n_stop) if stop_words else math.nan
    return sig
