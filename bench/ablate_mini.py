"""How long `lmrefinery ablate` takes at tiny scale on CPU: conf/ablate/mini.yaml on the
generated sample shards with three variants (raw, default, default without quality) and
two seeds, on this machine. Issue 14 asks for <= 15 minutes on 2 idle cores.

Writes bench/results/ablate_mini.json: wall seconds (and where they went: hold-out,
tokenizer, curation per variant, training and evaluation per model), the load average
before and after, and the ablation's own table.

    .venv/bin/python bench/ablate_mini.py
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))

VARIANTS = "[{name: raw, stages: [read]}, {name: default}, {name: no_quality, drop: [quality]}]"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="more spec overrides (e.g. train.tokens=500000)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "ablate_mini.json"))
    args = ap.parse_args()
    from lmrefinery.ablate.run import run_ablation
    from lmrefinery.ablate.spec import load_spec
    from lmrefinery.samples.generate import write_samples

    with tempfile.TemporaryDirectory(prefix="lmr-ablate-mini-") as tmp:
        os.environ["LMR_SAMPLES"] = os.path.join(tmp, "samples")
        os.environ["LMR_RUNS"] = os.path.join(tmp, "runs")
        write_samples(os.environ["LMR_SAMPLES"])
        spec = load_spec(os.path.join(ROOT, "conf", "ablate", "mini.yaml"),
                         overrides=[f"variants={VARIANTS}", *args.overrides])
        load0, t0 = load(), time.time()
        result = run_ablation(spec)
        wall = time.time() - t0
        with open(result["outputs"]["table"], encoding="utf-8") as f:
            table_text = f.read()   # ablation.txt: the run folder goes with the temporary directory
    runs = result["runs"]
    out = {"what": "lmrefinery ablate conf/ablate/mini.yaml on the generated sample shards, 3 variants x "
                   f"{len(spec.seeds)} seeds, {spec.train.tokens} training tokens per model, in one process "
                   + ("(Ray started by it, Ray Train with the spec's workers)" if spec.train.backend == "ray" else
                      "(Ray started by it for curation; training in this process: train.backend=local)"),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "uptime_load_before": load0, "uptime_load_after": load(),
           "wall_seconds": round(wall, 1), "target_seconds": 900, "within_target": wall <= 900,
           "curation_seconds": {v["name"]: v.get("curation_seconds") for v in result["variants"]},
           "train_seconds": {f"{r['variant']}/{r['seed']}": r.get("train_seconds") for r in runs},
           "overrides": args.overrides, "summary": result["summary"], "table": table_text.splitlines()}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(table_text)
    print(f"wall {out['wall_seconds']} s (target 900), load {load0} -> {out['uptime_load_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
