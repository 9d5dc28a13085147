"""The gate every LLM-made variant of an instruction passes (language, similarity,
length, refusal/preamble), with the reason it is refused."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..common import cjk_ratio, tokens
from ..filters import PairFilter
from ..rouge import rouge_l

_PREAMBLE = re.compile(r"^\s*(sure|certainly|of course|here('s| is| are)\b|paraphrased?\b|rewritten\b|"
                       r"以下是|下面是|改写后|好的[，,])", re.I)


@dataclass
class VariantGate:
    """Checks every generated variant of an instruction against its source; a reason or None.

    * ``lang_changed`` - the variant is not in the source's language (script-based:
      Chinese if a fifth of the non-space characters are CJK);
    * ``too_similar`` / ``too_different`` - ROUGE-L F against the source (words; jieba
      words for Chinese) above ``max_similarity`` (a copy) or below ``min_similarity``
      (another task, or gibberish); back-translations and expansions use their own floors;
    * ``length_ratio`` - variant/source characters outside [``min_ratio``, ``max_ratio``];
    * ``refusal_boilerplate`` - a refusal or "as an AI" phrase (the packaged lists), or
      a chatty preamble ("Sure, here is the paraphrased instruction:", "以下是改写后的指令").
    """
    min_similarity: float = 0.2
    max_similarity: float = 0.95
    min_ratio: float = 0.5
    max_ratio: float = 2.0
    expand_max_ratio: float = 5.0
    _filter: PairFilter | None = None

    def __call__(self, source: str, variant: str, kind: str) -> str | None:
        if self._filter is None:
            self._filter = PairFilter(check_lang=False)
        src_zh, var_zh = cjk_ratio(source) >= 0.2, cjk_ratio(variant) >= 0.2
        if src_zh != var_zh:
            return "lang_changed"
        if _PREAMBLE.search(variant) or self._filter.refusal(variant):
            return "refusal_boilerplate"
        ratio = len(variant.strip()) / max(1, len(source.strip()))
        if ratio < self.min_ratio or ratio > (self.expand_max_ratio if kind == "expand" else self.max_ratio):
            return "length_ratio"
        a, b = tokens(source), tokens(variant)
        vocab: dict[str, int] = {}
        sim = rouge_l([vocab.setdefault(t, len(vocab)) for t in a], [vocab.setdefault(t, len(vocab)) for t in b]) \
            if a and b else 0.0
        floor = self.min_similarity / 2 if kind in ("expand", "back_translation") else self.min_similarity
        if sim < floor:
            return "too_different"
        if sim > self.max_similarity:
            return "too_similar"
        return None
