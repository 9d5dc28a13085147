"""Wall time of the mini pipeline on the generated sample shards, on local Ray,
against its 3-minute budget, plus a no-op re-run and the per-stage docs/s."""
import json
import os
import platform
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from lmrefinery.core.recipe import load_recipe  # noqa: E402
from lmrefinery.core.runner import Runner  # noqa: E402
from lmrefinery.samples.generate import write_samples  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGET_S = 180.0


def main(docs: int = 200) -> dict:
    tmp = tempfile.mkdtemp(prefix="lmr-bench-mini-")
    os.environ["LMR_SAMPLES"] = os.path.join(tmp, "samples")
    os.environ["LMR_RUNS"] = os.path.join(tmp, "runs")
    write_samples(os.environ["LMR_SAMPLES"], seed=0, docs=docs)
    recipe_path = os.path.join(ROOT, "conf", "pipelines", "mini.yaml")
    t0 = time.time()
    stats = Runner(load_recipe(recipe_path), quiet=True).run()
    first = time.time() - t0
    t0 = time.time()
    again = Runner(load_recipe(recipe_path), quiet=True).run()
    second = time.time() - t0
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "docs": docs,
           "wall_seconds": round(first, 2), "budget_seconds": BUDGET_S, "ratio_to_budget": round(first / BUDGET_S, 3),
           "noop_rerun_seconds": round(second, 2), "rerun_did_work": again["did_work"],
           "stages": [{"stage": s["stage"], "in": s["in"], "kept": s["kept"], "seconds": s["seconds"],
                       "docs_per_s": round(s["in"] / s["seconds"], 1) if s["seconds"] else None}
                      for s in stats["stages"]],
           "planted": stats.get("planted")}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "mini.json"), "w") as f:
        json.dump(res, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
