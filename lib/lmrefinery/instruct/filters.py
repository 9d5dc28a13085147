"""Filters for instruction/response pairs; each rejection has a reason.

* ``no_instruction`` / ``empty_response`` / ``response_too_short`` - label-style
  answers are exempt from the minimum: classification / NLI / yes-no rows
  (category or task, ``is_classification``), an answer that is one of the
  options the instruction lists, or a known label word (yes/no/true/false,
  是/否/对/错/积极/消极..., A-D); a single Chinese character is such an answer
* ``turn_too_long`` - any turn longer than ``max_turn_chars``
* ``ifd_too_high`` / ``judge_score_too_low`` - scores from ``instruct score`` /
  the ``instruct_score`` stage (``scoring.py``) against ``max_ifd`` / ``min_judge_score``
* ``response_repetitive`` - an assistant turn of at least ``repetition_min_words``
  words whose word 4-grams are more than ``max_repetition`` repeats (1 - distinct/total)
  (looping generations: "the the the", a sentence pasted ten times)
* ``response_copies_instruction`` - the response repeats the instruction
  (identical after normalisation, or ROUGE-L >= ``copy_threshold``)
* ``refusal_boilerplate`` - refusals and "as an AI language model" phrases
  (packaged ``instruct/data/refusals_{en,zh}.txt``; user lists can be added)
* ``lang_mismatch`` - instruction and response in different languages
  (per-turn ``lang`` from normalisation, else fastText; translation tasks and
  code-only responses exempt)
Exact and near duplicates and decontamination are separate stages that reuse
the dedup family (``instruct_dedup``, ``dedup``, ``decontaminate``).
"""
from __future__ import annotations

import os
import re
import unicodedata
from functools import lru_cache
from typing import TYPE_CHECKING

from .common import cjk_ratio, conf_file, messages, pair, split_code, tokens
from .rouge import rouge_l
from .tools import has_tools

if TYPE_CHECKING:
    from .normalize import LangID


@lru_cache(maxsize=32)
def load_phrases(path: str) -> tuple[str, ...]:
    """A phrase list: a file path, or the name of a packaged list (refusals_en.txt)."""
    if os.path.isabs(path) or os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        text = conf_file(path).read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            out.append(_fold(s))
    return tuple(out)


def _fold(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).lower()
    return s.replace("\u2019", "'").replace("\u2018", "'")


def _norm(s: str) -> str:
    return re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", s or "").casefold()).strip()


LABEL_CATEGORIES = ("classification", "nli", "sentiment", "yes_no", "multiple_choice", "closed_qa",
                    "brainstorming_label", "text_classification", "natural_language_inference")
LABEL_WORDS = frozenset(
    "yes no true false correct incorrect positive negative neutral entailment contradiction maybe none "
    "a b c d e 是 否 对 错 不 不是 正确 错误 积极 消极 中性 正面 负面 真 假 能 不能 有 没有 会 不会 可以 不可以 "
    "蕴含 矛盾 无法确定 对的 错的".split())


