"""Augmentation. Every new record has ``origin`` (``paraphrase``, ``expand``,
``back_translation``, ``synonyms``) and ``parent_id``.

* Through a generation backend: paraphrase the instruction, expand it into a
  more detailed one (then answer it), or back-translate it (en->zh->en,
  zh->en->zh). Code blocks are swapped for placeholders before the text goes
  to the model and put back verbatim after; output that loses a placeholder is
  rejected (``code_block_lost``).
* Synonym substitution: word vectors trained with fastText (skipgram) on the
  run's own records (Chinese segmented with jieba), or a user dictionary
  (``word<TAB>syn1,syn2``); a seeded fraction of eligible words outside code
  is replaced by a neighbour above a cosine threshold.
"""
from __future__ import annotations

import os
import random
import re
import tempfile
from dataclasses import dataclass

from .backends import Backend, ChatRequest
from .common import _jieba_cut, has_cjk, make_record, messages, pair, split_code

PROMPTS = {
    "paraphrase": {"en": "Paraphrase the following instruction. Keep its meaning and every placeholder like "
                         "[[CODE0]] unchanged. Reply with the new instruction only.\n\n{text}",
                   "zh": "请改写下面的指令，保持意思不变，保留所有形如[[CODE0]]的占位符。只输出改写后的指令。\n\n{text}"},
    "expand": {"en": "Rewrite the following instruction so that it is more detailed and specific. Keep every "
                     "placeholder like [[CODE0]]. Reply with the new instruction only.\n\n{text}",
               "zh": "请把下面的指令改写得更具体、更详细，保留所有形如[[CODE0]]的占位符。只输出新的指令。\n\n{text}"},
    "translate": {"en": "Translate the following text into {target}. Keep every placeholder like [[CODE0]]. "
                        "Reply with the translation only.\n\n{text}",
                  "zh": "请把下面的文字翻译成{target}，保留所有形如[[CODE0]]的占位符。只输出译文。\n\n{text}"},
}
LANG_NAME = {"en": {"en": "English", "zh": "Chinese"}, "zh": {"en": "英文", "zh": "中文"}}
_PH = re.compile(r"\[\[CODE(\d+)\]\]")


def protect(text: str) -> tuple[str, list[str]]:
    codes, out = [], []
    for is_code, chunk in split_code(text):
        if is_code:
            out.append(f"[[CODE{len(codes)}]]")
            codes.append(chunk)
        else:
            out.append(chunk)
    return "".join(out), codes


def restore(text: str, codes: list[str]) -> str | None:
    found = [int(x) for x in _PH.findall(text or "")]
    if sorted(found) != list(range(len(codes))):
        return None
    return _PH.sub(lambda m: codes[int(m.group(1))], text)


def _lang(text: str) -> str:
    return "zh" if has_cjk(text) else "en"


def _replace_instruction(row: dict, new_ins: str, origin: str, source: str, extra: dict,
                         new_response: str | None = None) -> dict:
    msgs = [dict(m) for m in messages(row)]
    for m in msgs:
        m.pop("lang", None)
    for m in msgs:
        if m["role"] == "user":
            m["content"] = new_ins
            break
    if new_response is not None:
        for m in msgs:
            if m["role"] == "assistant":
                m["content"] = new_response
                break
    meta = row.get("meta") or {}
    return make_record(msgs, source or row.get("source") or "augment", origin=origin, parent_id=row["id"],
                       id_parts=(origin,), lang=row.get("lang"), category=meta.get("category", "uncategorized"),
                       **extra)


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
    _filter: object = None

    def __call__(self, source: str, variant: str, kind: str) -> str | None:
        from .common import cjk_ratio, tokens
        from .filters import PairFilter
        from .rouge import rouge_l

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


_PREAMBLE = re.compile(r"^\s*(sure|certainly|of course|here('s| is| are)\b|paraphrased?\b|rewritten\b|"
                       r"以下是|下面是|改写后|好的[，,])", re.I)


