"""Core-hours and memory for one Common Crawl snapshot, projected from per-stage costs
measured here, in this run, on the real samples in ../shared/corpora.

Measured (single process, local engine, `Runner` on a recipe cut after the stage, the
stage forced; CPU = user + system time of the child process around `Runner.run()`,
median of --repeats; peak RSS = the child's VmHWM):

* WARC -> text (`read`, format `warc`) with each extractor the package supports
  (Trafilatura, Resiliparse), on the real CC-MAIN-2020-34 WARC sample repeated 16x and
  96x: the marginal CPU per MB of compressed WARC and per HTML response record, and the
  extracted text per record; plus CPU per page on the 60 real news/blog pages of
  html_article_extraction (larger pages, closer to an average CC capture), called
  in-process through the `html` reader.
* the stages after extraction (clean, lid, quality, pii, exact_dedup, dedup, tokenize)
  on real web text (C4, CCNet, news article bodies, Wikipedia plain text, the CC sample's
  pages), at a quarter and at the whole corpus: marginal CPU per MB of each stage's
  input text, the per-task fixed part, and the fraction of text each stage keeps; the RSS
  slope from the whole corpus against 8 copies of it (words shuffled per copy).

Projected (nothing below is measured at snapshot scale): core-hours per stage and in total
for one snapshot, with each extractor, on two bases (compressed WARC bytes; pages), and
worker memory for one WARC file per task. Snapshot facts are inputs, cited in SNAPSHOT.

    PYTHONPATH=lib .venv/bin/python bench/scale.py [--repeats 3]
writes bench/results/scale.json and prints the tables.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# bench/ holds scripts named like stdlib modules (tokenize.py): keep it off the import path
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.join(ROOT, "lib"))
SHARED = os.path.abspath(os.environ.get("LMR_SHARED_CORPORA", os.path.join(ROOT, "..", "shared", "corpora")))
TIB = 2 ** 40

# Inputs: published facts about Common Crawl snapshots (not measured here).
SNAPSHOT = {
    # CC-MAIN-2024-51, "December 2024 crawl archive now available",
    # https://blog.commoncrawl.org/blog/december-2024-crawl-archive-now-available :
    # "contains 2.64 billion web pages (or 394 TiB of uncompressed content)"
    "name": "CC-MAIN-2024-51",
    "pages": 2.64e9,
    "uncompressed_tib": 394.0,
    # That announcement gives no compressed size in the text we have; the ratio of compressed
    # WARC to uncompressed content is taken from CC-MAIN-2019-09, "February 2019 crawl archive
    # now available", https://commoncrawl.org/2019/03/february-2019-crawl-archive-now-available/ :
    # 2.9 billion pages, 225 TiB uncompressed; WARC 64,000 files, 59.86 TiB compressed; WET 7.62 TiB.
    "ratio_source": "CC-MAIN-2019-09",
    "ref_uncompressed_tib": 225.0,
    "ref_warc_tib": 59.86,
    "ref_warc_files": 64000,
    "ref_wet_tib": 7.62,
}
# The issue's figures for extraction of one snapshot (issue 20), to compare with.
ISSUE_CORE_HOURS = {"trafilatura": (13_000, 38_000), "resiliparse": (800, 2_800)}
EXTRACTORS = ("trafilatura", "resiliparse")
TEXT_STAGES = [
    {"stage": "read"},
    {"stage": "clean"},
    {"stage": "lid", "allowed": ["en", "zh", "fr", "de", "es", "ru", "ja"]},
    {"stage": "quality"},
    {"stage": "pii"},
    {"stage": "exact_dedup", "by_url": True},
    {"stage": "dedup"},
    {"stage": "tokenize", "shard_tokens": 1_000_000, "valid_fraction": 0.005},
]


# ----------------------------------------------------------------- inputs
def web_texts() -> list[dict]:
    """Real web(-like) text: C4, CCNet head, news article bodies, Wikipedia plain text,
    and the pages of the CC WARC sample (Resiliparse main content)."""
    from lmrefinery.quality.sources import warc_texts

    web = os.path.join(SHARED, "web")
    docs = [json.loads(ln) for ln in open(os.path.join(web, "c4_demo.jsonl"), encoding="utf-8")]
    for n in ("0091", "0174"):
        docs += [json.loads(ln) for ln in open(os.path.join(web, f"ccnet-cc_en_head-{n}.jsonl"), encoding="utf-8")]
    gold = json.load(open(os.path.join(web, "html_article_extraction", "ground-truth.json"), encoding="utf-8"))
    docs += [{"text": g["articleBody"], "url": g["url"]} for g in gold.values()]
    with open(os.path.join(SHARED, "wiki", "wiki_demo_en_plaintext.txt"), encoding="utf-8") as f:
        docs += [{"text": ln.strip()} for ln in f if ln.strip()]
    docs += list(warc_texts(os.path.join(web, "cc-main-2020-34-resiliparse-sample.warc.gz"), min_chars=1))
    return [{"text": d["text"], "url": d.get("url") or f"doc://{i}"} for i, d in enumerate(docs)]


TEXT_PARTS = 1  # JSONL files of the text corpus = parts of every text stage: RSS is then per part


def write_corpus(folder: str, docs: list[dict], files: int = TEXT_PARTS) -> float:
    """JSON Lines files (documents dealt round-robin); returns the text MB."""
    os.makedirs(folder, exist_ok=True)
    outs = [open(os.path.join(folder, f"part-{i}.jsonl"), "w", encoding="utf-8") for i in range(files)]
    for i, d in enumerate(docs):
        outs[i % files].write(json.dumps(d, ensure_ascii=False) + "\n")
    for f in outs:
        f.close()
    return sum(len(d["text"].encode("utf-8")) for d in docs) / 1e6


def write_warc(folder: str, copies: int) -> dict:
    """The CC WARC sample repeated (per-record gzip members: a concatenation is a valid WARC)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    src = os.path.join(SHARED, "web", "cc-main-2020-34-resiliparse-sample.warc.gz")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "cc.warc.gz")
    with open(path, "wb") as f:
        f.write(open(src, "rb").read() * copies)
    responses = html = 0
    for rec in ArchiveIterator(open(path, "rb"), record_types=WarcRecordType.response):
        responses += 1
        html += rec.content_length
    return {"path": path, "copies": copies, "gz_mb": os.path.getsize(path) / 1e6, "responses": responses,
            "response_mb": html / 1e6}


