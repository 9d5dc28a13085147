"""LID thresholds calibrated on sentences of the shared corpora.

Sentences of known language, written by people outside this project:
  en  Alice in Wonderland (PG #11), C4 documents, Alpaca answers
  zh  Chinese Alpaca answers (bilingual set), BELLE answers
  ja  Japanese Wikipedia articles (jawiki excerpt, through our wiki reader)
  pt, ru, it, ko  gold article bodies of the extraction benchmark, language by site
Each text is cut into sentences (20-250 characters); up to --per-lang per
language are drawn with a fixed seed. For each language: the share of correctly
labelled sentences that `min_score` 0.65 rejects, the calibrated threshold
(`lmrefinery lid calibrate`: at most 1% rejected; languages with fewer than 200
correctly labelled sentences keep 0.65), and the sentences of other sources each
threshold lets through under that label. Languages are those of the *source*, not
of each sentence: a Chinese answer quoting English code or a Brazilian page with
an English paragraph yields sentences that are really English, so "false accepts"
over-count.

    .venv/bin/python bench/lid_calibration.py [--per-lang 1500]

Writes bench/results/lid_calibration.json and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.join(ROOT, "lib"))

_SENT = re.compile(r"(?<=[.!?。！？])\s*|\n+")
GOLD_LANG = {".com.br/": "pt", "wday.ru/": "ru", ".it/": "it", ".co.kr/": "ko"}


def sentences_of(text: str) -> list[str]:
    out = []
    for s in _SENT.split(text or ""):
        s = re.sub(r"\s+", " ", s).strip()
        if 20 <= len(s) <= 250:
            out.append(s)
    return out


def shared_sentences(shared: str) -> dict[str, list[str]]:
    from lmrefinery.ingest.formats import Record, get_reader

    by: dict[str, list[str]] = {}

    def add(lang, texts):
        for t in texts:
            by.setdefault(lang, []).extend(sentences_of(t))
    alice = open(os.path.join(shared, "books", "pg11_alice_in_wonderland_en.txt"), encoding="utf-8").read()
    add("en", [re.sub(r"\s*\n\s*", " ", p) for p in alice.split("\n\n")])
    add("en", [json.loads(x)["text"] for x in open(os.path.join(shared, "web", "c4_demo.jsonl"), encoding="utf-8")])
    ins = os.path.join(shared, "instructions")
    add("en", [r["output"] for r in json.load(open(os.path.join(ins, "alpaca_data_5k_subset.json"), encoding="utf-8"))])
    bil = json.load(open(os.path.join(ins, "alpaca_chinese_bilingual_part_0.json"), encoding="utf-8"))
    add("zh", [r["output"] for r in bil])
    add("zh", [json.loads(x)["output"] for x in open(os.path.join(ins, "belle_open_source_1k.jsonl"), encoding="utf-8")])
    path = os.path.join(shared, "wiki", "jawiki-20230501-first120pages.xml.bz2")
    spec = {"path": path, "rel": "ja", "input": "ja", "format": "mediawiki", "options": {}, "fields": {}}
    add("ja", [i.doc["text"] for i in get_reader("mediawiki")(spec) if isinstance(i, Record)])
    gold = json.load(open(os.path.join(shared, "web", "html_article_extraction", "ground-truth.json"), encoding="utf-8"))
    for g in gold.values():
        for key, lang in GOLD_LANG.items():
            if key in g["url"]:
                add(lang, [g["articleBody"]])
    return {k: list(dict.fromkeys(v)) for k, v in by.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "corpora"))
    ap.add_argument("--per-lang", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import fasttext

    from lmrefinery.lid.calibrate import calibrate, format_table, min_scores
    from lmrefinery.models import lid_model_path

    fasttext.FastText.eprint = lambda *x, **k: None
    model = fasttext.load_model(lid_model_path(None))
    rng = random.Random(a.seed)
    pairs = []
    for lang, sents in sorted(shared_sentences(a.shared).items()):
        rng.shuffle(sents)
        pairs += [(s, lang) for s in sents[:a.per_lang]]
    cal = calibrate(model, pairs, 0.01, 0.65, 0.3, min_sentences=200)
    correct = sum(c.correct for c in cal)
    rejected = sum(c.rejected_at_default * c.correct for c in cal)
    res = {"model": "lid.176.ftz", "sentences": len(pairs), "per_lang_cap": a.per_lang, "target_rejection": 0.01,
           "rejected_at_0.65_all_languages": round(rejected / correct, 4),
           "min_scores": min_scores(cal), "calibration": [c.__dict__ for c in cal]}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "lid_calibration.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(format_table(cal, 0.65))
    print(f"correctly labelled sentences rejected at 0.65, all languages: {res['rejected_at_0.65_all_languages']:.2%}")
    print("min_scores: " + json.dumps(res["min_scores"]))


if __name__ == "__main__":
    main()
