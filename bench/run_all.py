"""Run the benchmarks in bench/ (each writes bench/results/<name>.json).

    .venv/bin/python bench/run_all.py [NAME ...]      (default: every bench/*.py)

Every results file a benchmark writes is stamped with how it was measured: the load
average before and after, the commit (and whether the tree had changes) and the date,
under "measured". A figure is only as good as the box it came from, and the README's
table is read against these stamps.
"""
import datetime
import json
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
results = os.path.join(here, "results")
root = os.path.dirname(here)


def _git(*args: str) -> str:
    r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def _stamp(written: list[str], load_before: tuple[float, ...], seconds: float) -> None:
    measured = {"load_avg_before": [round(x, 2) for x in load_before],
                "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(), "commit": _git("rev-parse", "--short", "HEAD"),
                "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                                  ":!bench/results")),
                "date": datetime.date.today().isoformat(), "bench_seconds": round(seconds, 1)}
    for path in written:
        with open(path) as f:
            data = json.load(f)
        if isinstance(data, dict):
            data["measured"] = measured
            with open(path, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")


def _mtimes() -> dict[str, float]:
    return {os.path.join(results, f): os.path.getmtime(os.path.join(results, f))
            for f in os.listdir(results) if f.endswith(".json")}


def main(names: list[str]) -> None:
    chosen = sorted(f for f in os.listdir(here) if f.endswith(".py") and f != "run_all.py" and not f.startswith("_"))
    if names:
        unknown = [n for n in names if f"{n.removesuffix('.py')}.py" not in chosen]
        if unknown:
            sys.exit(f"run_all: no benchmark named {unknown} in {here}")
        chosen = [f"{n.removesuffix('.py')}.py" for n in names]
    failed = []
    for f in chosen:
        print(f"== {f}", flush=True)
        before, load = _mtimes(), os.getloadavg()
        t0 = datetime.datetime.now()
        if subprocess.run([sys.executable, os.path.join(here, f)], cwd=root).returncode:
            failed.append(f)
            continue
        after = _mtimes()
        _stamp([p for p, m in after.items() if before.get(p) != m], load,
               (datetime.datetime.now() - t0).total_seconds())
    if failed:
        sys.exit(f"failed: {failed}")


if __name__ == "__main__":
    main(sys.argv[1:])