def train_tokenizer(corpus: str, out: str) -> str:
    """A 32k byte-level BPE on the corpus (done once, not timed: a crawl run loads a trained one)."""
    cmd = [sys.executable, "-m", "lmrefinery.cli", "tokenizer", "train", "--input", os.path.join(corpus, "*.jsonl"),
           "--output", out, "--vocab-size", "32000"]
    subprocess.run(cmd, check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib")))
    return out


# ----------------------------------------------------------------- one measurement (child)
def child(cfg: dict) -> dict:
    """Runs in a fresh process: the recipe's last stage, forced; CPU and peak RSS."""
    import logging

    from lmrefinery.core.recipe import load_recipe
    from lmrefinery.core.runner import Runner
    from lmrefinery.core.stage import get_stage

    logging.disable(logging.WARNING)
    recipe = load_recipe(cfg["recipe"])
    stage = recipe.stages[-1].stage
    get_stage(stage)
    if stage == "read":  # a worker imports its extractor once
        import resiliparse.extract.html2text  # noqa: F401
        import trafilatura  # noqa: F401
    base_mb = proc_status_mb("VmRSS")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    Runner(recipe, engine="local", only=[stage] if cfg.get("force") else None,
           force=[stage] if cfg.get("force") else None, quiet=True).run()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
            "base_rss_mb": base_mb, "peak_rss_mb": proc_status_mb("VmHWM")}