def llm_augment(rows: list[dict], backend: Backend, kind: str, params: dict | None = None,
                answer: bool | None = None, source: str | None = None, n_variants: int = 1, seed: int = 0,
                gate: VariantGate | None = None) -> tuple[list[dict], list[dict]]:
    """kind: paraphrase | expand | back_translation. ``n_variants`` requests per row (seeds
    ``seed``, ``seed+1``, ...; identical variants kept once); every variant passes ``gate``
    (reasons in the rejects). A backend with ``translate(texts, src, tgt)`` (a local
    seq2seq translation model) is used for back-translation instead of chat prompts."""
    params = dict(params or {"temperature": 0.7, "max_tokens": 256})
    gate = gate or VariantGate()
    answer = (kind == "expand") if answer is None else answer
    prepared = []
    for r in rows:
        ins, _ = pair(r)
        if ins:
            text, codes = protect(ins)
            for k in range(max(1, n_variants)):
                prepared.append((r, text, codes, _lang(ins), k))
    results = _generate(backend, kind, prepared, params, seed)
    restored = [restore(txt.strip(), codes) if txt is not None else None
                for (_, _, codes, _, _), txt in zip(prepared, results)]
    out, rejects, seen = [], [], set()
    keep = []
    for (r, _t, codes, _lg, k), new in zip(prepared, restored):
        ins, _ = pair(r)
        why = None
        if new is None:
            why = "code_block_lost" if codes else "backend_error_or_empty"
        elif not new.strip():
            why = "empty_output"
        elif new.strip() == ins.strip() or (r["id"], new.strip()) in seen:
            why = "unchanged" if new.strip() == ins.strip() else "duplicate_variant"
        else:
            why = gate(ins, new, kind)
        if why:
            rejects.append({"parent_id": r["id"], "origin": kind, "reason": why, "variant": k,
                            "instruction": new})
            continue
        seen.add((r["id"], new.strip()))
        keep.append((r, new, k))
    answers: list[str | None] = [None] * len(keep)
    if answer and keep:
        got = backend.chat([ChatRequest([{"role": "user", "content": new}], dict(params, seed=seed + k))
                            for _, new, k in keep])
        answers = [g.text if not g.error else None for g in got]
    for (r, new, k), ans in zip(keep, answers):
        if answer and not (ans or "").strip():
            rejects.append({"parent_id": r["id"], "origin": kind, "reason": "no_answer", "variant": k})
            continue
        out.append(_replace_instruction(r, new, kind, source, {"variant": k},
                                        new_response=ans if answer else None))
    return out, rejects


def _generate(backend, kind: str, prepared: list, params: dict, seed: int) -> list[str | None]:
    """One text per prepared (row, text, codes, lang, variant) item, None on a backend error."""
    if kind != "back_translation":
        res = backend.chat([ChatRequest([{"role": "user", "content": PROMPTS[kind][lg].format(text=t)}],
                                        dict(params, seed=seed + k)) for _, t, _, lg, k in prepared])
        return [x.text if not x.error else None for x in res]
    pivot = {"en": "zh", "zh": "en"}
    if hasattr(backend, "translate"):
        out: list[str | None] = [None] * len(prepared)
        for lg in ("en", "zh"):
            idx = [i for i, p in enumerate(prepared) if p[3] == lg]
            if not idx:
                continue
            mid = backend.translate([prepared[i][1] for i in idx], lg, pivot[lg])
            back = backend.translate(mid, pivot[lg], lg)
            for i, b in zip(idx, back):
                out[i] = b
        return out
    fw = backend.chat([ChatRequest([{"role": "user", "content": PROMPTS["translate"][lg].format(
        text=t, target=LANG_NAME[lg][pivot[lg]])}], dict(params, seed=seed + k)) for _, t, _, lg, k in prepared])
    bw = backend.chat([ChatRequest([{"role": "user", "content": PROMPTS["translate"][pivot[lg]].format(
        text=(f.text or ""), target=LANG_NAME[pivot[lg]][lg])}], dict(params, seed=seed + k))
        for (_, _, _, lg, k), f in zip(prepared, fw)])
    return [(b.text if not (f.error or b.error) else None) for f, b in zip(fw, bw)]


