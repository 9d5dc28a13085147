"""Does a code change leave the pipeline's outputs as they were? Runs the mini recipe on
the same generated sample shards with the package of two revisions (a base commit and
this work tree) and compares, stage by stage:

- every kept part and every rejects part, byte for byte (sha256 of the Parquet file);
- the tokenize stage's shards (.bin/.idx) and dataset.json, byte for byte;
- each manifest's counts, rejection reasons, counters and characters.

Fingerprints, code versions and timings differ by design (the code changed) and are
not compared. Writes bench/results/compare_runs.json; exits 1 when anything differs.

    .venv/bin/python bench/compare_runs.py --base 3532dd3          # base vs this tree
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join("conf", "pipelines", "mini.yaml")
SAME_KEYS = ("counts", "counters", "chars", "length_hist", "stage", "index")


def sh(cmd: list[str], **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def export_tree(rev: str, dest: str) -> str:
    """The revision's lib/ and conf/ (what a run needs) unpacked under dest."""
    os.makedirs(dest, exist_ok=True)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "lib", "conf"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return dest


def run_mini(tree: str, samples: str, runs: str, engine: str, workers: int) -> float:
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "lib"), LMR_SAMPLES=samples, LMR_RUNS=runs,
               PYTHONHASHSEED="0")
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "lmrefinery.cli", "run", os.path.join(tree, RECIPE), "--quiet",
                        "--engine", engine, "--workers", str(workers)], env=env, cwd=tree,
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"the mini run with {tree} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return time.time() - t0


def file_digests(stage_dir: str) -> dict[str, str]:
    """sha256 of every data file of a stage (parts, rejects, shards), by relative path."""
    out = {}
    for base, _, files in os.walk(stage_dir):
        rel_base = os.path.relpath(base, stage_dir)
        if rel_base.split(os.sep)[0] in ("_parts", "_work", "index", "clusters", "tokenizer"):
            continue
        for f in files:
            if f.endswith((".parquet", ".bin", ".idx")) or f == "dataset.json":
                with open(os.path.join(base, f), "rb") as fh:
                    out[os.path.normpath(os.path.join(rel_base, f))] = hashlib.sha256(fh.read()).hexdigest()
    return out


def compare(base_out: str, head_out: str) -> list[dict]:
    rows = []
    stages = sorted(os.listdir(os.path.join(head_out, "stages")))
    for name in stages:
        b_dir, h_dir = os.path.join(base_out, "stages", name), os.path.join(head_out, "stages", name)
        with open(os.path.join(b_dir, "_manifest.json")) as f:
            bm = json.load(f)
        with open(os.path.join(h_dir, "_manifest.json")) as f:
            hm = json.load(f)
        b_files, h_files = file_digests(b_dir), file_digests(h_dir)
        differing = sorted(k for k in set(b_files) | set(h_files) if b_files.get(k) != h_files.get(k))
        manifest_diff = sorted(k for k in SAME_KEYS if bm.get(k) != hm.get(k))
        rows.append({"stage": name, "files": len(h_files), "files_differ": differing,
                     "manifest_differs": manifest_diff, "identical": not differing and not manifest_diff})
    missing = sorted(set(os.listdir(os.path.join(base_out, "stages"))) - set(stages))
    if missing:
        rows.append({"stage": "missing in head", "files": 0, "files_differ": missing, "manifest_differs": [],
                     "identical": False})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare against (e.g. a commit before a refactor)")
    ap.add_argument("--engine", default="ray", choices=["ray", "spark", "local"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "compare_runs.json"))
    args = ap.parse_args()
    base_sha = sh(["git", "-C", ROOT, "rev-parse", args.base]).strip()
    head_sha = sh(["git", "-C", ROOT, "rev-parse", "HEAD"]).strip()
    dirty = bool(sh(["git", "-C", ROOT, "status", "--porcelain", "lib", "conf"]).strip())
    with tempfile.TemporaryDirectory(prefix="lmr-compare-") as tmp:
        samples = os.path.join(tmp, "samples")
        subprocess.run([sys.executable, "-m", "lmrefinery.cli", "samples", samples], check=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib")), capture_output=True)
        base_tree = export_tree(base_sha, os.path.join(tmp, "base"))
        seconds = {"base": run_mini(base_tree, samples, os.path.join(tmp, "runs-base"), args.engine, args.workers),
                   "head": run_mini(ROOT, samples, os.path.join(tmp, "runs-head"), args.engine, args.workers)}
        rows = compare(os.path.join(tmp, "runs-base", "mini"), os.path.join(tmp, "runs-head", "mini"))
    result = {"what": "mini recipe on the generated sample shards: base revision vs this tree, every data "
                      "file's sha256 and each manifest's counts/counters/chars/length_hist",
              "base": base_sha, "head": head_sha, "head_has_uncommitted_changes": dirty,
              "engine": args.engine, "workers": args.workers, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "seconds": {k: round(v, 1) for k, v in seconds.items()},
              "identical": all(r["identical"] for r in rows), "stages": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    for r in rows:
        print(f"{r['stage']:<22} {r['files']:>4} files  {'identical' if r['identical'] else 'DIFFERS'}"
              + (f"  files: {r['files_differ'][:4]}" if r["files_differ"] else "")
              + (f"  manifest: {r['manifest_differs']}" if r["manifest_differs"] else ""))
    print(f"{'identical' if result['identical'] else 'DIFFERENT'}: base {base_sha[:8]} vs head {head_sha[:8]}"
          f"{' + uncommitted changes' if dirty else ''}; wrote {args.out}")
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
