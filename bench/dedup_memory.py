"""Peak memory of one dedup sign task against the size of its part.

Parts of --sizes MB are built from real shared-corpora text (C4, 三國志演義, English
Wikipedia; 45% Chinese bytes), and each is signed by `dedup`'s sign task in a fresh
process, which reports its peak RSS. With signing in bounded batches the texts and
per-shingle arrays are never held for the whole part; what still grows is what the
index keeps (band keys, document info and, with verify on, the shingle sets).

    .venv/bin/python bench/dedup_memory.py [--sizes 4 16 32]
writes bench/results/dedup_memory.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.abspath(os.environ.get("LMR_SHARED_CORPORA", os.path.join(ROOT, "..", "shared", "corpora")))


def base_texts() -> list[str]:
    """The real texts the benchmark corpora are built from (also bench/dedup_scale.py)."""
    from lmrefinery.quality.sources import chunk_text

    base = [json.loads(ln)["text"] for ln in open(os.path.join(SHARED, "web", "c4_demo.jsonl"), encoding="utf-8")]
    base += chunk_text(open(os.path.join(SHARED, "books", "pg23950_sanguo_yanyi_zh-Hant.txt"), encoding="utf-8").read(), 3000)
    base += [ln for ln in open(os.path.join(SHARED, "wiki", "wiki_demo_en_plaintext.txt"), encoding="utf-8") if ln.strip()]
    return base


def build(mb: float, path: str) -> None:
    from lmrefinery.core import storage
    from lmrefinery.core.schema import docs_to_table

    base = base_texts()
    docs, n, k = [], 0, 0
    while n < mb * 1e6:
        t = base[k % len(base)] + f" variant {k}"
        docs.append({"id": f"d{k}", "text": t, "source": "web"})
        n += len(t.encode("utf-8"))
        k += 1
    storage.write_parquet(docs_to_table(docs), path)


def sign(path: str, index: str, verify: bool) -> dict:
    import resource

    from lmrefinery.dedup.near import NearParams
    from lmrefinery.dedup.near.sign import SignTask, sign_part

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    r = sign_part(SignTask(part=0, input=path, index=index, params=NearParams(verify=verify, buckets=8)))
    return {"rows": r.rows, "peak_rss_mb": r.rss_mb, "rss_before_mb": round(base, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=float, nargs="+", default=[4, 16, 32])
    ap.add_argument("--child", nargs=3, metavar=("PART", "INDEX", "VERIFY"))
    ap.add_argument("--build", nargs=2, metavar=("MB", "PART"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "dedup_memory.json"))
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.join(ROOT, "lib"))
    if a.build:  # in a child too: a process keeps its parent's peak RSS across exec
        build(float(a.build[0]), a.build[1])
        return 0
    if a.child:
        print(json.dumps(sign(a.child[0], a.child[1], a.child[2] == "1")))
        return 0
    rows = []
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib"))
    with tempfile.TemporaryDirectory(prefix="lmr-bench-dedupmem-") as tmp:
        for mb in a.sizes:
            part = os.path.join(tmp, f"part{mb}.parquet")
            subprocess.run([sys.executable, __file__, "--build", str(mb), part], check=True, env=env)
            for verify in ("1", "0"):
                out = subprocess.run([sys.executable, __file__, "--child", part, os.path.join(tmp, f"ix{mb}{verify}"),
                                      verify], capture_output=True, text=True, check=True, env=env)
                r = dict(json.loads(out.stdout.strip().splitlines()[-1]), part_mb=mb, verify=verify == "1")
                rows.append(r)
                print(r, flush=True)

    def slope(verify):
        pts = sorted((r["part_mb"], r["peak_rss_mb"]) for r in rows if r["verify"] == verify)
        return round((pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]), 2)
    res = {"machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
           "runs": rows, "rss_mb_per_part_mb": {"verify": slope(True), "no_verify": slope(False)},
           "before_batches": {"peak_rss_mb": {"4": 265.3, "16": 351.8, "32": 491.1}, "rss_mb_per_part_mb": 8.05,
                              "note": "the same parts signed by the earlier code (whole part at once, verify on), "
                                      "measured on this machine before the change"}}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(res["rss_mb_per_part_mb"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
