"""Heuristic quality rules: Gopher quality, Gopher repetition, C4, FineWeb
(+ a CJK punctuation-density rule of ours).

Each rule set computes named *signals* for a document and compares them with
named *thresholds*; a check that fails yields a reason ``<rule>:<check>``.
Defaults are the published values, following DataTrove's implementation
(``datatrove.pipeline.filters``). Per-language settings (tokenizer, stop words,
threshold overrides) come from ``quality/languages/<lang>.yaml`` (package data).

Speed: one tokenisation per document (the regex only on chunks that are not plain
words; Chinese by rjieba); n-gram repetition uses 64-bit rolling hashes of word
hashes in numpy, only at positions whose shorter n-gram repeats; token classes are
decided once per distinct token.
"""
from __future__ import annotations

import math
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# ------------------------------------------------------------------ defaults
DEFAULTS: dict[str, dict] = {
    "gopher_repetition": {
        "enabled": True,
        "dup_para_frac": 0.3, "dup_para_char_frac": 0.2,
        "dup_line_frac": 0.3, "dup_line_char_frac": 0.2,
        "top_2_gram": 0.2, "top_3_gram": 0.18, "top_4_gram": 0.16,
        "dup_5_gram": 0.15, "dup_6_gram": 0.14, "dup_7_gram": 0.13,
        "dup_8_gram": 0.12, "dup_9_gram": 0.11, "dup_10_gram": 0.10,
    },
    "gopher_quality": {
        "enabled": True,
        "min_doc_words": 50, "max_doc_words": 100_000,
        "min_avg_word_length": 3.0, "max_avg_word_length": 10.0,
        "max_symbol_word_ratio": 0.1,
        "max_bullet_lines_ratio": 0.9, "max_ellipsis_lines_ratio": 0.3,
        "min_alpha_words_ratio": 0.8, "min_stop_words": 2,
    },
    "c4": {
        "enabled": True,
        "min_num_sentences": 5, "min_words_per_line": 3, "max_word_length": 1000,
        "remove_citations": True, "filter_no_terminal_punct": True, "filter_lorem_ipsum": True,
        "filter_javascript": True, "filter_curly_bracket": True, "filter_policy": True,
    },
    "fineweb": {
        "enabled": True,
        "line_punct_thr": 0.12, "line_punct_exclude_zero": False, "short_line_thr": 0.67,
        "short_line_length": 30, "char_duplicates_ratio": 0.01, "new_line_ratio": 0.3,
        "line_end_extra": "",   # more characters that end a line (e.g. "，、；：" for hard-wrapped CJK)
    },
    "cjk": {
        "enabled": True,
        "min_punct_per_100_chars": None,   # set per language (zh, ja)
    },
}
RULE_ORDER = ["gopher_repetition", "gopher_quality", "c4", "fineweb", "cjk"]

# (check name, signal, "min"|"max", threshold key). "max": fires when signal > thr;
# "min": fires when signal < thr. A threshold of None disables the check.
CHECKS: dict[str, list[tuple[str, str, str, str]]] = {
    "gopher_repetition": [
        ("dup_para_frac", "dup_para_frac", "max", "dup_para_frac"),
        ("dup_para_char_frac", "dup_para_char_frac", "max", "dup_para_char_frac"),
        ("dup_line_frac", "dup_line_frac", "max", "dup_line_frac"),
        ("dup_line_char_frac", "dup_line_char_frac", "max", "dup_line_char_frac"),
        *[(f"top_{n}_gram", f"top_{n}_gram", "max", f"top_{n}_gram") for n in (2, 3, 4)],
        *[(f"dup_{n}_gram", f"dup_{n}_gram", "max", f"dup_{n}_gram") for n in range(5, 11)],
    ],
    "gopher_quality": [
        ("short_doc", "n_words", "min", "min_doc_words"),
        ("long_doc", "n_words", "max", "max_doc_words"),
        ("mean_word_length", "mean_word_length", "min", "min_avg_word_length"),
        ("mean_word_length", "mean_word_length", "max", "max_avg_word_length"),
        ("hash_ratio", "hash_ratio", "max", "max_symbol_word_ratio"),
        ("ellipsis_ratio", "ellipsis_ratio", "max", "max_symbol_word_ratio"),
        ("bullet_lines", "bullet_lines_ratio", "max", "max_bullet_lines_ratio"),
        ("end_ellipsis_lines", "end_ellipsis_lines_ratio", "max", "max_ellipsis_lines_ratio"),
        ("alpha_words", "alpha_words_ratio", "min", "min_alpha_words_ratio"),
        ("stop_words", "stop_words", "min", "min_stop_words"),
    ],
    "c4": [
        ("lorem_ipsum", "lorem_ipsum", "max", "_flag"),
        ("curly_bracket", "curly_bracket", "max", "_flag"),
        ("too_few_sentences", "n_sentences", "min", "min_num_sentences"),
    ],
    "fineweb": [
        ("empty", "n_lines", "min", "_one"),
        ("line_punct_ratio", "line_punct_ratio", "min", "line_punct_thr"),
        ("short_line_ratio", "short_line_ratio", "max", "short_line_thr"),
        ("char_dup_ratio", "char_dup_ratio", "max", "char_duplicates_ratio"),
        ("newline_ratio", "newline_ratio", "max", "new_line_ratio"),
    ],
    "cjk": [
        ("punct_density", "punct_per_100_chars", "min", "min_punct_per_100_chars"),
    ],
}
SIGNALS: dict[str, list[str]] = {r: list(dict.fromkeys(c[1] for c in cs)) for r, cs in CHECKS.items()}
SIGNALS["c4"].append("lines_removed_frac")


