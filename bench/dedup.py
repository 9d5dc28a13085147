"""Dedup benchmarks: signature speed against DataTrove and datasketch on the
same texts in the same run, end-to-end `dedup` docs/s on 1 and 2 Ray
workers, peak memory per worker as the corpus grows, and quality (precision /
recall against exact Jaccard) on the labelled set, with verification on and off.

    .venv/bin/python bench/dedup.py [--quick]

Writes bench/results/dedup.json and prints a table. Needs plain `datatrove`
(pip install datatrove; not its [processing] extra).
"""
from __future__ import annotations

import os
import sys

# bench/ holds scripts named like stdlib modules (tokenize.py): keep it off the import path
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import glob
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.environ.get("LMR_SHARED_CORPORA", os.path.join(ROOT, "..", "shared", "corpora")))
sys.path.insert(0, os.path.join(ROOT, "lib"))


def english_texts() -> list[str]:
    out = [json.loads(x)["text"] for x in open(os.path.join(SHARED, "web", "c4_demo.jsonl"), encoding="utf-8")]
    for line in open(os.path.join(SHARED, "wiki", "wiki_demo_en_plaintext.txt"), encoding="utf-8"):
        w = line.split()
        out += [" ".join(w[i:i + 600]) for i in range(0, len(w), 600)]
    return out


def best_of(fn, reps):
    best = None
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        dt = time.process_time() - t0
        best = dt if best is None else min(best, dt)
    return best


def bench_signatures(reps: int) -> dict:
    """CPU seconds in this process (one core), best of `reps`, same texts for all."""
    import datasketch
    import numpy as np

    from lmrefinery.dedup import minhash as M

    texts = english_texts()
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    res = {"texts": len(texts), "mb": round(mb, 3), "num_perm": 112, "ngram": 5}

    def ours(hashname):
        def f():
            for i in range(0, len(texts), 256):
                chunk = texts[i:i + 256]
                M.signatures([M.token_hashes(t, 5, False, hashname) for t in chunk], 112, 1)
        return f

    def ds():
        for t in texts:
            m = datasketch.MinHash(num_perm=112, seed=1)
            sh = M.shingle_strings(M.tokens(t, False), 5, False)
            m.update_batch([s.encode("utf-8") for s in sh])

    peers = {"lmrefinery_xxh3": ours("xxh3"), "lmrefinery_sha1": ours("sha1"), "datasketch_update_batch": ds}
    try:
        from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

        dt = MinhashDedupSignature(output_folder=tempfile.mkdtemp(), config=MinhashConfig())
        # DataTrove's default token hash is xxhash64 of the str; xxhash 4.x wants bytes, so
        # encode as older xxhash did implicitly (same hash, one extra encode per shingle).
        import xxhash as _xx
        dt._hash_func = lambda s: _xx.xxh64_intdigest(s.encode("utf-8"))
        res["datatrove_hash"] = "xxhash64 (default HashConfig, 64-bit precision), str encoded to utf-8"

        def datatrove():
            for t in texts:
                dt.get_signature(dt.get_shingles(t))
        peers["datatrove_MinhashDedupSignature"] = datatrove
        import datatrove as _d
        res["datatrove_version"] = getattr(_d, "__version__", "?")
    except ImportError as e:  # pragma: no cover - bench only
        res["datatrove_error"] = str(e)
    res["datasketch_version"] = datasketch.__version__
    # sanity: our sha1 signatures equal datasketch's on these texts
    t = texts[0]
    m = datasketch.MinHash(num_perm=112, seed=1)
    m.update_batch([s.encode() for s in M.shingle_strings(M.tokens(t, False), 5, False)])
    res["equal_to_datasketch"] = bool(np.array_equal(
        m.hashvalues, M.signatures([M.token_hashes(t, 5, False, "sha1")], 112, 1)[0]))
    for name, fn in peers.items():
        sec = best_of(fn, reps if "datatrove" not in name else 1)
        res[name] = {"cpu_seconds": round(sec, 3), "mb_per_s_per_core": round(mb / sec, 3),
                     "docs_per_s_per_core": round(len(texts) / sec, 1)}
    if "datatrove_MinhashDedupSignature" in res:
        base = res["datatrove_MinhashDedupSignature"]["mb_per_s_per_core"]
        for name in peers:
            res[name]["x_datatrove"] = round(res[name]["mb_per_s_per_core"] / base, 2)
    return res


def make_corpus(d: str, copies: int, files_per_copy: int = 4) -> int:
    """Real documents plus edited copies (the labelled set), replicated
    `copies` times with fresh edits, in files of constant size."""
    from lmrefinery.dedup import labelled as L

    os.makedirs(d, exist_ok=True)
    n = 0
    for c in range(copies):
        docs, _ = L.build(SHARED, 300, 300, seed=100 + c)
        r = random.Random(c)
        r.shuffle(docs)
        per = (len(docs) + files_per_copy - 1) // files_per_copy
        for j in range(files_per_copy):
            with open(os.path.join(d, f"docs-{c:03d}-{j}.jsonl"), "w", encoding="utf-8") as f:
                for x in docs[j * per:(j + 1) * per]:
                    f.write(json.dumps({"text": x["text"], "lang": x["lang"], "key": f"{c}-{x['id']}"},
                                       ensure_ascii=False) + "\n")
                    n += 1
    return n


