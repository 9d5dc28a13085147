"""Ingest benchmarks: WARC -> text (against DataTrove's WarcReader + Trafilatura
in the same run), WARC record iteration (FastWARC vs warcio), MediaWiki XML ->
text, JSONL read, and extraction quality against the gold article bodies.

All numbers are single-process (= per core). Inputs are the real files in
../shared/corpora, repeated into a larger scratch file where one pass is too
short to time. Writes bench/results/ingest.json and prints a table.

    .venv/bin/python bench/ingest.py [--repeat 8] [--shared ../shared/corpora]

DataTrove is a bench-only peer: `pip install datatrove` (plain, not
datatrove[processing], which installs a second module named `fasttext`).
"""
from __future__ import annotations

import argparse
import bz2
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
# bench/ holds scripts named like stdlib modules (tokenize.py): keep it off the import path
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.join(ROOT, "lib"))

from lmrefinery.evals.overlap import word_f1  # noqa: E402
from lmrefinery.ingest.formats import Record, get_reader  # noqa: E402


def _spec(fmt, path, **opts):
    return {"path": path, "rel": os.path.basename(path), "input": "bench", "format": fmt, "options": opts,
            "fields": {}}


def timed(fn, min_seconds=1.0):
    """Best of repeated runs (at least one, until min_seconds spent)."""
    best, out, spent = None, None, 0.0
    while True:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
        spent += dt
        if spent >= min_seconds:
            return best, out


def bench_warc(shared, tmp, repeat):
    src = os.path.join(shared, "web", "cc-main-2020-34-resiliparse-sample.warc.gz")
    data = open(src, "rb").read()
    big = os.path.join(tmp, "warc", "cc-x.warc.gz")
    os.makedirs(os.path.dirname(big), exist_ok=True)
    with open(big, "wb") as f:
        f.write(data * repeat)  # per-record gzip members: concatenation is a valid WARC
    mb = os.path.getsize(big) / 1e6
    html_mb = 0
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    for rec in ArchiveIterator(open(big, "rb"), record_types=WarcRecordType.response):
        html_mb += rec.content_length
    html_mb /= 1e6
    rows = {}

    def ours(extractor):
        def run():
            return sum(1 for i in get_reader("warc")(_spec("warc", big, extractor=extractor)) if isinstance(i, Record))
        return run

    for name, ex in (("lmrefinery warc + trafilatura", "trafilatura"), ("lmrefinery warc + resiliparse", "resiliparse")):
        dt, n = timed(ours(ex))
        rows[name] = {"seconds": round(dt, 3), "docs": n, "docs_per_s": round(n / dt, 1),
                      "MB_per_s_compressed": round(mb / dt, 2), "MB_per_s_html": round(html_mb / dt, 2)}
    try:
        from datatrove.pipeline.extractors import Trafilatura
        from datatrove.pipeline.readers import WarcReader

        def dt_run():
            reader = WarcReader(os.path.dirname(big), glob_pattern="*.warc.gz")
            ex = Trafilatura(favour_precision=True, timeout=10)
            return sum(1 for d in ex.run(reader.run(None, 0, 1)) if d.text)
        dt, n = timed(dt_run)
        rows["datatrove WarcReader + Trafilatura"] = {
            "seconds": round(dt, 3), "docs": n, "docs_per_s": round(n / dt, 1),
            "MB_per_s_compressed": round(mb / dt, 2), "MB_per_s_html": round(html_mb / dt, 2)}
    except ImportError as e:
        rows["datatrove WarcReader + Trafilatura"] = {"skipped": f"datatrove not installed ({e})"}

    # record iteration alone: the reader choice
    def it_fastwarc():
        n = 0
        for rec in ArchiveIterator(open(big, "rb"), parse_http=False):
            rec.reader.read()
            n += 1
        return n

    def it_ours_gzip():  # FastWARC over our member-aware gzip reader (offsets + truncation detection)
        from lmrefinery.ingest.web import GzipMembers

        n = 0
        for rec in ArchiveIterator(GzipMembers(open(big, "rb")), parse_http=False):
            rec.reader.read()
            n += 1
        return n

    def it_warcio():
        from warcio.archiveiterator import ArchiveIterator as WI

        n = 0
        with open(big, "rb") as f:
            for rec in WI(f):
                rec.content_stream().read()
                n += 1
        return n

    iters = {}
    for name, fn in (("fastwarc", it_fastwarc), ("fastwarc over lmrefinery GzipMembers", it_ours_gzip),
                     ("warcio", it_warcio)):
        dt, n = timed(fn)
        iters[name] = {"seconds": round(dt, 4), "records": n, "records_per_s": round(n / dt),
                       "MB_per_s_compressed": round(mb / dt, 1)}
    return {"input": f"cc-main-2020-34-resiliparse-sample.warc.gz x{repeat}", "compressed_MB": round(mb, 2),
            "html_MB": round(html_mb, 2), "extract": rows, "record_iteration": iters}


def bench_wiki(shared):
    path = os.path.join(shared, "wiki", "enwiki-pages-articles1-p10p30302-shortened.xml.bz2")
    xml_mb = len(bz2.open(path).read()) / 1e6
    dt, n = timed(lambda: sum(1 for i in get_reader("wiki")(_spec("wiki", path)) if isinstance(i, Record)), 0.1)
    return {"input": os.path.basename(path), "xml_MB": round(xml_mb, 2), "seconds": round(dt, 3), "docs": n,
            "pages_per_s": round(206 / dt, 1), "docs_per_s": round(n / dt, 1), "MB_per_s_xml": round(xml_mb / dt, 2)}