def signal_column(rule: str, signal: str) -> str:
    return f"q_{rule}_{signal}"


# ------------------------------------------------------------------ characters
def _build_punct() -> frozenset[str]:
    chars = set()
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        cat = unicodedata.category(c)
        if cat[0] in "PS" or cat == "Cc":
            chars.add(c)
    return frozenset(chars)


PUNCT = _build_punct()
# the set DataTrove and FineWeb call TERMINAL_PUNCTUATION (sentence-final marks in many scripts)
TERMINAL = tuple(sorted(set(
    "!.?։؝؞؟۔܀܁܂߹࠷࠹࠽࠾।॥၊။።፧፨᙮᜵᜶។៕៖៙៚᠃᠉᥄᥅᪨᪩᪪᪫᭚᭛᭞᭟᭽᭾᰻᰼᱾᱿‼‽⁇⁈⁉⸮⸼⹓⹔。꓿꘎꘏꛳꛷꡶꡷꣎꣏꤯꧈꧉꩝꩞꩟꫰꫱꯫﹒﹖﹗！．？｡"
    "𐩖𐩗𐽕𐽖𐽗𐽘𐽙𐾆𐾇𐾈𐾉𑁇𑁈𑂾𑂿𑃀𑃁𑅁𑅂𑅃𑇅𑇆𑇍𑇞𑇟𑈸𑈹𑈻𑈼𑊩𑑋𑑌𑗂𑗃𑗉𑗊𑗋𑗌𑗍𑗎𑗏𑗐𑗑𑗒𑗓𑗔𑗕𑗖𑗗𑙁𑙂𑜼𑜽𑜾𑥄𑥆𑩂𑩃𑪛𑪜𑱁𑱂𑻷𑻸\U00011f43\U00011f44𖩮𖩯𖫵𖬷𖬸𖭄𖺘𛲟𝪈")))
CJK_PUNCT = "，。、；：？！「」『』（）《》〈〉…—·,.;:?!"

# ------------------------------------------------------------------ tokenisers
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


_cut = None


def _chinese_cutter() -> Callable[[str], list[str]]:
    """rjieba's ``cut(text, hmm=False)`` (jieba-rs: jieba's dictionary and DAG search in
    Rust, ~10x faster); jieba's own ``lcut(text, HMM=False)`` if rjieba cannot be
    imported (same tokens, slower; a warning says so)."""
    try:
        import rjieba

        return lambda text: rjieba.cut(text, hmm=False)
    except ImportError:
        import logging
        import warnings

        import jieba

        warnings.warn("rjieba is not installed: Chinese quality tokens come from jieba (same tokens, ~10x slower)",
                      stacklevel=2)
        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        return lambda text: jieba.lcut(text, HMM=False)


def tok_jieba(text: str) -> list[str]:
    """Chinese words: jieba's dictionary segmentation without HMM, whitespace tokens
    dropped. tests/test_quality_fast.py checks that rjieba's tokens equal jieba's on
    the Chinese texts of the shared corpora."""
    global _cut
    if _cut is None:
        _cut = _chinese_cutter()
    return [w for w in (t.strip() for t in _cut(text)) if w]


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {
    "regex": tok_regex, "jieba": tok_jieba, "script_runs": tok_script_runs}


# ------------------------------------------------------------------ language configuration
def conf_folder(conf_dir: str | None = None):
    """The per-language rule sets: ``conf_dir`` if given, else ``$LMR_QUALITY_CONF``,
    else the package's ``quality/languages``. A missing folder is an error."""
    from ..core.resources import config_folder

    return config_folder(conf_dir, "LMR_QUALITY_CONF", __package__, "languages")


@dataclass
class LangConf:
    lang: str
    tokenizer: str = "regex"
    stop_words: frozenset = frozenset()
    rules: dict[str, dict] = field(default_factory=dict)