def run_pipeline(corpus: str, out: str, engine: str, workers: int, verify: bool = True, buckets: int = 8) -> dict:
    """One run in a fresh process (fresh Ray workers, so their peak RSS is this run's)."""
    code = f"""
import json, sys
sys.path.insert(0, {os.path.join(ROOT, 'lib')!r})
from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.runner import Runner
rec = {{"name": "b", "output": {out!r}, "engine": {engine!r}, "resources": {{"workers": {workers}}}, "report": False,
       "inputs": [{{"name": "c", "format": "jsonl", "paths": [{corpus + '/*.jsonl'!r}],
                   "fields": {{"text": "text", "lang": "lang", "title": "key"}}}}],
       "stages": [{{"stage": "read"}}, {{"stage": "dedup", "buckets": {buckets}, "verify": {verify}}}]}}
st = Runner(load_recipe(rec), quiet=True).run()
print("RESULT" + json.dumps(st["stages"][1]))
"""
    shutil.rmtree(out, ignore_errors=True)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT")]
    if not line:
        raise RuntimeError(p.stderr[-3000:])
    row = json.loads(line[0][6:])
    rep = json.load(open(glob.glob(os.path.join(out, "stages", "01-dedup", "dedup_report.json"))[0]))
    return {"docs": row["in"], "seconds": row["seconds"], "docs_per_s": round(row["in"] / row["seconds"], 1),
            "removed": row["rejected"], "max_worker_rss_mb": rep["max_worker_rss_mb"],
            "phase_seconds": rep["phase_seconds"], "cc_rounds": rep["cc_rounds"],
            "candidate_pairs": rep["candidate_pairs"], "verified_pairs": rep["verified_pairs"]}


def bench_quality(work: str) -> dict:
    import pyarrow.parquet as pq

    from lmrefinery.dedup import labelled as L

    docs, pairs = L.build(SHARED, 300, 300, seed=7)
    d = os.path.join(work, "labelled")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "x.jsonl"), "w", encoding="utf-8") as f:
        for x in docs:
            f.write(json.dumps({"text": x["text"], "lang": x["lang"], "key": x["id"]}, ensure_ascii=False) + "\n")
    out = {"documents": len(docs), "pairs": len(pairs)}
    for verify in (True, False):
        o = os.path.join(work, f"q-{verify}")
        run_pipeline(d, o, "local", 1, verify)
        title = {}
        for f in glob.glob(os.path.join(o, "stages", "00-read", "data", "*.parquet")):
            for r in pq.read_table(f, columns=["id", "title"]).to_pylist():
                title[r["id"]] = r["title"]
        cl = [{"cluster": r["cluster"], "id": title[r["id"]]}
              for f in glob.glob(os.path.join(o, "stages", "01-dedup", "clusters", "*.parquet"))
              for r in pq.read_table(f).to_pylist()]
        s = L.score(docs, pairs, cl, 0.719)
        s.pop("false_positives")
        out[f"verify_{str(verify).lower()}"] = s
    return out


CURVE_THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)


def _candidate_pairs(keys) -> set[tuple[int, int]]:
    out = set()
    for band in range(keys.shape[1]):
        groups: dict[int, list[int]] = {}
        for i, k in enumerate(keys[:, band].tolist()):
            groups.setdefault(k, []).append(i)
        for ms in groups.values():
            out.update((a, b) for x, a in enumerate(ms) for b in ms[x + 1:])
    return out


