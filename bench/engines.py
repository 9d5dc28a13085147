"""The whole curation pipeline on each engine and worker count: Ray with 1 and 2
workers, Spark (`local[2]`) with 2, on the same real-text corpus and recipe
(read -> clean -> lid -> quality -> exact_dedup -> dedup -> tokenize).

Answers two questions of issue 20 with one set of runs:
  * does the pipeline scale from 1 to 2 workers (target >= 1.7x, engine start-up
    reported apart)?
  * is Spark within 1.2x of Ray, stage by stage?
Every run must produce byte-identical stage outputs (data and rejects parts, token
shards); the script checks it and records the answer.

Each run is a child process; runs are interleaved --repeats times and medians kept.
"Pipeline" seconds are the runner's wall time minus its engine start-up; "process"
seconds are the child's whole life (interpreter, imports, start-up, work).

    .venv/bin/python bench/engines.py [--copies 4] [--files 8] [--repeats 3]
writes bench/results/engines.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.join(ROOT, "lib"))

SETUPS = ("ray:1", "ray:2", "spark:2")


def recipe_for(corpus: str, tok: str, out: str, engine: str, workers: int) -> dict:
    return {"name": "bench-engines", "output": out, "engine": engine, "report": False,
            "resources": {"workers": workers},
            "inputs": [{"name": "corpus", "format": "jsonl", "paths": [os.path.join(corpus, "*.jsonl")],
                        "fields": {"text": "text", "url": "url"}}],
            "stages": [{"stage": "read"}, {"stage": "clean"}, {"stage": "lid", "allowed": ["en", "zh"]},
                       {"stage": "quality"}, {"stage": "exact_dedup"}, {"stage": "dedup"},
                       {"stage": "tokenize", "params": {"tokenizer": tok, "shard_tokens": 2_000_000}}]}


def output_hashes(out: str) -> dict[str, str]:
    """sha256 of every file a stage writes as its result (parts, rejects, shards)."""
    hashes = {}
    stages = os.path.join(out, "stages")
    for root, _, files in os.walk(stages):
        if "/_" in root.replace(stages, ""):
            continue  # scratch and markers
        for name in files:
            if name.endswith((".parquet", ".bin", ".idx")):
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    hashes[os.path.relpath(path, stages)] = hashlib.sha256(f.read()).hexdigest()
    return hashes


def child(setup: str, corpus: str, tok: str, out: str) -> dict:
    from lmrefinery.core.recipe import load_recipe
    from lmrefinery.core.runner import Runner

    engine, workers = setup.split(":")
    shutil.rmtree(out, ignore_errors=True)
    stats = Runner(load_recipe(recipe_for(corpus, tok, out, engine, int(workers))), quiet=True).run()
    res = {"wall": stats["wall_seconds"], "startup": stats["engine_startup_seconds"],
           "stages": {s["stage"]: s["seconds"] for s in stats["stages"]},
           "hashes": hashlib.sha256(json.dumps(output_hashes(out), sort_keys=True).encode()).hexdigest(),
           "files": len(output_hashes(out))}
    if engine == "spark":
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
    return res


def run_child(setup: str, corpus: str, tok: str, work: str) -> dict:
    env = dict(os.environ, LMR_RAY_LOG_LEVEL="ERROR", RAYON_NUM_THREADS="1")
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", setup, "--corpus", corpus,
                        "--tok", tok, "--work", work], env=env, capture_output=True, text=True, cwd=ROOT)
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not line:
        raise RuntimeError(f"{setup} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return dict(json.loads(line[-1][7:]), process=time.perf_counter() - t0)


def prepare(work: str, copies: int, files: int) -> tuple[dict, str]:
    import importlib.util

    from lmrefinery.tokenize.tokenizer import save_hf, train_bpe

    spec = importlib.util.spec_from_file_location("bench_pipeline", os.path.join(HERE, "pipeline.py"))
    assert spec and spec.loader
    pipeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pipeline)  # bench/pipeline.py: the same real-text corpus
    corpus = pipeline.write_corpus(os.path.join(work, "corpus"), copies, files)
    corpus.pop("chinese_urls")
    texts = []
    for name in sorted(os.listdir(os.path.join(work, "corpus"))):
        with open(os.path.join(work, "corpus", name), encoding="utf-8") as f:
            texts += [json.loads(ln)["text"] for ln in f]
    tok = os.path.join(work, "tokenizer")
    save_hf(train_bpe(list(dict.fromkeys(texts))[:4000], vocab_size=8000), tok)
    return corpus, tok


def summarise(runs: dict[str, list[dict]]) -> dict:
    med = {}
    for setup, rs in runs.items():
        stages = {st: round(statistics.median(r["stages"][st] for r in rs), 2) for st in rs[0]["stages"]}
        med[setup] = {"pipeline_s": round(statistics.median(r["wall"] - r["startup"] for r in rs), 2),
                      "startup_s": round(statistics.median(r["startup"] for r in rs), 2),
                      "process_s": round(statistics.median(r["process"] for r in rs), 2),
                      "stages_s": stages, "all_pipeline_s": [round(r["wall"] - r["startup"], 2) for r in rs]}
    ray1, ray2, spark = med["ray:1"], med["ray:2"], med["spark:2"]
    return {"median": med,
            "x_workers_1_to_2": round(ray1["pipeline_s"] / ray2["pipeline_s"], 2),
            "x_workers_1_to_2_by_stage": {s: round(ray1["stages_s"][s] / ray2["stages_s"][s], 2)
                                          for s in ray2["stages_s"] if ray2["stages_s"][s]},
            "spark_over_ray": round(spark["pipeline_s"] / ray2["pipeline_s"], 2),
            "spark_over_ray_by_stage": {s: round(spark["stages_s"][s] / ray2["stages_s"][s], 2)
                                        for s in ray2["stages_s"] if ray2["stages_s"][s]},
            "outputs_identical": len({r["hashes"] for rs in runs.values() for r in rs}) == 1}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child")
    ap.add_argument("--corpus")
    ap.add_argument("--tok")
    ap.add_argument("--work")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "engines.json"))
    a = ap.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(a.child, a.corpus, a.tok, os.path.join(a.work, "out"))))
        return
    work = tempfile.mkdtemp(prefix="lmr-bench-engines-")
    try:
        corpus, tok = prepare(work, a.copies, a.files)
        load_before = os.getloadavg()
        runs: dict[str, list[dict]] = {s: [] for s in SETUPS}
        for _ in range(a.repeats):  # interleaved: a change of load hits every setup alike
            for setup in SETUPS:
                runs[setup].append(run_child(setup, os.path.join(work, "corpus"), tok, work))
                print(setup, round(runs[setup][-1]["wall"], 2), flush=True)
        result = {"machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
                  "load_avg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                  "corpus": corpus, "repeats": a.repeats, "recipe": [s["stage"] for s in recipe_for("", "", "", "ray", 2)["stages"]],
                  "output_files": runs["ray:2"][0]["files"], **summarise(runs),
                  "notes": "pipeline_s = runner wall minus engine start-up; stage seconds as the runner reports them "
                           "(fused map stages share their chain's wall time in proportion to their work); medians of "
                           "interleaved runs."}
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
        print(json.dumps({k: v for k, v in result.items() if k != "median"}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
