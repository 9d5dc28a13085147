"""Synonym substitution with a ``SynonymModel``: a user dictionary
(``word<TAB>syn1,syn2``) or word vectors trained with fastText (skipgram) on the
run's own records (Chinese segmented with jieba); a seeded fraction of eligible
words outside code is replaced by a synonym (a neighbour above a cosine threshold).
The shipped lexicons (``lexicon.py``) are the better default: vector neighbours are
often spelling neighbours, not synonyms."""
from __future__ import annotations

import os
import random
import re
import tempfile
from typing import Any

from ...segment import words as jieba_words
from ..common import has_cjk, make_record, messages, split_code

_EN_WORD = re.compile(r"[A-Za-z]{3,}")
_STOP = set("the and for with that this from are was were have has had not but you your they them their there "
            "what which who when where how why can could will would should about into than then also only".split())


def _words(text: str) -> list[str]:
    if has_cjk(text):
        return [w for w in jieba_words(text) if w.strip()]
    return re.findall(r"\w+|[^\w\s]", text)


def _train_in_fresh_process(corpus: str, out: str, kw: dict[str, Any]) -> Any:
    """fastText skipgram training in a new interpreter; the model comes back as a file."""
    import json
    import subprocess
    import sys

    import fasttext

    code = ("import json, sys, fasttext; kw = json.loads(sys.argv[3]); "
            "fasttext.train_unsupervised(sys.argv[1], **kw).save_model(sys.argv[2])")
    r = subprocess.run([sys.executable, "-c", code, corpus, out, json.dumps(kw)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"fastText synonym training failed in a fresh process too: {r.stderr.strip()[-500:]}")
    return fasttext.load_model(out)


class SynonymModel:
    def __init__(self, dictionary: dict[str, list[str]] | None = None, vectors: Any = None, threshold: float = 0.75,
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
                    toks = [w.lower() for w in _words(prose) if any(ch.isalnum() for ch in w)]
                    if toks:
                        f.write(" ".join(toks) + "\n")
            # minn=maxn=0 (no subwords) diverges to NaN in this fastText build; small
            # subwords and a small bucket table keep it fast. A NaN retries at half the rate;
            # if every rate fails, training runs once more in a fresh interpreter: in a long-lived
            # process (the full test suite) all three rates have hit NaN, where the same corpus
            # trains cleanly on its own, so some state of the process is involved.
            kw = dict(model="skipgram", dim=dim, epoch=epoch, minCount=min_count, thread=threads, verbose=0,
                      minn=3, maxn=4, bucket=50000)
            model = None
            lr = 0.05
            for _ in range(3):
                try:
                    model = fasttext.train_unsupervised(p, lr=lr, **kw)
                    break
                except RuntimeError as e:
                    if "NaN" not in str(e):
                        raise
                    lr /= 2
            if model is None:
                model = _train_in_fresh_process(p, os.path.join(d, "vectors.bin"), dict(kw, lr=0.025))
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
                words = jieba_words(chunk)
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