def proc_status_mb(key: str) -> float:
    """VmRSS / VmHWM of this process: ru_maxrss is not used, because Linux carries the
    parent's high-water mark into a forked and exec'd child."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def run_child(recipe: dict, force: bool = True) -> dict:
    cfg = json.dumps({"recipe": recipe, "force": force})
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", cfg], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib"), LMR_PROGRESS="off"))
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        raise RuntimeError(f"child failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def medians(recipe: dict, repeats: int) -> dict:
    runs = [run_child(recipe) for _ in range(repeats)]
    return {"cpu_s": statistics.median(r["cpu_s"] for r in runs), "cpu_s_all": [round(r["cpu_s"], 3) for r in runs],
            "base_rss_mb": statistics.median(r["base_rss_mb"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def stage_output(out: str, k: int, name: str) -> dict:
    """Documents and text MB a committed stage kept."""
    import pyarrow.parquet as pq

    folder = os.path.join(out, "stages", f"{k:02d}-{name}", "data")
    docs = mb = 0.0
    for fn in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if fn.endswith(".parquet"):
            col = pq.read_table(os.path.join(folder, fn), columns=["text"]).column("text").to_pylist()
            docs += len(col)
            mb += sum(len(t.encode("utf-8")) for t in col) / 1e6
    return {"docs": int(docs), "text_mb": mb}


# ----------------------------------------------------------------- the measurements
def marginal(small: dict, full: dict, small_units: float, full_units: float) -> dict:
    """CPU and RSS per unit from two sizes: the slope, and the fixed part at zero."""
    d = full_units - small_units
    slope = (full["cpu_s"] - small["cpu_s"]) / d
    mem = (full["peak_rss_mb"] - small["peak_rss_mb"]) / d
    return {"cpu_s_per_unit": slope, "fixed_cpu_s": full["cpu_s"] - slope * full_units,
            "rss_mb_per_unit": mem, "rss_mb_at_zero": full["peak_rss_mb"] - mem * full_units,
            "average_cpu_s_per_unit": full["cpu_s"] / full_units}


def measure_extraction(tmp: str, repeats: int) -> dict:
    sizes = {"small": write_warc(os.path.join(tmp, "warc16"), 16), "full": write_warc(os.path.join(tmp, "warc96"), 96)}
    out = {}
    for ex in EXTRACTORS:
        m, kept = {}, {}
        for size, w in sizes.items():
            recipe = {"name": "scale-warc", "output": os.path.join(tmp, f"run-warc-{ex}-{size}"), "engine": "local",
                      "report": False, "token_funnel": False, "resources": {"workers": 1},
                      "inputs": [{"name": "cc", "format": "warc", "paths": [w["path"]],
                                  "options": {"extractor": ex}}],
                      "stages": [{"stage": "read"}]}
            m[size] = medians(recipe, repeats)
            kept[size] = stage_output(recipe["output"], 0, "read")
        w = sizes["full"]
        per_mb = marginal(m["small"], m["full"], sizes["small"]["gz_mb"], w["gz_mb"])
        per_rec = marginal(m["small"], m["full"], sizes["small"]["responses"], w["responses"])
        out[ex] = {"input": w, "runs": m, "kept": kept["full"],
                   "cpu_s_per_gz_mb": per_mb["cpu_s_per_unit"], "cpu_s_per_response": per_rec["cpu_s_per_unit"],
                   "cpu_s_per_response_mb": per_mb["cpu_s_per_unit"] * w["gz_mb"] / w["response_mb"],
                   "fixed_cpu_s_per_task": per_mb["fixed_cpu_s"],
                   "rss_mb_per_gz_mb": per_mb["rss_mb_per_unit"], "rss_mb_at_zero": per_mb["rss_mb_at_zero"],
                   "rss_mb_per_response": per_rec["rss_mb_per_unit"],
                   "response_kb": w["response_mb"] * 1e3 / w["responses"],
                   "text_mb_per_gz_mb": kept["full"]["text_mb"] / w["gz_mb"],
                   "text_bytes_per_response": kept["full"]["text_mb"] * 1e6 / w["responses"],
                   "docs_per_response": kept["full"]["docs"] / w["responses"]}
    return out


def measure_gold_pages(repeats: int) -> dict:
    """CPU per page through the `html` reader, in this process (median of repeats)."""
    import logging

    from lmrefinery.ingest.formats import Record, get_reader

    logging.disable(logging.WARNING)
    base = os.path.join(SHARED, "web", "html_article_extraction", "html")
    files = sorted(os.path.join(base, f) for f in os.listdir(base) if f.endswith(".html.gz"))
    html_mb = sum(len(gzip.open(f).read()) for f in files) / 1e6
    gz_mb = sum(os.path.getsize(f) for f in files) / 1e6
    out = {}
    for ex in EXTRACTORS:
        def once(ex=ex):
            t0, texts = time.process_time(), {}
            for f in files:
                spec = {"path": f, "rel": os.path.basename(f), "input": "gold", "format": "html",
                        "options": {"extractor": ex}, "fields": {}}
                for item in get_reader("html")(spec):
                    if isinstance(item, Record):
                        texts[os.path.basename(f)[: -len(".html.gz")]] = item.doc["text"]
            return time.process_time() - t0, len(texts), sum(len(t.encode("utf-8")) for t in texts.values()), texts
        once()  # warm: imports, lazy tables
        runs = [once() for _ in range(repeats)]
        cpu = statistics.median(r[0] for r in runs)
        out[ex] = {"pages": len(files), "html_mb": html_mb, "html_gz_mb": gz_mb, "cpu_s": cpu,
                   "cpu_s_per_page": cpu / len(files), "cpu_s_per_html_mb": cpu / html_mb,
                   "text_bytes_per_page": runs[0][2] / len(files), "docs": runs[0][1],
                   "html_kb_per_page": html_mb * 1e3 / len(files), **precision_recall(runs[0][3])}
    return out


def precision_recall(texts: dict[str, str]) -> dict:
    """Mean word precision and recall against the gold article bodies (the words of
    lmrefinery.evals.overlap.word_f1): which side an extractor's F1 loses on."""
    import collections

    from lmrefinery.evals.overlap import _WORD

    base = os.path.join(SHARED, "web", "html_article_extraction")
    gold = json.load(open(os.path.join(base, "ground-truth.json"), encoding="utf-8"))
    ps, rs = [], []
    for key, g in gold.items():
        ca = collections.Counter(_WORD.findall(texts.get(key, "").lower()))
        cb = collections.Counter(_WORD.findall(g["articleBody"].lower()))
        overlap = sum((ca & cb).values())
        ps.append(overlap / max(sum(ca.values()), 1))
        rs.append(overlap / max(sum(cb.values()), 1))
    return {"word_precision": statistics.mean(ps), "word_recall": statistics.mean(rs)}