class Seq2SeqTranslator:
    """Back-translation through local HF seq2seq translation models (MarianMT, NLLB, ...):
    ``models`` maps ``"en-zh"`` / ``"zh-en"`` to model directories. Greedy decoding."""

    def __init__(self, models: dict[str, str], max_new_tokens: int = 256, batch_size: int = 16):
        self.paths, self.max_new_tokens, self.batch_size = models, max_new_tokens, batch_size
        self._loaded: dict[str, tuple] = {}
        self.stats = {"translated": 0}

    def _model(self, pair_: str):
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
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = tok(texts[i:i + self.batch_size], return_tensors="pt", padding=True, truncation=True)
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False)
            out += tok.batch_decode(gen, skip_special_tokens=True)
        self.stats["translated"] += len(texts)
        return out

    def close(self) -> None:
        self._loaded.clear()


# ---------------------------------------------------------------- synonyms
_EN_WORD = re.compile(r"[A-Za-z]{3,}")
_STOP = set("the and for with that this from are was were have has had not but you your they them their there "
            "what which who when where how why can could will would should about into than then also only".split())


def segment(text: str) -> list[str]:
    if has_cjk(text):
        return [w for w in _jieba_cut(text) if w.strip()]
    return re.findall(r"\w+|[^\w\s]", text)


class SynonymModel:
    def __init__(self, dictionary: dict[str, list[str]] | None = None, vectors=None, threshold: float = 0.75,
                 k: int = 5):
        self.dictionary = dictionary or {}
        self.vectors = vectors
        self.threshold, self.k = threshold, k
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_dictionary(cls, path: str) -> SynonymModel:
        d = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                if "\t" in line and not line.startswith("#"):
                    w, syns = line.rstrip("\n").split("\t", 1)
                    d[w.strip()] = [s.strip() for s in re.split(r"[,，]", syns) if s.strip()]
        return cls(dictionary=d)

    @classmethod
    def train(cls, texts: list[str], dim: int = 50, epoch: int = 10, min_count: int = 3, threshold: float = 0.75,
              threads: int = 2) -> SynonymModel:
        import fasttext

        fasttext.FastText.eprint = lambda *a, **k: None
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "corpus.txt")
            with open(p, "w", encoding="utf-8") as f:
                for t in texts:
                    prose = " ".join(c for code, c in split_code(t) if not code)
                    toks = [w.lower() for w in segment(prose) if any(ch.isalnum() for ch in w)]
                    if toks:
                        f.write(" ".join(toks) + "\n")
            # minn=maxn=0 (no subwords) diverges to NaN in this fastText build; small
            # subwords and a small bucket table keep it fast. A NaN retries at half the rate.
            lr = 0.05
            for attempt in range(3):
                try:
                    model = fasttext.train_unsupervised(p, model="skipgram", dim=dim, epoch=epoch, minCount=min_count,
                                                        thread=threads, verbose=0, minn=3, maxn=4, bucket=50000,
                                                        lr=lr)
                    break
                except RuntimeError as e:
                    if "NaN" not in str(e) or attempt == 2:
                        raise
                    lr /= 2
        return cls(vectors=model, threshold=threshold)

    def synonyms(self, word: str) -> list[str]:
        w = word.lower()
        if word in self.dictionary:
            return self.dictionary[word]
        if w in self.dictionary:
            return self.dictionary[w]
        if self.vectors is None:
            return []
        if w not in self._cache:
            words = set(self.vectors.words)
            if w not in words:
                self._cache[w] = []
            else:
                # neighbours sharing the first 4 letters are inflections (benefit/benefits), not synonyms
                self._cache[w] = [n for s, n in self.vectors.get_nearest_neighbors(w, k=self.k)
                                  if s >= self.threshold and n.isalpha() and n[:4] != w[:4]]
        return self._cache[w]

    def substitute(self, text: str, rate: float, rng: random.Random) -> tuple[str, int]:
        out, n = [], 0
        for is_code, chunk in split_code(text):
            if is_code:
                out.append(chunk)
                continue
            if has_cjk(chunk):
                words = _jieba_cut(chunk)
                eligible = lambda w: len(w) >= 2 and has_cjk(w)  # noqa: E731
            else:
                words = re.split(r"(\W+)", chunk)
                eligible = lambda w: bool(_EN_WORD.fullmatch(w)) and w.lower() not in _STOP  # noqa: E731
            new = []
            for w in words:
                if eligible(w) and rng.random() < rate:
                    syns = self.synonyms(w)
                    if syns:
                        s = rng.choice(syns)
                        if w[:1].isupper():
                            s = s[:1].upper() + s[1:]
                        new.append(s)
                        n += 1
                        continue
                new.append(w)
            out.append("".join(new))
        return "".join(out), n


