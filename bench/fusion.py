"""Fused vs one-by-one map stages (issue 20): the same recipe (read -> clean ->
length_filter -> lid -> quality -> pii) on local Ray with 2 workers, over real text from
the shared corpora (C4 pages, Wikipedia articles, two books) cut into 8 JSONL files.
Runs are interleaved (fused, unfused, fused, ...) and the median wall time of each is
reported; engine start-up is excluded (it is timed separately by the runner). Outputs
are compared file by file (they must be identical). Writes bench/results/fusion.json."""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
SHARED = os.path.abspath(os.environ.get("LMR_SHARED_CORPORA", os.path.join(ROOT, "..", "shared", "corpora")))

from lmrefinery.core.recipe import load_recipe  # noqa: E402
from lmrefinery.core.runner import Runner  # noqa: E402

STAGES = [{"stage": "read"}, {"stage": "clean"}, {"stage": "length_filter", "min_chars": 50}, {"stage": "lid"},
          {"stage": "quality", "sources": ["web"]}, {"stage": "pii"}]


def corpus(dst: str, copies: int) -> tuple[int, int]:
    """8 files of real documents (each copy gets a marker line so no two rows are equal)."""
    docs = [json.loads(line)["text"] for line in open(os.path.join(SHARED, "web", "c4_demo.jsonl"), encoding="utf-8")]
    docs += open(os.path.join(SHARED, "wiki", "wiki_demo_en_plaintext.txt"), encoding="utf-8").read().splitlines()
    for book in ("pg11_alice_in_wonderland_en.txt", "pg23950_sanguo_yanyi_zh-Hant.txt"):
        text = open(os.path.join(SHARED, "books", book), encoding="utf-8").read()
        docs += [text[i:i + 8000] for i in range(0, len(text), 8000)]
    os.makedirs(dst, exist_ok=True)
    files = [open(os.path.join(dst, f"part-{i}.jsonl"), "w", encoding="utf-8") for i in range(8)]
    n = size = 0
    for c in range(copies):
        for j, t in enumerate(docs):
            line = json.dumps({"text": f"{t}\n(copy {c})"}, ensure_ascii=False) + "\n"
            files[(c * len(docs) + j) % 8].write(line)
            n += 1
            size += len(line.encode())
    for f in files:
        f.close()
    return n, size


def one_run(inp: str, out: str, fuse: bool) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    r = load_recipe({"name": "fusion", "output": out, "engine": "ray", "report": False,
                     "resources": {"workers": 2, "fuse": fuse},
                     "inputs": [{"name": "web", "paths": [f"{inp}/*.jsonl"]}], "stages": STAGES})
    stats = Runner(r, quiet=True).run()
    return {"wall": stats["wall_seconds"] - (stats["engine_startup_seconds"] or 0.0),
            "stages": {s["stage"]: s["seconds"] for s in stats["stages"]}}


def main(copies: int, rounds: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="lmr-bench-fusion-")
    n, size = corpus(os.path.join(tmp, "in"), copies)
    runs: dict[str, list[dict]] = {"fused": [], "unfused": []}
    for _ in range(rounds):
        for mode in ("fused", "unfused"):
            runs[mode].append(one_run(os.path.join(tmp, "in"), os.path.join(tmp, mode), mode == "fused"))
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_pipeline import _stage_files

    same = _stage_files(os.path.join(tmp, "fused")) == _stage_files(os.path.join(tmp, "unfused"))
    med = {m: statistics.median(r["wall"] for r in rs) for m, rs in runs.items()}
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_before": os.getloadavg(),
           "documents": n, "mb": round(size / 1e6, 1), "files": 8, "workers": 2, "rounds": rounds,
           "median_wall_s": {m: round(v, 2) for m, v in med.items()},
           "x_unfused": round(med["unfused"] / med["fused"], 2), "outputs_identical": same,
           "walls": {m: [round(r["wall"], 2) for r in rs] for m, rs in runs.items()},
           "note": "wall time without engine start-up; interleaved runs, medians"}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "fusion.json"), "w") as f:
        json.dump(res, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=4, help="copies of the real documents (4: about 15 MB)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    main(a.copies, a.rounds)
