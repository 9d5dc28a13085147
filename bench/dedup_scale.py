"""Peak memory of the whole dedup family as the corpus grows and parts keep their size.

A corpus of --base-mb x SCALE bytes (defaults: 6 MB x 1, 10, 40) is built from the same
shared-corpora texts as bench/dedup_memory.py (C4, 三國志演義, English Wikipedia). To
keep the work per document the same at every scale, the texts are re-used as
*families*: family f is base text f mod n with a family tag every few characters
(every 12 for Latin text, 6 for CJK), so two families never share enough shingles to be
candidates, and a family has 1 to 4 members: the text, an exact copy (for
`exact_dedup`), the text plus a suffix (Jaccard ~0.99) and the text without its last
tenth (~0.9). Cluster sizes thus stay the same as the corpus grows, as they would
for fresh crawls of the same kind; only the number of documents and parts grows.

Each scale runs `read -> exact_dedup -> dedup` (JSONL inputs of 24 MB, cut into the
read stage's 8 MiB parts) through load_recipe + Runner in a fresh process. Every task
is wrapped so that the process that runs it resets its peak RSS (`/proc/self/clear_refs`)
before the task and reads VmHWM after it: the peak of each round is the largest task
peak. On the local engine the tasks run in the driver; on Ray the driver's own peak
per round is recorded apart. Also written: sha256 of every data, rejects, clusters and
index file of both dedup stages, so two code versions can be compared byte for byte.

Each stage's `buckets` is recorded with where it came from (the manifest's `resolved`):
unset, the stages size it from their input (dedup/buckets.py); --bucket-docs sets a
smaller target (documents per bucket) to see the rule act at these corpus sizes,
--buckets a fixed count.

    .venv/bin/python bench/dedup_scale.py [--scales 1 10 40] [--engine local|ray] [--bucket-docs N | --buckets N]
writes bench/results/dedup_scale.json (--out).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FILE_MB = 24  # JSONL input files; the read stage cuts them into 8 MiB parts


def family(base: list[str], f: int) -> str:
    """Base text f mod n, made its own by a family tag every few characters."""
    t = base[f % len(base)]
    cjk = sum(1 for c in t[:200] if "\u4e00" <= c <= "\u9fff") > 40
    step, tag = (6, f" ж{f:x} ") if cjk else (12, f" f{f:x}q ")
    return tag.join(t[i:i + step] for i in range(0, len(t), step))


def build(scale: int, base_mb: float, folder: str, boilerplate: int = 0) -> dict[str, int]:
    """The corpus of one scale as JSONL files; its size in bytes and documents. With
    `boilerplate` n, one family in n is instead a copy of one long page (the longest
    base text) with its own suffix: one cluster that grows with the corpus."""
    from dedup_memory import base_texts

    from lmrefinery.quality.sources import chunk_text

    whole = base_texts()
    page = max(whole, key=len)
    base = [c for t in whole for c in chunk_text(t, 3000)]
    os.makedirs(folder, exist_ok=True)
    total, docs, f, fh, n_file = 0, 0, 0, None, 0
    while total < scale * base_mb * 1e6:
        if fh is None or fh.tell() >= FILE_MB * 1e6:
            fh = open(os.path.join(folder, f"c{n_file:04d}.jsonl"), "w", encoding="utf-8")
            n_file += 1
        t = family(base, f)
        members = [t, t, t + f" variant {f}", t[: len(t) * 9 // 10]][: 1 + f % 4]
        if boilerplate and f % boilerplate == 0:
            members = [f"{page} variant {f}"]
        for m in members:
            line = json.dumps({"text": m}, ensure_ascii=False) + "\n"
            fh.write(line)
            total += len(line.encode("utf-8"))
            docs += 1
        f += 1
    return {"bytes": total, "documents": docs, "files": n_file}


def _hwm_kb() -> int:
    with open("/proc/self/status") as s:
        return next(int(ln.split()[1]) for ln in s if ln.startswith("VmHWM:"))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measured(fn: Any, task: Any) -> tuple[Any, float, float, int]:
    """Run one task; (its result, the peak RSS of the process while it ran and the RSS
    it started from, in MB, pid)."""
    _reset_peak()
    start = _rss_kb()
    r = fn(task)
    return r, round(_hwm_kb() / 1024, 1), round(start / 1024, 1), os.getpid()


class MeasuringEngine:
    """Wraps the run's engine: every task measured, results handed on unchanged."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.rounds = inner, inner.name, []

    def __getattr__(self, k: str) -> Any:
        return getattr(self.inner, k)

    def map(self, fn: Any, tasks: list[Any], on_result: Any = None) -> list[Any]:
        name = f"{fn.__module__.split('.')[-1]}.{fn.__name__}"
        start = round(_rss_kb() / 1024, 1)
        _reset_peak()
        t0 = time.time()
        cb = (lambda i, r: on_result(i, r[0])) if on_result else None
        out = self.inner.map(functools.partial(measured, fn), tasks, on_result=cb)
        self.rounds.append({"round": name, "tasks": len(tasks), "seconds": round(time.time() - t0, 2),
                            "task_peak_mb": max((r[1] for r in out), default=0.0),
                            "task_growth_mb": max((round(r[1] - r[2], 1) for r in out), default=0.0),
                            "driver_rss_start_mb": start, "driver_peak_mb": round(_hwm_kb() / 1024, 1),
                            "processes": len({r[3] for r in out})})
        return [r[0] for r in out]