def load_lang_confs(conf_dir: str | None, overrides: dict[str, dict] | None = None,
                    lang_overrides: dict[str, dict] | None = None) -> dict[str, LangConf]:
    """Per-language settings: defaults <- quality/languages/<lang>.yaml <- stage
    `thresholds` (all languages) <- stage `languages.<lang>`. Key "default" is
    used for languages without a file (English thresholds, no stop-word list)."""
    import yaml

    from ..core.resources import files_in

    raw: dict[str, dict] = {}
    for f in files_in(conf_folder(conf_dir), (".yaml", ".yml")):
        raw[f.name.rsplit(".", 1)[0]] = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
    for lang, extra in (lang_overrides or {}).items():
        base = raw.setdefault(lang, {})
        for k, v in extra.items():
            if k == "rules":
                for r, vals in v.items():
                    base.setdefault("rules", {}).setdefault(r, {}).update(vals)
            else:
                base[k] = v
    raw.setdefault("default", {})
    out = {}
    for lang, c in raw.items():
        rules = {}
        for r in RULE_ORDER:
            vals = dict(DEFAULTS[r])
            for k, v in ((overrides or {}).get(r) or {}).items():
                _check_key(r, k)
                vals[k] = v
            for k, v in ((c.get("rules") or {}).get(r) or {}).items():
                _check_key(r, k)
                vals[k] = v
            rules[r] = vals
        for r in (c.get("rules") or {}):
            if r not in DEFAULTS:
                raise ValueError(f"quality conf {lang}: unknown rule {r!r}; known: {RULE_ORDER}")
        tok = c.get("tokenizer", "regex")
        if tok not in TOKENIZERS:
            raise ValueError(f"quality conf {lang}: unknown tokenizer {tok!r}; known: {list(TOKENIZERS)}")
        out[lang] = LangConf(lang, tok, frozenset(c.get("stop_words") or []), rules)
    return out


def _check_key(rule: str, key: str) -> None:
    if rule not in DEFAULTS:
        raise ValueError(f"unknown quality rule {rule!r}; known: {RULE_ORDER}")
    if rule == "c4" and key == "rewrite":
        raise ValueError("c4.rewrite was removed: the quality stage never changes text; to drop the lines "
                         "C4 would drop, add the `c4_lines` stage before `quality`")
    if key not in DEFAULTS[rule]:
        raise ValueError(f"unknown threshold {rule}.{key}; known: {sorted(DEFAULTS[rule])}")


# ------------------------------------------------------------------ helpers
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


# ------------------------------------------------------------------ rule sets
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


_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_SENT_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s+[^a-z]|\s*$)")
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
        n_sent += max(1, len(_SENT_END.findall(line)))
        n_kept += 1
    return {"lorem_ipsum": lorem, "curly_bracket": curly, "n_sentences": float(n_sent),
            "lines_removed_frac": (1 - n_kept / len(lines)) if lines else 0.0}


def fineweb(text: str, n_words: int, t: dict) -> dict:
    lines = [ln for ln in text.split("\n") if ln.strip() != ""]
    sig = {"n_lines": float(len(lines))}
    if not lines:
        sig.update(line_punct_ratio=0.0, short_line_ratio=0.0, char_dup_ratio=0.0, newline_ratio=0.0)
        return sig
    ends = TERMINAL + tuple(t.get("line_end_extra") or "")
    sig["line_punct_ratio"] = sum(1 for ln in lines if ln.endswith(ends)) / len(lines)
    sl = t["short_line_length"]
    sig["short_line_ratio"] = sum(1 for ln in lines if len(ln) <= sl) / len(lines)
    denom = len(text) - text.count("\n")
    sig["char_dup_ratio"] = dup_counts(lines)[1] / denom if denom else 0.0
    sig["newline_ratio"] = text.count("\n") / n_words if n_words else math.inf
    return sig


def cjk(text: str, t: dict) -> dict:
    chars = len(text) - text.count(" ") - text.count("\n")
    if not chars:
        return {"punct_per_100_chars": 0.0}
    p = sum(text.count(c) for c in CJK_PUNCT)
    return {"punct_per_100_chars": 100.0 * p / chars}


def _fires(sig: float, op: str, thr) -> bool:
    if thr is None or sig is None or (isinstance(sig, float) and math.isnan(sig)):
        return False
    return sig > thr if op == "max" else sig < thr


@dataclass
class Verdict:
    signals: dict[str, dict[str, float]]   # rule -> signal -> value
    reasons: list[str]                     # every check that fired, in rule order


def evaluate(text: str, conf: LangConf, rules: list[str], all_signals: bool = True) -> Verdict:
    """Run the rule sets in order on one document. With all_signals=False the
    evaluation stops at the first rule set that fires (faster, fewer signals)."""
    text = text or ""
    tok = TOKENIZERS[conf.tokenizer]
    words: list[str] | None = None
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
        if r in ("gopher_repetition", "gopher_quality") and words is None:
            words = tok(text)
        if r == "gopher_repetition":
            sig = gopher_repetition(text, words, t)
        elif r == "gopher_quality":
            sig = gopher_quality(text, words, t, conf.stop_words)
        elif r == "c4":
            sig = c4(text, t)
        elif r == "fineweb":
            sig = fineweb(text, len(words) if words is not None else len(tok(text)), t)
        else:
            sig = cjk(text, t)
        signals[r] = sig
        fired = []
        for check, s, op, key in CHECKS[r]:
            thr = 0.0 if key == "_flag" else 1.0 if key == "_one" else t.get(key)
            if key == "_flag" and not t.get(f"filter_{check}", True):
                continue
            if _fires(sig.get(s), op, thr):
                fired.append(f"{r}:{check}")
        reasons.extend(fired)
        if fired and not all_signals:
            break
    return Verdict(signals, reasons)