def text_recipe(corpus: str, out: str, tokenizer: str, upto: int) -> dict:
    stages = [dict(s) for s in TEXT_STAGES[: upto + 1]]
    for s in stages:
        if s["stage"] == "tokenize":
            s["tokenizer"] = tokenizer
    return {"name": "scale-text", "output": out, "engine": "local", "seed": 0, "report": False,
            "token_funnel": False, "resources": {"workers": 1, "fuse": False},
            "inputs": [{"name": "web", "format": "jsonl", "paths": [os.path.join(corpus, "*.jsonl")],
                        "fields": {"text": "text", "url": "url"}, "options": {"split_bytes": 0}}],
            "stages": stages}


def shuffled_copies(docs: list[dict], copies: int) -> list[dict]:
    """For the memory slope only: the corpus `copies` times, the words of each document
    shuffled per copy (copy 0 as is), so that neither exact nor near dedup removes the copies."""
    import random

    out = list(docs)
    for c in range(1, copies):
        rng = random.Random(c)
        for i, d in enumerate(docs):
            words = d["text"].split(" ")
            rng.shuffle(words)
            out.append({"text": " ".join(words), "url": f"https://copy{c}.example/{i}"})
    return out


def run_text_size(corpus: str, out: str, tok: str, repeats: int, docs: int, mb: float) -> list[dict]:
    """Every stage once to commit them, then each stage forced `repeats` times."""
    run_child(text_recipe(corpus, out, tok, len(TEXT_STAGES) - 1), force=False)
    rows, in_docs, in_mb = [], docs, mb
    for k, spec in enumerate(TEXT_STAGES):
        m = medians(text_recipe(corpus, out, tok, k), repeats)
        kept = stage_output(out, k, spec["stage"])
        rows.append(dict(m, stage=spec["stage"], in_docs=in_docs, in_mb=in_mb, kept_docs=kept["docs"],
                         kept_mb=kept["text_mb"]))
        in_docs, in_mb = kept["docs"], kept["text_mb"]
    return rows