def bench_threshold_curve(weights=((0.5, 0.5), (0.2, 0.8))) -> dict:
    """Recall and false-positive candidates by `threshold`, with bands/rows derived by the
    stage's rule (minimise fp_weight * FP area + fn_weight * FN area, datasketch's
    optimal_param), on the labelled set (600 documents + their edited copies, en + zh).
    Jaccard is exact on the stage's own shingle sets; candidates are LSH band collisions
    (before verification; verification then removes every candidate below the threshold)."""
    import numpy as np

    from lmrefinery.dedup import labelled as L
    from lmrefinery.dedup import minhash as M

    docs, pairs = L.build(SHARED, 300, 300, seed=7)
    idx = {d["id"]: i for i, d in enumerate(docs)}
    hl = [M.text_shingle_hashes(d["text"], d["lang"], "mixed", 5, 5) for d in docs]
    sets = [np.unique(h) for h in hl]
    sig = M.signatures(hl, 112, 1)
    jac = {}

    def j(a, b):
        if (a, b) not in jac:
            jac[(a, b)] = M.exact_jaccard(sets[a], sets[b])
        return jac[(a, b)]
    labelled = [(min(idx[p["a"]], idx[p["b"]]), max(idx[p["a"]], idx[p["b"]])) for p in pairs]
    configs = [("default 14x8", None, 14, 8)]
    for t in CURVE_THRESHOLDS:
        for w in weights:
            b, r = M.optimal_bands_rows(t, 112, *w)
            configs.append((f"threshold {t} weights fp/fn {w[0]}/{w[1]}", t, b, r))
    rows = []
    for name, t, b, r in configs:
        cand = _candidate_pairs(M.band_keys(sig, b, r, 1))
        thr = t if t is not None else round(M.lsh_threshold(b, r), 4)
        row = {"config": name, "threshold": thr, "bands": b, "rows": r,
               "s_curve_midpoint": round(M.lsh_threshold(b, r), 3),
               "candidate_pairs": len(cand), "false_candidates_below_threshold": sum(j(*p) < thr for p in cand)}
        for lo, key in ((0.8, "recall_j>=0.80"), (thr, "recall_j>=thr")):
            pos = [p for p in labelled if j(*p) >= lo]
            row[key] = round(sum(p in cand for p in pos) / len(pos), 4) if pos else None
            row[key.replace("recall", "positives")] = len(pos)
        rows.append(row)
    return {"documents": len(docs), "labelled_pairs": len(pairs), "num_perm": 112, "curve": rows}


def _print_curve(c: dict) -> None:
    print(f"threshold curve ({c['documents']} docs, {c['labelled_pairs']} labelled pairs, 112 perms):")
    for r in c["curve"]:
        print(f"  {r['config']:40s} b={r['bands']:3d} r={r['rows']:3d} mid={r['s_curve_midpoint']:.3f} "
              f"recall(J>=0.8)={r['recall_j>=0.80']} recall(J>=thr)={r['recall_j>=thr']} "
              f"candidates={r['candidate_pairs']} below-thr={r['false_candidates_below_threshold']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only-curve", action="store_true", help="re-measure the threshold curve only; the other "
                    "sections of the results file are kept")
    a = ap.parse_args()
    if a.only_curve:
        path = os.path.join(ROOT, "bench", "results", "dedup.json")
        res = json.load(open(path))
        res["threshold_curve"] = bench_threshold_curve()
        with open(path, "w") as f:
            json.dump(res, f, indent=1, sort_keys=True)
        _print_curve(res["threshold_curve"])
        return
    work = tempfile.mkdtemp(prefix="lmr-bench-dedup-")
    res = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "loadavg_at_start": os.getloadavg()},
           "notes": "signatures: CPU seconds of one process (per core), best of N, same English texts for all "
                    "peers; end-to-end and memory: dedup stage seconds and worker peak RSS from the run."}
    print("signatures ...", flush=True)
    res["signatures"] = bench_signatures(1 if a.quick else 3)
    print("quality ...", flush=True)
    res["quality"] = bench_quality(work)
    print("threshold curve ...", flush=True)
    res["threshold_curve"] = bench_threshold_curve()
    sizes = [1, 2] if a.quick else [1, 2, 4]
    res["end_to_end"] = {}
    for c in sizes:
        cdir = os.path.join(work, f"corpus-{c}")
        n = make_corpus(cdir, c)
        for workers in (1, 2):
            if c != sizes[-1] and workers == 1 and c != sizes[0]:
                continue
            print(f"end-to-end: {n} docs, {workers} workers ...", flush=True)
            # buckets grow with the corpus so that every partition stays the same size
            r = run_pipeline(cdir, os.path.join(work, f"out-{c}-{workers}"), "ray", workers, buckets=4 * c)
            r["buckets"] = 4 * c
            res["end_to_end"][f"{n}_docs_{workers}_workers"] = r
    res["loadavg_at_end"] = os.getloadavg()
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "dedup.json"), "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    s = res["signatures"]
    print(f"\nSignatures ({s['mb']} MB English, 112 perms, word 5-grams), per core:")
    for k, v in s.items():
        if isinstance(v, dict):
            print(f"  {k:34s} {v['mb_per_s_per_core']:8.2f} MB/s  {v.get('x_datatrove', '-')}x DataTrove")
    q = res["quality"]
    for k in ("verify_true", "verify_false"):
        print(f"Quality {k}: precision {q[k]['precision']:.4f}, recall(J>=0.8) {q[k]['all']['recall_j>=0.80']:.4f}, "
              f"recall(J>=thr) {q[k]['all']['recall_j>=thr']:.4f}")
    _print_curve(res["threshold_curve"])
    print("End to end (dedup stage on Ray):")
    for k, v in res["end_to_end"].items():
        print(f"  {k:28s} {v['docs_per_s']:8.1f} docs/s  peak worker RSS {v['max_worker_rss_mb']:.0f} MB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
