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


def llm_augment(rows: list[dict], backend: Backend, kind: str, params: dict | None = None,
                answer: bool | None = None, source: str | None = None) -> tuple[list[dict], list[dict]]:
    """kind: paraphrase | expand | back_translation."""
    params = params or {"temperature": 0.7, "max_tokens": 256}
    answer = (kind == "expand") if answer is None else answer
    prepared = []
    for r in rows:
        ins, _ = pair(r)
        if not ins:
            continue
        text, codes = protect(ins)
        prepared.append((r, text, codes, _lang(ins)))
    out, rejects = [], []
    if kind == "back_translation":
        pivot = {"en": "zh", "zh": "en"}
        fw = backend.chat([ChatRequest([{"role": "user", "content": PROMPTS["translate"][lg].format(
            text=t, target=LANG_NAME[lg][pivot[lg]])}], params) for _, t, _, lg in prepared])
        bw = backend.chat([ChatRequest([{"role": "user", "content": PROMPTS["translate"][pivot[lg]].format(
            text=(f.text or ""), target=LANG_NAME[pivot[lg]][lg])}], params)
            for (_, _, _, lg), f in zip(prepared, fw)])
        results = [(b.text if not (f.error or b.error) else None) for f, b in zip(fw, bw)]
    else:
        res = backend.chat([ChatRequest([{"role": "user", "content": PROMPTS[kind][lg].format(text=t)}], params)
                            for _, t, _, lg in prepared])
        results = [x.text if not x.error else None for x in res]
    answers: list[str | None] = [None] * len(prepared)
    restored = []
    for (r, t, codes, lg), txt in zip(prepared, results):
        restored.append(restore(txt.strip(), codes) if txt is not None else None)
    if answer:
        idx = [i for i, x in enumerate(restored) if x]
        got = backend.chat([ChatRequest([{"role": "user", "content": restored[i]}], params) for i in idx])
        for i, g in zip(idx, got):
            answers[i] = g.text if not g.error else None
    for (r, t, codes, lg), new, ans in zip(prepared, restored, answers):
        ins, _ = pair(r)
        if new is None:
            rejects.append({"parent_id": r["id"], "origin": kind, "reason": "code_block_lost" if codes
                            else "backend_error_or_empty"})
            continue
        if not new.strip():
            rejects.append({"parent_id": r["id"], "origin": kind, "reason": "empty_output"})
            continue
        if new.strip() == ins.strip():
            rejects.append({"parent_id": r["id"], "origin": kind, "reason": "unchanged"})
            continue
        if answer and not (ans or "").strip():
            rejects.append({"parent_id": r["id"], "origin": kind, "reason": "no_answer"})
            continue
        out.append(_replace_instruction(r, new, kind, source, {}, new_response=ans if answer else None))
    return out, rejects


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
    def from_dictionary(cls, path: str) -> "SynonymModel":
        d = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                if "\t" in line and not line.startswith("#"):
                    w, syns = line.rstrip("\n").split("\t", 1)
                    d[w.strip()] = [s.strip() for s in re.split(r"[,，]", syns) if s.strip()]
        return cls(dictionary=d)

    @classmethod
    def train(cls, texts: list[str], dim: int = 50, epoch: int = 10, min_count: int = 3, threshold: float = 0.75,
              seed: int = 0, threads: int = 2) -> "SynonymModel":
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
