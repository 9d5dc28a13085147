"""Back-translation of instructions (en->zh->en, zh->en->zh): through chat prompts to
a generation backend, or through a local seq2seq translation model (any object with
``translate(texts, src, tgt)``, e.g. ``Seq2SeqTranslator``)."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..backends import Backend, ChatRequest, ChatResult
from .variant import VariantRequest

TRANSLATE_PROMPT = {
    "en": "Translate the following text into {target}. Keep every placeholder like [[CODE0]]. "
          "Reply with the translation only.\n\n{text}",
    "zh": "请把下面的文字翻译成{target}，保留所有形如[[CODE0]]的占位符。只输出译文。\n\n{text}",
}
LANG_NAME = {"en": {"en": "English", "zh": "Chinese"}, "zh": {"en": "英文", "zh": "中文"}}
PIVOT = {"en": "zh", "zh": "en"}


@runtime_checkable
class Translator(Protocol):
    """A local translation model: texts in language ``src`` -> texts in ``tgt``, in order."""

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]: ...


def back_translate(backend: Backend | Translator, items: list[VariantRequest], params: dict,
                   seed: int) -> list[str | None]:
    """One round trip per item (through the other language and back), None on a backend error."""
    if isinstance(backend, Translator):
        return _through_translator(backend, items)
    return _through_chat(backend, items, params, seed)


def _through_translator(translator: Translator, items: list[VariantRequest]) -> list[str | None]:
    out: list[str | None] = [None] * len(items)
    for lg in ("en", "zh"):
        idx = [i for i, item in enumerate(items) if item.lang == lg]
        if not idx:
            continue
        mid = translator.translate([items[i].text for i in idx], lg, PIVOT[lg])
        back = translator.translate(mid, PIVOT[lg], lg)
        for i, b in zip(idx, back):
            out[i] = b
    return out


def _translate_request(text: str, src: str, tgt: str, params: dict, seed: int) -> ChatRequest:
    prompt = TRANSLATE_PROMPT[src].format(text=text, target=LANG_NAME[src][tgt])
    return ChatRequest([{"role": "user", "content": prompt}], dict(params, seed=seed))


def _through_chat(backend: Backend, items: list[VariantRequest], params: dict, seed: int) -> list[str | None]:
    fw = backend.chat([_translate_request(it.text, it.lang, PIVOT[it.lang], params, seed + it.variant)
                       for it in items])
    bw = backend.chat([_translate_request(f.text or "", PIVOT[it.lang], it.lang, params, seed + it.variant)
                       for it, f in zip(items, fw)])
    return [_text(f, b) for f, b in zip(fw, bw)]


def _text(forward: ChatResult, back: ChatResult) -> str | None:
    return back.text if not (forward.error or back.error) else None


class Seq2SeqTranslator:
    """Back-translation through local HF seq2seq translation models (MarianMT, NLLB, ...):
    ``models`` maps ``"en-zh"`` / ``"zh-en"`` to model directories. Greedy decoding."""

    def __init__(self, models: dict[str, str], max_new_tokens: int = 256, batch_size: int = 16):
        self.paths, self.max_new_tokens, self.batch_size = models, max_new_tokens, batch_size
        self._loaded: dict[str, tuple[Any, Any]] = {}
        self.stats = {"translated": 0}

    def _model(self, pair_: str) -> tuple[Any, Any]:
        if pair_ not in self._loaded:
            if pair_ not in self.paths:
                raise ValueError(f"no translation model for {pair_}; have {sorted(self.paths)}")
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(self.paths[pair_])
            model = AutoModelForSeq2SeqLM.from_pretrained(self.paths[pair_]).eval()
            self._loaded[pair_] = (tok, model)
        return self._loaded[pair_]

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        import torch

        tok, model = self._model(f"{src}-{tgt}")
        out: list[str] = []
        for i in range(0, len(texts), self.batch_size):
            enc = tok(texts[i:i + self.batch_size], return_tensors="pt", padding=True, truncation=True)
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False)
            out += tok.batch_decode(gen, skip_special_tokens=True)
        self.stats["translated"] += len(texts)
        return out

    def close(self) -> None:
        self._loaded.clear()
