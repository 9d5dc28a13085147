"""Benchmark: does the default curation make a better tiny model than raw text, at an
equal token budget? `lmrefinery ablate` on the shared corpora (everything except
the instruction sets), CPU, tiny scale.

Recipe: the stages and parameters of the default pipeline recipe
(lib/lmrefinery/recipes/mini.yaml, whatever it holds in this checkout) on the shared
corpora as inputs: web_warc (2 CC WARC files), web_text (C4 + CCNet JSONL), news (60
real news/blog HTML pages), wiki (en + ja MediaWiki XML), wiki_text (30 plain-text
English articles), books (3 Gutenberg books, cut into parts of at most 8,000
characters). The tokenize stage's mix weights name these inputs (mini's weights name
the sample shards). Variants: raw (read + tokenize) and default (all stages), plus
--families: the default without one filter family each. Held out by seed 0: 10% of
each group's documents (clean = wiki + wiki_text + books; web = web_warc + web_text;
news = news), decontaminated from every variant before curation.

    .venv/bin/python bench/ablation.py [--tokens 800000] [--seeds 0 1] [--families [no_quality ...]]

Writes bench/results/ablation.json (numbers, load average before/after, wall time).

At 125M on a GPU (`lmrefinery ablate` itself, in two phases; bench/gpu_ablate.sh runs both):
curate here (`--phase curate --pack DIR` copies what training reads into DIR), then on the
GPU machine, which has neither the corpora nor Ray, `--phase train --scale 125m --gpu
--work DIR` (training in-process: train.backend=local). The 125m budget is the largest
equal one with at most `--epochs` passes over the smallest variant.
"""
from __future__ import annotations

import sys as _sys  # bench/ holds other scripts (e.g. tokenize.py): keep it off the import path

_sys.path[:] = [p for p in _sys.path if p not in ("", __import__("os").path.dirname(__import__("os").path.abspath(__file__)))]

import argparse
import json
import os
import platform
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("LMR_SHARED_CORPORA", os.path.join(ROOT, "..", "shared", "corpora"))
FAMILIES = {"no_lid": ["lid"], "no_quality": ["quality"], "no_dedup": ["exact_dedup", "dedup"], "no_pii": ["pii"]}
WEIGHTS = {"web_warc": 0.1, "web_text": 0.25, "news": 0.05, "wiki": 0.25, "wiki_text": 0.1, "books": 0.25}


def inputs() -> list[dict]:
    s = SHARED
    return [
        {"name": "web_warc", "format": "warc", "paths": [f"{s}/web/cc-main-2020-34-resiliparse-sample.warc.gz",
                                                          f"{s}/web/cc-main-2024-22-whirlwind.warc.gz"]},
        {"name": "web_text", "format": "jsonl", "paths": [f"{s}/web/c4_demo.jsonl", f"{s}/web/ccnet-*.jsonl"]},
        {"name": "news", "format": "html", "paths": [f"{s}/web/html_article_extraction/html/*.html.gz"]},
        {"name": "wiki", "format": "mediawiki", "paths": [f"{s}/wiki/*.xml.bz2"]},
        {"name": "wiki_text", "format": "text", "paths": [f"{s}/wiki/wiki_demo_en_plaintext.txt"]},
        {"name": "books", "format": "gutenberg", "paths": [f"{s}/books/*.txt"], "options": {"max_chars": 8000}},
    ]


