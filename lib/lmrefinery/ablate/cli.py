"""``lmrefinery ablate SPEC [--recipe RECIPE] [--engine E] [--phase all|curate|train] [--set KEY=VALUE]``."""
from __future__ import annotations

import time


def cmd_ablate(a) -> int:
    from .run import run_ablation
    from .spec import load_spec
    from .summary import summary_table

    t0 = time.time()
    overrides = list(a.overrides) + ([f"recipe={a.recipe}"] if a.recipe else [])
    spec = load_spec(a.spec, overrides)
    result = run_ablation(spec, engine=a.engine, phase=a.phase)
    if a.phase == "curate":
        for v in result["variants"]:
            print(f"{v['name']}: {v['documents']:,} documents, {v['tokens']:,} tokens ({v['dataset']})")
        print(f"curated: {result['run_dir']}/curated.json; train with --phase train (wall {time.time() - t0:.1f} s)")
        return 0
    print(summary_table(result["summary"], result["baseline"], result.get("reference")))
    for k, v in result["outputs"].items():
        print(f"{k}: {v}")
    print(f"wall time: {time.time() - t0:.1f} s")
    return 0


def register(sub) -> None:
    p = sub.add_parser("ablate", help="train one tiny model per curation variant x seed on an equal token budget "
                                      "and compare held-out perplexity (an ablation spec YAML)")
    add_ablate_arguments(p)
    p.set_defaults(fn=cmd_ablate)


def add_ablate_arguments(p) -> None:
    p.add_argument("spec", help="ablation spec YAML: the pipeline recipe, variants, seeds, held-out groups, "
                                "tokenizer and token budget (see lmrefinery/ablate/spec.py)")
    p.add_argument("--recipe", help="the pipeline recipe to ablate (default: the spec's `recipe`)")
    p.add_argument("--engine", choices=["ray", "spark", "local"], help="curation engine (default: the spec's)")
    p.add_argument("--phase", choices=["all", "curate", "train"], default="all",
                   help="all (default); curate: held-out split, tokenizer and variants only (writes curated.json); "
                        "train: models and evaluation from an earlier curate, e.g. on a GPU machine "
                        "(copy the run folder; --set train.backend=local needs no Ray)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key, e.g. --set train.tokens=500000 --set seeds=[0,1]")