def measure_text_stages(tmp: str, repeats: int, mem_copies: int = 8) -> dict:
    """CPU: the real corpus against every 4th document of it (median of repeats). Memory
    slope: the real corpus against `mem_copies` shuffled copies of it (one run)."""
    docs = web_texts()
    sizes = {"small": docs[::4], "full": docs, "memory": shuffled_copies(docs, mem_copies)}
    corpora = {k: os.path.join(tmp, f"corpus-{k}") for k in sizes}
    mb = {k: write_corpus(corpora[k], v) for k, v in sizes.items()}
    tok = train_tokenizer(corpora["full"], os.path.join(tmp, "tokenizer"))
    rows = {k: run_text_size(corpora[k], os.path.join(tmp, f"run-text-{k}"), tok, 1 if k == "memory" else repeats,
                             len(sizes[k]), mb[k]) for k in sizes}
    stages = []
    for s, f, b in zip(rows["small"], rows["full"], rows["memory"]):
        cpu = marginal(s, f, s["in_mb"], f["in_mb"])
        mem = marginal(f, b, f["in_mb"], b["in_mb"])
        stages.append({"stage": f["stage"], "cpu_s_per_mb": cpu["cpu_s_per_unit"],
                       "average_cpu_s_per_mb": cpu["average_cpu_s_per_unit"], "fixed_cpu_s": cpu["fixed_cpu_s"],
                       "fixed_cpu_s_per_task": cpu["fixed_cpu_s"] / TEXT_PARTS,
                       "rss_mb_per_mb": mem["rss_mb_per_unit"], "rss_mb_at_zero": mem["rss_mb_at_zero"],
                       "peak_rss_mb": f["peak_rss_mb"], "peak_rss_mb_memory_run": b["peak_rss_mb"],
                       "base_rss_mb": f["base_rss_mb"],
                       "kept_docs_frac": f["kept_docs"] / max(f["in_docs"], 1),
                       "kept_mb_frac": f["kept_mb"] / max(f["in_mb"], 1e-9), "small": s, "full": f, "memory": b})
    driver = driver_marker_bytes(os.path.join(tmp, "run-text-full"))
    return {"corpus": "C4 demo, CCNet head (2 files), 60 news article bodies, 30 Wikipedia articles (plain text), "
                      "the CC-MAIN-2020-34 sample's pages; one JSONL file (one part); small = every 4th document; "
                      f"memory = {mem_copies} copies, words shuffled per copy",
            "corpus_mb": mb, "documents": {k: len(v) for k, v in sizes.items()}, "stages": stages,
            "driver_bytes_per_part_marker": driver}


def driver_marker_bytes(out: str) -> float:
    """Python heap of one part marker as the driver holds it (what it keeps per part and stage)."""
    import tracemalloc

    folder = os.path.join(out, "stages", "01-clean", "_parts")
    raw = open(os.path.join(folder, sorted(os.listdir(folder))[0])).read()
    tracemalloc.start()
    held = [json.loads(raw) for _ in range(1000)]
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    return size / 1000


# ----------------------------------------------------------------- the projection
def snapshot_facts() -> dict:
    s = SNAPSHOT
    warc_tib = s["uncompressed_tib"] * s["ref_warc_tib"] / s["ref_uncompressed_tib"]
    file_mb = s["ref_warc_tib"] * TIB / s["ref_warc_files"] / 1e6
    warc_mb = warc_tib * TIB / 1e6
    return {"pages": s["pages"], "warc_tib_derived": warc_tib, "warc_mb": warc_mb, "warc_file_mb": file_mb,
            "warc_files": warc_mb / file_mb, "wet_tib_derived": warc_tib * s["ref_wet_tib"] / s["ref_warc_tib"],
            "uncompressed_kb_per_page": s["uncompressed_tib"] * TIB / s["pages"] / 1e3,
            "warc_gz_kb_per_page": warc_mb * 1e3 / s["pages"]}


def bases(ex: str, ext: dict, gold: dict, snap: dict) -> dict:
    """Extraction CPU seconds and extracted text MB for the snapshot, per basis."""
    e, g = ext[ex], gold[ex]
    return {
        "bytes (CC sample, per MB of compressed WARC)": (e["cpu_s_per_gz_mb"] * snap["warc_mb"],
                                                         e["text_mb_per_gz_mb"] * snap["warc_mb"]),
        "pages (CC sample, per response record)": (e["cpu_s_per_response"] * snap["pages"],
                                                   e["text_bytes_per_response"] * snap["pages"] / 1e6),
        "pages (60 news pages, per page)": (g["cpu_s_per_page"] * snap["pages"],
                                            g["text_bytes_per_page"] * snap["pages"] / 1e6),
    }


