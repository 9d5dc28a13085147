"""The fast rules against the code they replaced, on the same documents in one run:
the `quality` stage (English: chunked tokenizer, n-gram repetition, Gopher quality
classes; Chinese: rjieba instead of jieba) and the `clean` stage (ftfy only on the
segments it could change, instead of on everything).

The earlier implementations are the references kept in tests/test_quality_fast.py
(jieba itself for Chinese; ftfy.fix_text on every text for clean). Each side runs
in this process on one core; the two are interleaved and the median of
--repeats CPU times is kept. Outputs are compared too (they must be identical).

    .venv/bin/python bench/fast_rules.py [--repeats 5]
writes bench/results/fast_rules.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "lib"))
SHARED = os.path.abspath(os.environ.get("LMR_SHARED_CORPORA", os.path.join(ROOT, "..", "shared", "corpora")))


def corpora() -> dict[str, list[str]]:
    from lmrefinery.quality.sources import chunk_text, warc_texts

    web = os.path.join(SHARED, "web")
    en = [json.loads(ln)["text"] for ln in open(os.path.join(web, "c4_demo.jsonl"), encoding="utf-8")]
    for n in ("0091", "0174"):
        en += [json.loads(ln)["text"] for ln in open(os.path.join(web, f"ccnet-cc_en_head-{n}.jsonl"), encoding="utf-8")]
    gold = json.load(open(os.path.join(web, "html_article_extraction", "ground-truth.json"), encoding="utf-8"))
    en += [g["articleBody"] for g in gold.values()]
    with open(os.path.join(SHARED, "wiki", "wiki_demo_en_plaintext.txt"), encoding="utf-8") as f:
        en += [ln.rstrip("\n") for ln in f if ln.strip()]
    with open(os.path.join(SHARED, "books", "pg23950_sanguo_yanyi_zh-Hant.txt"), encoding="utf-8") as f:
        zh = chunk_text(f.read(), 2000)
    pages = [r["text"] for r in warc_texts(os.path.join(web, "cc-main-2020-34-resiliparse-sample.warc.gz"), min_chars=1)]
    zh += [t for t in pages if sum("\u4e00" <= c <= "\u9fff" for c in t) > 0.1 * len(t)]
    with open(os.path.join(SHARED, "instructions", "belle_open_source_1k.jsonl"), encoding="utf-8") as f:
        zh += [" ".join(map(str, json.loads(ln).values())) for ln in f]
    return {"en": en, "zh": zh}


def quality_runner(texts: list[str], lang: str, reference: bool):
    import pyarrow as pa

    import test_quality_fast as ref
    from lmrefinery.core.schema import docs_to_table
    from lmrefinery.core.stage import StageContext, get_stage
    from lmrefinery.quality import gopher, rules

    table = docs_to_table([{"id": f"{lang}{i}", "text": t, "lang": lang} for i, t in enumerate(texts)])
    cls = get_stage("quality")
    st = cls(cls.Params(), StageContext(output_root=".", stage_dir="."))
    st.setup()
    swaps = [(rules.TOKENIZERS, "regex", ref.ref_tok_regex), (rules.TOKENIZERS, "jieba", ref.ref_tok_jieba),
             (gopher.__dict__, "_ngram_repetition", ref.ref_ngram_repetition),
             (rules.__dict__, "gopher_quality", ref.ref_gopher_quality)]

    def run():
        saved = [(d, k, d[k]) for d, k, _ in swaps]
        if reference:
            for d, k, v in swaps:
                d[k] = v
        try:
            r = st.process(table)
        finally:
            for d, k, v in saved:
                d[k] = v
        out = pa.concat_tables([r.kept, r.rejected.select(r.kept.column_names)]) if r.rejected is not None else r.kept
        out = out.sort_by("id")
        return {c: out.column(c).to_pylist() for c in out.column_names if c.startswith("q_")}
    return run


def clean_runner(texts: list[str], reference: bool):
    import ftfy

    from lmrefinery.clean import normalize

    p = normalize.CleanParams()

    def everywhere(s, form):
        return ftfy.fix_text(s, normalization=form, uncurl_quotes=False, fix_latin_ligatures=False,
                             fix_character_width=False)

    def run():
        fast = normalize.fix_text_where_needed
        if reference:
            normalize.fix_text_where_needed = everywhere
        try:
            return [normalize.clean_text(t, p) for t in texts]
        finally:
            normalize.fix_text_where_needed = fast
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "fast_rules.json"))
    a = ap.parse_args(argv)
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    load_before = os.getloadavg()
    docs = corpora()
    pairs = {}
    for lang, texts in docs.items():
        pairs[f"quality_{lang}"] = (quality_runner(texts, lang, True), quality_runner(texts, lang, False))
        pairs[f"clean_{lang}"] = (clean_runner(texts, True), clean_runner(texts, False))
    results = {}
    for name, (old, new) in pairs.items():
        old(), new()  # warm: jieba's dictionary, rjieba, ftfy tables
        t_old, t_new = [], []
        for _ in range(a.repeats):  # interleaved
            for fn, acc in ((old, t_old), (new, t_new)):
                t0 = time.process_time()
                out = fn()
                acc.append(time.process_time() - t0)
                if fn is old:
                    want = out
        mb = sum(len(t.encode("utf-8")) for t in docs[name.split("_")[1]]) / 1e6
        o, n = statistics.median(t_old), statistics.median(t_new)
        same = json.dumps(out) == json.dumps(want)  # NaN signals compare equal as text
        results[name] = {"documents": len(docs[name.split("_")[1]]), "mb": round(mb, 3),
                         "before_mb_s": round(mb / o, 3), "after_mb_s": round(mb / n, 3),
                         "speedup": round(o / n, 2), "identical_output": same,
                         "cpu_seconds_before": round(o, 3), "cpu_seconds_after": round(n, 3)}
        print(f"{name:12s} {mb:6.2f} MB  before {mb / o:7.2f} MB/s  after {mb / n:7.2f} MB/s  "
              f"x{o / n:5.2f}  identical={same}", flush=True)
    result = {"machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, 1 core",
              "load_avg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
              "repeats": a.repeats, "timing": "median CPU seconds (process_time), interleaved", **results,
              "notes": "before = the earlier code (references in tests/test_quality_fast.py; jieba; ftfy.fix_text "
                       "on every text); after = the code in lib/. Quality columns and cleaned texts compared."}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0 if all(r["identical_output"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
