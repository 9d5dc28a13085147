"""Peak memory of one task of each dedup bucket round against the documents in its bucket:
what `bucket_docs` (dedup/buckets.py) is sized from.

For N documents in one bucket, spread over --parts input parts, the files a bucket task
reads are written with the real writers' schemas (synthetic values: 30% of documents
share a text key with another; with 14 band keys each, 20% share band keys with a
neighbour, so groups form; 30% of documents are in a cluster), then the real task
function runs in a fresh process, which reports its peak RSS (VmHWM) minus the RSS it
had after imports and a warm-up run on a tiny bucket:

  exact   - exact_dedup's choose (exact_rounds.choose_keepers), one key row per document;
  band    - dedup's band (band.band_bucket, verify on), 14 band rows per document;
  label   - dedup's label (label.label_members): the document info of the partition.

    .venv/bin/python bench/dedup_buckets.py [--docs 125000 250000 500000]
writes bench/results/dedup_buckets.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BANDS = 14


def _hwm_kb() -> int:
    with open("/proc/self/status") as s:
        return next(int(ln.split()[1]) for ln in s if ln.startswith("VmHWM:"))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def build(kind: str, n: int, parts: int, root: str) -> Any:
    """The files one bucket task of `kind` reads, for n documents; the task to run."""
    import numpy as np
    import pyarrow as pa

    from lmrefinery.core import storage
    from lmrefinery.dedup import exact_rounds as er
    from lmrefinery.dedup.near.band import BandTask
    from lmrefinery.dedup.near.files import IndexRef
    from lmrefinery.dedup.near.label import LabelTask
    from lmrefinery.dedup.near.params import NearParams

    rng = np.random.default_rng(7)
    nodes = rng.integers(-(2**62), 2**62, n, dtype=np.int64)
    part = (np.arange(n) * parts // n).astype(np.int32)
    row = np.arange(n, dtype=np.int64) - np.searchsorted(part, part)
    ids = [f"web/c{p:04d}.jsonl:{r:08d}" for p, r in zip(part.tolist(), row.tolist())]
    bounds = np.searchsorted(part, np.arange(parts + 1))
    if kind == "exact":
        key = rng.integers(0, 2**63, n, dtype=np.uint64)
        dup = rng.random(n) < 0.3
        key[dup] = key[rng.integers(0, n, int(dup.sum()))]
        for p in range(parts):
            s = slice(bounds[p], bounds[p + 1])
            rows = list(zip(key[s].tolist(), ["text"] * (bounds[p + 1] - bounds[p]), part[s].tolist(),
                            row[s].tolist(), ids[s], [0] * (bounds[p + 1] - bounds[p]),
                            [0] * (bounds[p + 1] - bounds[p])))
            storage.write_parquet(er.rows_table(er._KEY_SCHEMA, rows),
                                  storage.join(root, "keys", "b0000", f"p{p:05d}.parquet"))
        return er.choose_keepers, er.ChooseTask(0, parts, root)
    index = os.path.join(root, "index")
    if kind == "band":
        keys = rng.integers(0, 2**63, (n, BANDS), dtype=np.uint64)
        near = np.flatnonzero(rng.random(n) < 0.2)
        keys[near[near > 0], :8] = keys[near[near > 0] - 1, :8]
        for p in range(parts):
            s = slice(bounds[p], bounds[p + 1])
            m = bounds[p + 1] - bounds[p]
            storage.write_parquet(pa.table({"key": pa.array(keys[s].reshape(-1), pa.uint64()),
                                            "node": pa.array(np.repeat(nodes[s], BANDS), pa.int64()),
                                            "part": pa.array(np.full(m * BANDS, p, np.int32), pa.int32())}),
                                  storage.join(index, "bands", "b0000", f"p{p:05d}.parquet"))
        return _band_task, BandTask(0, [IndexRef(index, 0, parts, 0, 0)], os.path.join(root, "work"),
                                    NearParams(buckets=8))
    # label: the partition's document info, and labels for 30% of its nodes
    for p in range(parts):
        s = slice(bounds[p], bounds[p + 1])
        m = bounds[p + 1] - bounds[p]
        storage.write_parquet(pa.table({
            "node": pa.array(nodes[s], pa.int64()), "id": pa.array(ids[s], pa.string()),
            "source": pa.array(["web"] * m, pa.string()), "part": pa.array(part[s], pa.int32()),
            "row": pa.array(row[s], pa.int64()), "src_rank": pa.array(np.zeros(m, np.int32), pa.int32()),
            "quality": pa.array(np.full(m, np.nan), pa.float64()), "length": pa.array(np.full(m, 3000), pa.int64()),
            "tkey": pa.array(rng.integers(0, 2**63, m, dtype=np.uint64), pa.uint64())}),
            storage.join(index, "docs", "k0000", f"p{p:05d}.parquet"))
    lab = nodes[rng.random(n) < 0.3]
    root_of = lab[np.arange(len(lab)) // 3 * 3]
    storage.write_parquet(pa.table({"node": pa.array(lab, pa.int64()), "root": pa.array(root_of, pa.int64())}),
                          storage.join(root, "labels", "p00000", "l.parquet"))
    return _label_task, LabelTask(0, os.path.join(root, "labels"), [IndexRef(index, 0, parts, 0, 0)],
                                  os.path.join(root, "work"), 8)


def _band_task(t: Any) -> Any:
    from lmrefinery.dedup.near.band import band_bucket

    return band_bucket(t)


def _label_task(t: Any) -> Any:
    from lmrefinery.dedup.near.label import label_members

    return label_members(t)


def child(kind: str, n: int, parts: int) -> dict[str, Any]:
    """Build in this process, warm up on a tiny bucket, then measure the real one."""
    with tempfile.TemporaryDirectory(prefix="lmr-bench-buckets-") as tmp:
        fn, warm = build(kind, 2000, 2, os.path.join(tmp, "warm"))
        fn(warm)
        fn, task = build(kind, n, parts, os.path.join(tmp, "real"))
        import gc

        gc.collect()
        _reset_peak()
        with open("/proc/self/status") as s:
            start = next(int(ln.split()[1]) for ln in s if ln.startswith("VmRSS:"))
        fn(task)
        peak = _hwm_kb()
    return {"kind": kind, "documents": n, "parts": parts, "rss_start_mb": round(start / 1024, 1),
            "peak_mb": round(peak / 1024, 1), "growth_mb": round((peak - start) / 1024, 1),
            "bytes_per_doc": round((peak - start) * 1024 / n)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, nargs="+", default=[125_000, 250_000, 500_000])
    ap.add_argument("--kinds", nargs="+", default=["exact", "band", "label"])
    ap.add_argument("--parts", type=int, default=32)
    ap.add_argument("--child", nargs=3, metavar=("KIND", "DOCS", "PARTS"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "dedup_buckets.json"))
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.join(ROOT, "lib"))
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), int(a.child[2]))))
        return 0
    rows = []
    for kind in a.kinds:
        for n in a.docs:
            p = subprocess.run([sys.executable, __file__, "--child", kind, str(n), str(a.parts)],
                               capture_output=True, text=True, check=True)
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]) | {"loadavg": os.getloadavg()[0]})
            print(json.dumps(rows[-1]), flush=True)
    res = {"machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}", "runs": rows}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