def downstream(text_mb: float, stages: list[dict], tasks: float) -> dict:
    """Core-hours of each stage after extraction, the text shrinking by the kept fractions
    measured on our corpus; a stage's fixed CPU is paid once per task (one per WARC file)."""
    hours, mb = {}, text_mb
    for st in stages[1:]:  # [0] is the JSONL read, which a crawl run replaces with extraction
        hours[st["stage"]] = (max(st["cpu_s_per_mb"], 0.0) * mb + max(st["fixed_cpu_s_per_task"], 0.0) * tasks) / 3600
        mb *= st["kept_mb_frac"]
    return {"core_hours": hours, "final_text_mb": mb}


def project(ext: dict, gold: dict, text: dict) -> dict:
    snap = snapshot_facts()
    out: dict = {"snapshot": dict(SNAPSHOT, **snap), "by_extractor": {}}
    for ex in EXTRACTORS:
        rows = {}
        for basis, (cpu_s, text_mb) in bases(ex, ext, gold, snap).items():
            fixed_h = max(ext[ex]["fixed_cpu_s_per_task"], 0.0) * snap["warc_files"] / 3600
            extract_h = cpu_s / 3600 + fixed_h
            ds = downstream(text_mb, text["stages"], snap["warc_files"])
            rows[basis] = {"extraction_core_hours": extract_h, "extracted_text_tib": text_mb * 1e6 / TIB,
                           "downstream_core_hours": ds["core_hours"],
                           "downstream_total": sum(ds["core_hours"].values()),
                           "total_core_hours": extract_h + sum(ds["core_hours"].values()),
                           "final_text_tib": ds["final_text_mb"] * 1e6 / TIB}
        ext_h = [r["extraction_core_hours"] for r in rows.values()]
        tot_h = [r["total_core_hours"] for r in rows.values()]
        out["by_extractor"][ex] = {"bases": rows, "extraction_range": [min(ext_h), max(ext_h)],
                                   "total_range": [min(tot_h), max(tot_h)], "issue_figure": ISSUE_CORE_HOURS[ex]}
    out["memory"] = memory(ext, gold, text, snap)
    return out


def memory(ext: dict, gold: dict, text: dict, snap: dict) -> dict:
    """Peak RSS of one worker with one WARC file per task (later parts follow the read
    stage's): the RSS at zero input plus the measured slope times the part (slope floored
    at 0). A worker holds a whole part's rows before writing them (core/parts.py), so the
    part size matters. The part's text: pages per WARC file times the larger of the two
    measured texts per page. The driver keeps one part marker per part of a stage."""
    pages_per_file = snap["pages"] / snap["warc_files"]
    mem: dict = {"pages_per_warc_file": pages_per_file}
    for ex in EXTRACTORS:
        e = ext[ex]
        part_mb = pages_per_file * max(e["text_bytes_per_response"], gold[ex]["text_bytes_per_page"]) / 1e6
        rows = {"read": e["rss_mb_at_zero"] + max(e["rss_mb_per_response"], 0) * pages_per_file}
        first = part_mb
        for st in text["stages"][1:]:
            rows[st["stage"]] = st["rss_mb_at_zero"] + max(st["rss_mb_per_mb"], 0) * part_mb
            part_mb *= st["kept_mb_frac"]
        mem[ex] = {"worker_peak_rss_mb": rows, "part_text_mb_after_read": first}
    mem["driver_markers_mb_per_stage"] = text["driver_bytes_per_part_marker"] * snap["warc_files"] / 1e6
    return mem


# ----------------------------------------------------------------- report
def extraction_quality() -> dict:
    """Token F1 against the 60 gold bodies, from bench/ingest.py's results (not re-measured here)."""
    path = os.path.join(HERE, "results", "ingest.json")
    q = json.load(open(path)).get("extraction_quality", {}) if os.path.exists(path) else {}
    return {ex: q.get(ex, {}).get("mean_token_f1") for ex in EXTRACTORS}