def synonym_augment(rows: list[dict], model: SynonymModel, rate: float = 0.15, seed: int = 0,
                    source: str | None = None, fields: tuple[str, ...] = ("user",)) -> tuple[list[dict], list[dict]]:
    out, rejects = [], []
    for r in rows:
        rng = random.Random(f"{seed}:{r['id']}")
        msgs = [dict(m) for m in messages(r)]
        total = 0
        for m in msgs:
            m.pop("lang", None)
            if m["role"] in fields:
                m["content"], n = model.substitute(m["content"], rate, rng)
                total += n
        if total == 0:
            rejects.append({"parent_id": r["id"], "origin": "synonyms", "reason": "no_substitution"})
            continue
        meta = r.get("meta") or {}
        out.append(make_record(msgs, source or r.get("source") or "augment", origin="synonyms", parent_id=r["id"],
                               id_parts=("synonyms", seed), lang=r.get("lang"),
                               category=meta.get("category", "uncategorized"), substitutions=total))
    return out, rejects


def lexicon_augment(rows: list[dict], rate: float = 0.15, seed: int = 0, n_variants: int = 1,
                    source: str | None = None, fields: tuple[str, ...] = ("user",)) -> tuple[list[dict], list[dict]]:
    """Synonym swaps from the shipped lexicons (``lexicons.py``: WordNet for English, 同义词词林
    for Chinese, POS and script guards, nothing in code/numbers/names). ``n_variants`` differently
    seeded children per row; each records its swaps in ``meta.swaps`` as [word, synonym, pos]."""
    from .lexicons import swap_text

    out, rejects = [], []
    for r in rows:
        seen = set()
        for k in range(max(1, n_variants)):
            rng = random.Random(f"{seed}:{k}:{r['id']}")
            msgs = [dict(m) for m in messages(r)]
            swaps: list = []
            for m in msgs:
                m.pop("lang", None)
                if m["role"] in fields:
                    m["content"], s = swap_text(m["content"], rate, rng)
                    swaps += s
                    m.pop("input", None)
            key = tuple(m["content"] for m in msgs)
            if not swaps or key in seen:
                rejects.append({"parent_id": r["id"], "origin": "synonyms", "variant": k,
                                "reason": "no_substitution" if not swaps else "duplicate_variant"})
                continue
            seen.add(key)
            meta = r.get("meta") or {}
            out.append(make_record(msgs, source or r.get("source") or "augment", origin="synonyms",
                                   parent_id=r["id"], id_parts=("synonyms", seed, k), lang=r.get("lang"),
                                   category=meta.get("category", "uncategorized"), substitutions=len(swaps),
                                   swaps=[list(x) for x in swaps], variant=k))
    return out, rejects