def recipe(out: str) -> dict:
    """mini.yaml's stages and parameters (the default pipeline) on the shared corpora."""
    with open(os.path.join(ROOT, "lib", "lmrefinery", "recipes", "mini.yaml"), encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    for s in raw["stages"]:
        if s.get("stage") == "tokenize" and "mix" in s:
            s["mix"] = dict(s["mix"], weights=WEIGHTS)
    raw.update(name="shared", output=out, inputs=inputs(), labels=None, report=False)
    return raw


SCALES = {   # train settings per scale (tokens: the budget unless --tokens / --epochs decide)
    "tiny": {"preset": "tiny", "seq_len": 128, "micro_batch_size": 16, "lr": 6e-3, "warmup_steps": 20},
    "125m": {"preset": "125m", "seq_len": 1024, "micro_batch_size": 32, "lr": 6e-4, "warmup_steps": 18},
}


def spec(args, work: str) -> dict:
    variants = [{"name": "raw", "stages": ["read"]}, {"name": "default"}]
    for k in args.families or []:
        variants.append({"name": k, "drop": FAMILIES[k]})
    train = dict(SCALES[args.scale], tokens=args.tokens, workers=args.workers, backend=args.backend,
                 use_gpu=args.gpu)
    if args.gpu:
        train["extra"] = {"compile": args.compile}
    return {"name": "shared", "recipe": os.path.join(work, "recipe.yaml"), "output": work, "baseline": "raw",
            "reference": "default" if args.families else None,
            "variants": variants, "seeds": args.seeds,
            "heldout": {"seed": 0, "fraction": 0.1,
                        "groups": {"clean": ["wiki", "wiki_text", "books"], "web": ["web_warc", "web_text"],
                                   "news": ["news"]}},
            "tokenizer": {"vocab_size": 4000, "sample_docs": 3000},
            "train": train,
            "eval": {"context": SCALES[args.scale]["seq_len"], "stride": SCALES[args.scale]["seq_len"] // 2}}


def epochs_budget(work: str, epochs: float) -> int:
    """``epochs`` passes over the smallest curated variant, in tokens."""
    from lmrefinery.ablate.curated import CURATED

    with open(os.path.join(work, "shared", CURATED), encoding="utf-8") as f:
        return int(epochs * min(v["tokens"] for v in json.load(f)["variants"]))


def device_name(gpu: bool) -> str:
    if gpu:
        import torch

        return torch.cuda.get_device_name(0)
    return f"{os.cpu_count()} CPU cores"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, help="training tokens per model, the equal budget (default: 800,000 "
                    "at tiny scale; --epochs passes over the smallest variant at 125m)")
    ap.add_argument("--epochs", type=float, default=4.0, help="125m: the budget in passes over the smallest variant")
    ap.add_argument("--scale", choices=sorted(SCALES), default="tiny")
    ap.add_argument("--phase", choices=["all", "curate", "train"], default="all")
    ap.add_argument("--pack", help="with --phase curate: copy what --phase train reads into this folder")
    ap.add_argument("--backend", choices=["ray", "local"], default="ray", help="train.backend (local: no Ray)")
    ap.add_argument("--gpu", action="store_true", help="train on the GPU (train.use_gpu)")
    ap.add_argument("--compile", action="store_true", help="with --gpu: torch.compile each model")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--workers", type=int, help="Ray Train workers, 1 CPU each (default 2; 1 with --backend local)")
    ap.add_argument("--families", nargs="*", choices=sorted(FAMILIES), help="also these filter families off "
                    "(no names: all); finished variants and models of the same run folder are reused")
    ap.add_argument("--work", default="/tmp/lmr/bench-ablation", help="run folder (outside the repo)")
    ap.add_argument("--out", help="results file (default bench/results/ablation.json; ablation_125m.json at 125m)")
    args = ap.parse_args()
    if args.families == []:
        args.families = sorted(FAMILIES)
    args.workers = args.workers or (1 if args.backend == "local" or args.gpu else 2)
    args.out = args.out or os.path.join(ROOT, "bench", "results",
                                        "ablation.json" if args.scale == "tiny" else f"ablation_{args.scale}.json")

    from lmrefinery.ablate.curated import copy_curated
    from lmrefinery.ablate.run import run_ablation
    from lmrefinery.ablate.spec import load_spec
    from lmrefinery.ablate.summary import summary_table

    os.makedirs(args.work, exist_ok=True)
    if args.phase != "train":   # the recipe names the corpora: not needed (nor there) for training
        with open(os.path.join(args.work, "recipe.yaml"), "w") as f:
            yaml.safe_dump(recipe(os.path.join(args.work, "unused")), f, sort_keys=False)
    if args.tokens is None:
        args.tokens = epochs_budget(args.work, args.epochs) if args.scale != "tiny" and args.phase == "train" \
            else 800_000
    load0, t0 = load(), time.time()
    result = run_ablation(load_spec(spec(args, args.work)), phase=args.phase)
    if args.phase == "curate":
        for v in result["variants"]:
            print(f"{v['name']}: {v['documents']:,} documents, {v['tokens']:,} tokens")
        if args.pack:
            files = copy_curated(result["run_dir"], os.path.join(args.pack, "shared"))
            print(f"packed {len(files)} files into {args.pack}/shared")
        return
    wall = round(time.time() - t0, 1)
    out = {"note": __doc__.split("\n\n")[1].replace("\n", " "),
           "machine": {"host": platform.node(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
           "uptime_load_before": load0, "uptime_load_after": load(), "wall_seconds": wall,
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "scale": args.scale, "train": result["spec"]["train"], "device": device_name(args.gpu),
           "command": " ".join(["bench/ablation.py", *__import__("sys").argv[1:]]),
           "token_budget": result["token_budget"], "seeds": result["seeds"], "heldout": result["heldout"],
           "variants": [{k: v for k, v in x.items() if k != "dataset"} for x in result["variants"]],
           "runs": [{k: v for k, v in r.items() if k != "model"} for r in result["runs"]],
           "summary": result["summary"],
           "table": summary_table(result["summary"], result["baseline"], result.get("reference"))}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    print(out["table"])
    print(f"wall {wall} s, load {load0} -> {out['uptime_load_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