class PairFilter:
    def __init__(self, min_response_words: int = 1, min_response_chars: int = 2, copy_threshold: float = 0.9,
                 refusal_lists: list[str] | None = None, check_lang: bool = True, lid_model: str | None = None,
                 exempt_categories: tuple[str, ...] = ("translation",), all_turns: bool = True,
                 min_lang_letters: int = 20, min_lang_score: float = 0.5, max_turn_chars: int | None = 32000,
                 max_repetition: float = 0.5, repetition_min_words: int = 30,
                 label_categories: tuple[str, ...] = LABEL_CATEGORIES, max_ifd: float | None = None,
                 min_judge_score: float | None = None):
        self.min_words, self.min_chars = min_response_words, min_response_chars
        self.copy_threshold = copy_threshold
        lists = refusal_lists if refusal_lists is not None else ["refusals_en.txt", "refusals_zh.txt"]
        self.phrases = tuple(p for f in lists for p in load_phrases(f))
        self.check_lang = check_lang
        self.lid_model = lid_model
        self.exempt = set(exempt_categories)
        self.all_turns = all_turns
        self.min_lang_letters, self.min_lang_score = min_lang_letters, min_lang_score
        self.max_turn_chars = max_turn_chars
        self.max_repetition, self.repetition_min_words = max_repetition, repetition_min_words
        self.label_categories = set(label_categories)
        self.max_ifd, self.min_judge_score = max_ifd, min_judge_score
        self._lid: LangID | None = None

    def lid(self, text: str):
        if self._lid is None:
            from .normalize import LangID

            self._lid = LangID(self.lid_model)
        return self._lid(text)

    def refusal(self, text: str) -> str | None:
        t = _fold(text)
        for p in self.phrases:
            if p in t:
                return p
        return None

    def __call__(self, row: dict) -> str | None:
        ins, resp = pair(row)
        if not ins.strip():
            return "no_instruction"
        if not resp.strip():
            return "empty_response"
        r = resp.strip()
        if (len(r) < self.min_chars or _approx_words(r) < self.min_words) and \
                not is_label_answer(ins, r, row.get("meta") or {}, self.label_categories):
            return "response_too_short"
        if self.max_turn_chars and any(len(m.get("content") or "") > self.max_turn_chars for m in messages(row)):
            return "turn_too_long"
        for m in messages(row):
            if m["role"] == "assistant" and repetition(m.get("content") or "", self.repetition_min_words) \
                    > self.max_repetition:
                return "response_repetitive"
        if _norm(ins) == _norm(resp):
            return "response_copies_instruction"
        if self.copy_threshold <= 1.0 and _approx_words(r) >= 3:
            li_, lr_ = _approx_words(ins), _approx_words(r)
            if 2.0 * min(li_, lr_) / (li_ + lr_) >= self.copy_threshold * 0.8:   # cheap length bound first
                itoks, rtoks = tokens(ins), tokens(resp)
                vocab: dict[str, int] = {}
                a = [vocab.setdefault(t, len(vocab)) for t in itoks]
                b = [vocab.setdefault(t, len(vocab)) for t in rtoks]
                if a and b and rouge_l(a, b) >= self.copy_threshold:
                    return "response_copies_instruction"
        meta = row.get("meta") or {}
        if self.max_ifd is not None and meta.get("ifd") is not None and meta["ifd"] >= self.max_ifd:
            return "ifd_too_high"
        if self.min_judge_score is not None and meta.get("judge_score") is not None and \
                meta["judge_score"] < self.min_judge_score:
            return "judge_score_too_low"
        turns = [m for m in messages(row) if m["role"] == "assistant"] if self.all_turns else [{"content": resp}]
        for m in turns:
            if self.refusal(m.get("content") or ""):
                return "refusal_boilerplate"
        if self.check_lang and not has_tools(messages(row)):   # calls are JSON, not a language
            meta = row.get("meta") or {}
            if meta.get("category") in self.exempt or meta.get("task") in self.exempt or _TRANSLATE.search(ins):
                return None
            li = self._turn_lang(row, "user", ins)
            lr = self._turn_lang(row, "assistant", resp)
            if li and lr and _lang_group(li) != _lang_group(lr):
                # the response language is present in the instruction (quoted text, code comments...)
                if _lang_group(lr) == "zh" and cjk_ratio(ins) > 0.05:
                    return None
                if _lang_group(lr) == "en" and len(_LATIN.findall(ins)) >= 3 and _lang_group(li) == "zh":
                    return None
                return "lang_mismatch"
        return None

    def _turn_lang(self, row: dict, role: str, text: str) -> str | None:
        """Language of the turn when it is confidently known: enough prose
        (code removed) and a lid score of at least `min_lang_score`."""
        prose = " ".join(c for code, c in split_code(text) if not code).strip()
        letters = sum(1 for ch in prose if ch.isalpha())
        if letters < self.min_lang_letters:
            return None  # code-only, numbers, a word or two: nothing to compare
        for m in messages(row):
            if m["role"] == role and "lang" in m:
                if m.get("lang_score") is not None and m["lang_score"] < self.min_lang_score:
                    return None
                return m["lang"]
        lang, score = self.lid(text)
        return lang if score >= self.min_lang_score else None


_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?%?")
_OPTION_SPLIT = re.compile(r"[\n,，、;；/|]|\s+or\s+|或者?|还是")


def is_label_answer(instruction: str, response: str, meta: dict,
                    label_categories: set | tuple = LABEL_CATEGORIES) -> bool:
    """A short answer that is a label: the row is a classification-type task, or
    the answer is a known label word, one of the options the instruction lists,
    or a single CJK character."""
    r = _fold(response).strip().strip(".。!！")
    if not r or _approx_words(r) > 4:
        return False
    if meta.get("is_classification") or meta.get("category") in label_categories or \
            meta.get("task") in label_categories:
        return True
    if r in LABEL_WORDS or (len(r) == 1 and _CJK_CHARS.match(r)) or _NUMBER.fullmatch(r):
        return True
    options = {o.strip(" -*:：\"'“”()（）").lower() for o in _OPTION_SPLIT.split(_fold(instruction))}
    return r in options


def repetition(text: str, min_words: int = 30, n: int = 4) -> float:
    """1 - distinct/total word n-grams of the prose (code blocks left out); 0 for short texts.
    A generation stuck in a loop scores near 1, ordinary prose near 0."""
    prose = " ".join(c for code, c in split_code(text) if not code)
    t = tokens(prose)
    if len(t) < max(min_words, n):
        return 0.0
    grams = [tuple(t[i:i + n]) for i in range(len(t) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams)


_TRANSLATE = re.compile(r"translat|翻译|译成|译为|譯", re.I)
_LATIN = re.compile(r"[A-Za-z]{2,}")


def _approx_words(text: str) -> int:
    """Whitespace words, with each CJK character counted as a word (no segmentation needed)."""
    n_cjk = len(_CJK_CHARS.findall(text))
    if not n_cjk:
        return len(text.split())
    return n_cjk + len(_CJK_CHARS.sub(" ", text).split())


_CJK_CHARS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _lang_group(lang: str) -> str:
    # variants that are the same written language for this purpose
    return {"wuu": "zh", "yue": "zh", "nn": "no", "nb": "no"}.get(lang, lang)