def print_measured(res: dict) -> None:
    ext, gold, text = res["extraction"], res["gold_pages"], res["text_stages"]
    print(f"measured, 1 core, CPU s (median of {res['repeats']}), load {res['load_avg_1m_before_after']}")
    print(f"{'extractor':12s} {'s/MB gz WARC':>12s} {'ms/response':>11s} {'ms/news page':>12s} "
          f"{'text B/resp':>11s} {'text B/news':>11s} {'peak RSS MB':>11s} {'token F1':>8s}")
    for ex in EXTRACTORS:
        e, g = ext[ex], gold[ex]
        print(f"{ex:12s} {e['cpu_s_per_gz_mb']:12.3f} {e['cpu_s_per_response'] * 1e3:11.2f} "
              f"{g['cpu_s_per_page'] * 1e3:12.2f} {e['text_bytes_per_response']:11.0f} "
              f"{g['text_bytes_per_page']:11.0f} {e['runs']['full']['peak_rss_mb']:11.0f} "
              f"{res['extraction_quality_f1'][ex] or float('nan'):8.3f}")
    e, g = ext[EXTRACTORS[0]], gold[EXTRACTORS[0]]
    print(f"(HTML per page: CC sample {e['response_kb']:.0f} KB, news pages {g['html_kb_per_page']:.0f} KB; "
          "word precision / recall on the news pages: "
          + ", ".join(f"{ex} {gold[ex]['word_precision']:.3f} / {gold[ex]['word_recall']:.3f}" for ex in EXTRACTORS)
          + ")")
    print(f"\n{'stage':12s} {'s/MB in':>8s} {'MB/s':>7s} {'fixed s':>8s} {'peak RSS MB':>11s} {'RSS MB/MB':>9s} "
          f"{'kept docs':>9s} {'kept MB':>8s}")
    for st in text["stages"]:
        rate = st["cpu_s_per_mb"]
        print(f"{st['stage']:12s} {rate:8.3f} {1 / rate if rate > 0 else float('inf'):7.2f} {st['fixed_cpu_s']:8.2f} "
              f"{st['peak_rss_mb']:11.0f} {st['rss_mb_per_mb']:9.2f} {st['kept_docs_frac']:9.3f} "
              f"{st['kept_mb_frac']:8.3f}")


def print_projection(res: dict) -> None:
    proj = res["projection"]
    snap = proj["snapshot"]
    print(f"\nprojected for {snap['name']}: {snap['pages'] / 1e9:.2f}e9 pages, {snap['uncompressed_tib']:.0f} TiB "
          f"uncompressed ({snap['uncompressed_kb_per_page']:.0f} KB/page), {snap['warc_tib_derived']:.0f} TiB "
          f"compressed WARC (derived), {snap['warc_files']:.0f} WARC files of {snap['warc_file_mb']:.0f} MB; "
          f"CC's own WET text ~{snap['wet_tib_derived']:.1f} TiB (derived)")
    for ex in EXTRACTORS:
        p = proj["by_extractor"][ex]
        for basis, r in p["bases"].items():
            ds = " ".join(f"{k}={v:.0f}" for k, v in r["downstream_core_hours"].items())
            print(f"  {ex:11s} {basis:46s} extract {r['extraction_core_hours']:7.0f} core-h, text "
                  f"{r['extracted_text_tib']:5.1f} TiB; after: {r['downstream_total']:6.0f} ({ds}); "
                  f"total {r['total_core_hours']:7.0f}")
        lo, hi = p["extraction_range"]
        print(f"  {ex:11s} extraction {lo:,.0f}-{hi:,.0f} core-h (issue: {p['issue_figure'][0]:,}-"
              f"{p['issue_figure'][1]:,}); total {p['total_range'][0]:,.0f}-{p['total_range'][1]:,.0f}")
    mem = proj["memory"]
    for ex in EXTRACTORS:
        m = mem[ex]
        rows = " ".join(f"{k}={v:.0f}" for k, v in m["worker_peak_rss_mb"].items())
        print(f"  worker peak RSS MB, one WARC file ({mem['pages_per_warc_file']:.0f} pages, "
              f"{m['part_text_mb_after_read']:.0f} MB text) per task, {ex}: {rows}")
    print(f"  driver: part markers of one stage {mem['driver_markers_mb_per_stage']:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "scale.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print("RESULT " + json.dumps(child(json.loads(a.child))), flush=True)
        return 0
    load_before = os.getloadavg()
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="lmr-scale-")
    try:
        res = {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
               "repeats": a.repeats, "timing": "CPU seconds (user+system) of a child process per measurement, "
               "median of repeats; marginal rate from two input sizes",
               "extraction": measure_extraction(tmp, a.repeats), "gold_pages": measure_gold_pages(a.repeats),
               "text_stages": measure_text_stages(tmp, a.repeats)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["extraction_quality_f1"] = extraction_quality()
    res["projection"] = project(res["extraction"], res["gold_pages"], res["text_stages"])
    res["load_avg_1m_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    res["wall_s"] = round(time.time() - t0, 1)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print_measured(res)
    print_projection(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