def _rss_kb() -> int:
    with open("/proc/self/status") as s:
        return next(int(ln.split()[1]) for ln in s if ln.startswith("VmRSS:"))


def digests(stage_dir: str) -> dict[str, str]:
    """sha256 of every data, rejects, clusters and index file of a stage, by relative path."""
    out = {}
    for base, _, files in os.walk(stage_dir):
        rel = os.path.relpath(base, stage_dir)
        if rel.split(os.sep)[0] not in ("data", "rejects", "clusters", "index"):
            continue
        for f in files:
            with open(os.path.join(base, f), "rb") as fh:
                out[os.path.normpath(os.path.join(rel, f))] = hashlib.sha256(fh.read()).hexdigest()
    return out


def run_child(corpus: str, out: str, engine: str, workers: int, dedup: dict[str, Any]) -> dict[str, Any]:
    """One scale through the Runner; `dedup`: params given to both dedup stages."""
    from lmrefinery.core.recipe import load_recipe
    from lmrefinery.core.runner import Runner

    fixed = dict(dedup)
    rec = {"name": "scale", "output": out, "engine": engine, "resources": {"workers": workers},
           "inputs": [{"name": "web", "format": "jsonl", "paths": [os.path.join(corpus, "*.jsonl")]}],
           "stages": [{"stage": "read"}, {"stage": "exact_dedup", **fixed}, {"stage": "dedup", **fixed}],
           "report": False}
    runner = Runner(load_recipe(rec), quiet=True)
    eng = runner.engine = MeasuringEngine(runner.engine)  # type: ignore[assignment]
    t0 = time.time()
    stats = runner.run()
    wall = time.time() - t0
    stages = {}
    for st in sorted(os.listdir(os.path.join(out, "stages"))):
        sdir = os.path.join(out, "stages", st)
        with open(os.path.join(sdir, "_manifest.json")) as f:
            m = json.load(f)
        d = digests(sdir)
        stages[st] = {"counts": m["counts"], "counters": m.get("counters"), "files": len(d),
                      "buckets": m["params"].get("buckets"), "buckets_from": m.get("resolved", {}).get("buckets"),
                      "sha256": hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest(),
                      "file_sha256": d}
    return {"wall_seconds": round(wall, 1), "parts": stats["stages"][0].get("parts"), "rounds": eng.rounds,
            "stages": stages}


def summarise(rounds: list[dict[str, Any]], key: str) -> dict[str, float]:
    """The largest `key` of a task per round name (the cc rounds folded into one)."""
    out: dict[str, float] = {}
    for r in rounds:
        out[r["round"]] = max(out.get(r["round"], 0.0), r[key])
    return out