def bench_jsonl(shared, tmp, repeat):
    src = os.path.join(shared, "web", "c4_demo.jsonl")
    big = os.path.join(tmp, "c4x.jsonl")
    data = open(src, "rb").read()
    with open(big, "wb") as f:
        f.write(data * repeat)
    mb = os.path.getsize(big) / 1e6
    dt, n = timed(lambda: sum(1 for i in get_reader("jsonl")(_spec("jsonl", big)) if isinstance(i, Record)))
    return {"input": f"c4_demo.jsonl x{repeat}", "MB": round(mb, 2), "seconds": round(dt, 3), "docs": n,
            "docs_per_s": round(n / dt), "MB_per_s": round(mb / dt, 1)}


QUALITY_CONFIGS = {
    # name: options of the html reader (defaults: trafilatura, favor_precision, include_tables)
    "trafilatura": {},
    "trafilatura tables off": {"include_tables": False},
    "trafilatura balanced": {"favor_precision": False},
    "trafilatura balanced tables off": {"favor_precision": False, "include_tables": False},
    "trafilatura favor_recall": {"favor_precision": False, "favor_recall": True},
    "trafilatura with comments": {"include_comments": True},
    "resiliparse": {"extractor": "resiliparse"},
}


def _score_pages(base, gold, extract):
    scores, empty, t = [], 0, 0.0
    for key, g in sorted(gold.items()):
        t0 = time.perf_counter()
        text = extract(os.path.join(base, "html", f"{key}.html.gz"))
        t += time.perf_counter() - t0
        empty += not text
        scores.append(word_f1(text, g["articleBody"]))
    return {"mean_token_f1": round(sum(scores) / len(scores), 4),
            "median_token_f1": round(sorted(scores)[len(scores) // 2], 4), "pages": len(scores),
            "empty_pages": empty, "pages_per_s": round(len(scores) / t, 1)}


def bench_quality(shared):
    """Token F1 against the gold article bodies for each extractor configuration, and
    Trafilatura called directly with its own defaults (the raw tool, as a peer)."""
    import gzip

    import trafilatura

    base = os.path.join(shared, "web", "html_article_extraction")
    gold = json.load(open(os.path.join(base, "ground-truth.json"), encoding="utf-8"))
    out = {}
    for name, opts in QUALITY_CONFIGS.items():
        def ours(path, opts=opts):
            docs = [i for i in get_reader("html")(_spec("html", path, **opts)) if isinstance(i, Record)]
            return docs[0].doc["text"] if docs else ""
        out[name] = dict(_score_pages(base, gold, ours), options=opts)

    def raw(path):
        return trafilatura.extract(gzip.open(path).read().decode("utf-8", "replace")) or ""
    out["raw trafilatura.extract (its defaults)"] = _score_pages(base, gold, raw)
    out["chosen"] = "trafilatura"
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "corpora"))
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--only-quality", action="store_true",
                    help="re-measure extraction quality only; the speed sections of the results file are kept")
    a = ap.parse_args()
    import logging

    logging.disable(logging.WARNING)
    if a.only_quality:
        path = os.path.join(ROOT, "bench", "results", "ingest.json")
        res = json.load(open(path))
        res["extraction_quality"] = bench_quality(a.shared)
        with open(path, "w") as f:
            json.dump(res, f, indent=1)
        _print_quality(res)
        return
    with tempfile.TemporaryDirectory() as tmp:
        res = {"machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                           "processor": platform.processor() or platform.machine()},
               "note": "single process = per core; best of repeated passes; same machine, same run",
               "warc_to_text": bench_warc(a.shared, tmp, a.repeat),
               "wiki_xml_to_text": bench_wiki(a.shared),
               "jsonl_read": bench_jsonl(a.shared, tmp, a.repeat * 4),
               "extraction_quality": bench_quality(a.shared)}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "ingest.json"), "w") as f:
        json.dump(res, f, indent=1)
    w = res["warc_to_text"]
    print(f"WARC -> text ({w['input']}, {w['compressed_MB']} MB gz, {w['html_MB']} MB HTML), per core:")
    for k, v in w["extract"].items():
        print(f"  {k:40s} " + (f"{v['docs_per_s']:8.1f} docs/s {v['MB_per_s_compressed']:7.2f} MB/s (gz)"
                                 if "docs_per_s" in v else v["skipped"]))
    for k, v in w["record_iteration"].items():
        print(f"  iterate: {k:31s} {v['records_per_s']:8d} rec/s {v['MB_per_s_compressed']:7.1f} MB/s (gz)")
    v = res["wiki_xml_to_text"]
    print(f"wiki XML -> text: {v['pages_per_s']} pages/s, {v['docs_per_s']} docs/s, {v['MB_per_s_xml']} MB/s (XML)")
    v = res["jsonl_read"]
    print(f"JSONL read: {v['docs_per_s']} docs/s, {v['MB_per_s']} MB/s")
    _print_quality(res)


def _print_quality(res):
    for k, v in res["extraction_quality"].items():
        if isinstance(v, dict):
            print(f"extraction quality {k:40s}: token F1 mean {v['mean_token_f1']} median {v['median_token_f1']} "
                  f"empty {v['empty_pages']} ({v['pages_per_s']} pages/s)")


if __name__ == "__main__":
    main()
