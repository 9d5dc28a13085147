"""A labelled near-duplicate set built from real text, and its scoring.

Sources are real documents from the shared corpora: C4 web documents and
Wikipedia articles (English), passages of the Romance of the Three Kingdoms
(Chinese). Each source gets one edited copy; the edit kind (insertions,
deletions, substitutions, reordering of sentences, boilerplate header/footer
changes) and its rate are drawn so that the exact Jaccard of the pair spans
the whole range around the threshold. Every other pair of documents is an
unrelated pair. Exact Jaccard is computed on the shingle strings themselves
(the same normalisation and n-grams as the `dedup` stage, no hashing).
"""
from __future__ import annotations

import json
import os
import random
import re
from itertools import combinations
from typing import Any

from .minhash import is_cjk, shingle_strings, tokens

EDIT_KINDS = ("insert", "delete", "replace", "reorder", "boilerplate")
RATES = (0.0, 0.005, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.25, 0.4)
EN_BOILER = ["Share this article on Facebook and Twitter.", "Click here to subscribe to our newsletter.",
             "All rights reserved. Terms of use apply.", "Posted by admin in Uncategorized. Leave a comment.",
             "Read more stories like this on our homepage."]
ZH_BOILER = ["版权所有，转载请注明出处。", "点击这里订阅我们的新闻通讯。", "本文来源于网络，如有侵权请联系删除。",
             "更多精彩内容请关注我们的公众号。", "上一篇 下一篇 返回首页"]


def _en_sources(shared: str, limit: int) -> list[str]:
    out = []
    with open(os.path.join(shared, "web", "c4_demo.jsonl"), encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)["text"]
            if 80 <= len(t.split()) <= 3000:
                out.append(t)
    with open(os.path.join(shared, "wiki", "wiki_demo_en_plaintext.txt"), encoding="utf-8") as f:
        for line in f:
            words = line.split()
            for i in range(0, len(words) - 300, 300):
                out.append(" ".join(words[i:i + 300]))
    return out[:limit]


def _zh_sources(shared: str, limit: int) -> list[str]:
    with open(os.path.join(shared, "books", "pg23950_sanguo_yanyi_zh-Hant.txt"), encoding="utf-8") as f:
        raw = f.read()
    body = re.sub(r"\s+", "", raw[raw.find("第一回"):])
    out = []
    for i in range(0, len(body) - 400, 400):
        out.append(body[i:i + 400])
        if len(out) >= limit:
            break
    return out


def _sentences(text: str, cjk: bool) -> list[str]:
    pat = r"(?<=[。！？；])" if cjk else r"(?<=[.!?])\s+"
    return [s for s in re.split(pat, text) if s]


def edit(r: random.Random, text: str, cjk: bool, kind: str, rate: float) -> str:
    if kind == "boilerplate":
        pool = ZH_BOILER if cjk else EN_BOILER
        k = max(0, round(rate * 20))
        head = [r.choice(pool) for _ in range(k // 2)]
        tail = [r.choice(pool) for _ in range(k - k // 2)]
        sep = "" if cjk else "\n"
        return sep.join(head + [text] + tail)
    if kind == "reorder":
        sents = _sentences(text, cjk)
        n_moves = max(0, round(rate * len(sents) * 2))
        for _ in range(n_moves):
            if len(sents) < 2:
                break
            i = r.randrange(len(sents))
            s = sents.pop(i)
            sents.insert(r.randrange(len(sents) + 1), s)
        return ("" if cjk else " ").join(sents)
    toks = list(text) if cjk else text.split(" ")
    vocab = toks[:]
    n = max(0, round(rate * len(toks)))
    for _ in range(n):
        if kind == "insert":
            toks.insert(r.randrange(len(toks) + 1), r.choice(vocab))
        elif kind == "delete" and len(toks) > 1:
            del toks[r.randrange(len(toks))]
        elif kind == "replace":
            toks[r.randrange(len(toks))] = r.choice(vocab)
    return ("" if cjk else " ").join(toks)


def shingle_jaccard(a: str, b: str, lang: str, ngram: int = 5, char_ngram: int = 5) -> float:
    cjk = is_cjk(a, lang)
    n = char_ngram if cjk else ngram
    sa = set(shingle_strings(tokens(a, cjk), n, cjk))
    sb = set(shingle_strings(tokens(b, cjk), n, cjk))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def build(shared: str, n_en: int = 150, n_zh: int = 150, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Documents (id, text, lang) and labelled pairs (a, b, kind, rate, lang, jaccard)."""
    r = random.Random(seed)
    docs, pairs = [], []
    for lang, texts in (("en", _en_sources(shared, n_en)), ("zh", _zh_sources(shared, n_zh))):
        cjk = lang == "zh"
        for i, t in enumerate(texts):
            kind = EDIT_KINDS[r.randrange(len(EDIT_KINDS))]
            rate = RATES[r.randrange(len(RATES))]
            copy = edit(r, t, cjk, kind, rate)
            a, b = f"{lang}-{i:05d}", f"{lang}-{i:05d}-edit"
            docs.append({"id": a, "text": t, "lang": lang})
            docs.append({"id": b, "text": copy, "lang": lang})
            pairs.append({"a": a, "b": b, "kind": kind, "rate": rate, "lang": lang,
                          "jaccard": shingle_jaccard(t, copy, lang)})
    return docs, pairs


def score(docs: list[dict], pairs: list[dict], clusters: list[dict], threshold: float,
          high: float = 0.8) -> dict:
    """Pair precision (every pair placed in one cluster, checked against exact
    Jaccard >= threshold) and recall of labelled pairs with Jaccard >= high
    (and >= threshold), overall and per language."""
    by_id = {d["id"]: d for d in docs}
    members: dict[str, list[str]] = {}
    for c in clusters:
        members.setdefault(c["cluster"], []).append(c["id"])
    same = {}
    predicted = tp = 0
    wrong = []
    for ms in members.values():
        for a, b in combinations(sorted(ms), 2):
            same[(a, b)] = True
            predicted += 1
            j = shingle_jaccard(by_id[a]["text"], by_id[b]["text"], by_id[a]["lang"])
            if j >= threshold:
                tp += 1
            else:
                wrong.append((a, b, round(j, 3)))
    out: dict[str, Any] = {"predicted_pairs": predicted, "true_positive_pairs": tp,
           "precision": tp / predicted if predicted else 1.0, "false_positives": wrong[:20]}
    for lang in ("all", "en", "zh"):
        sel = [p for p in pairs if lang == "all" or p["lang"] == lang]
        for name, lo in ((f"recall_j>={high:.2f}", high), ("recall_j>=thr", threshold)):
            pos = [p for p in sel if p["jaccard"] >= lo]
            hit = sum(1 for p in pos if same.get(tuple(sorted((p["a"], p["b"])))))
            out.setdefault(lang, {})[name] = hit / len(pos) if pos else None
            out[lang][name.replace("recall", "positives")] = len(pos)
    return out