def measure(scale: int, a: argparse.Namespace, tmp: str, env: dict[str, str]) -> dict[str, Any]:
    corpus = os.path.join(tmp, f"corpus{scale}")
    t0 = time.time()
    # --lib goes to the children too: each puts it first on sys.path (PYTHONPATH alone came
    # after the checkout's lib/, so a base revision was never measured)
    size = json.loads(subprocess.run([sys.executable, __file__, "--lib", a.lib, "--build", str(scale), corpus,
                                      str(a.base_mb), str(a.boilerplate)],
                                     check=True, capture_output=True, text=True, env=env).stdout.splitlines()[-1])
    built = time.time() - t0
    load = os.getloadavg()
    p = subprocess.run([sys.executable, __file__, "--lib", a.lib, "--child", corpus, os.path.join(tmp, f"out{scale}"), a.engine,
                        str(a.workers), json.dumps(dedup_params(a))], capture_output=True, text=True, env=env)
    if p.returncode:
        sys.exit(f"scale {scale} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    subprocess.run(["rm", "-rf", corpus, os.path.join(tmp, f"out{scale}")], check=True)
    return dict(scale=scale, corpus=size, build_seconds=round(built, 1), loadavg_before=[round(x, 2) for x in load],
                loadavg_after=[round(x, 2) for x in os.getloadavg()], peak_by_round=summarise(r["rounds"], "task_peak_mb"),
                growth_by_round=summarise(r["rounds"], "task_growth_mb"), **r)


def dedup_params(a: argparse.Namespace) -> dict[str, int]:
    """What --buckets / --bucket-docs set on both dedup stages."""
    return {**({"buckets": a.buckets} if a.buckets else {}), **({"bucket_docs": a.bucket_docs} if a.bucket_docs else {})}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10, 40])
    ap.add_argument("--base-mb", type=float, default=6.0)
    ap.add_argument("--engine", default="local", choices=["local", "ray"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lib", default=os.path.join(ROOT, "lib"), help="the package to measure (a base revision's lib/)")
    ap.add_argument("--label", default="", help="what code this run measures (e.g. before/after)")
    ap.add_argument("--boilerplate", type=int, default=0, help="one family in N is a copy of one long page")
    ap.add_argument("--build", nargs=4, metavar=("SCALE", "DIR", "BASE_MB", "BOILERPLATE"))
    ap.add_argument("--buckets", type=int, default=0, help="set `buckets` of both dedup stages (0: unset)")
    ap.add_argument("--bucket-docs", type=int, default=0, help="set `bucket_docs` of both dedup stages (0: unset)")
    ap.add_argument("--child", nargs=5, metavar=("CORPUS", "OUT", "ENGINE", "WORKERS", "DEDUP_PARAMS_JSON"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "dedup_scale.json"))
    a = ap.parse_args(argv)
    sys.path.insert(0, a.lib)
    if a.build:
        print(json.dumps(build(int(a.build[0]), float(a.build[2]), a.build[1], int(a.build[3]))))
        return 0
    if a.child:
        print(json.dumps(run_child(a.child[0], a.child[1], a.child[2], int(a.child[3]), json.loads(a.child[4]))))
        return 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([a.lib, HERE]))
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmr-bench-dedupscale-") as tmp:
        for s in a.scales:
            rows.append(measure(s, a, tmp, env))
            print(json.dumps({k: rows[-1][k] for k in ("scale", "corpus", "wall_seconds", "peak_by_round",
                                                                   "growth_by_round")}
                             | {"buckets": {k: v["buckets"] for k, v in rows[-1]["stages"].items()}}),
                  flush=True)
    res = {"machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
           "label": a.label, "engine": a.engine, "workers": a.workers, "base_mb": a.base_mb,
           "dedup_params": dedup_params(a),
           "boilerplate": a.boilerplate, "runs": rows}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
