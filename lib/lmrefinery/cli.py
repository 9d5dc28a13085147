"""`lmrefinery` command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set resources.workers=4 "
                        "--set stages.length_filter.min_chars=100")


def _names(csv: list[str] | str | None) -> list[str] | None:
    """Stage names from a comma-separated option (given once or repeated)."""
    if not csv:
        return None
    items = csv if isinstance(csv, list) else [csv]
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def cmd_run(a) -> int:
    from .core.recipe import load_recipe
    from .core.summary import format_summary
    from .run import run_recipe

    t0 = time.time()
    recipe = load_recipe(a.recipe, a.overrides)
    only = _names(a.stages)
    force = _names(getattr(a, "force", None))
    stats = run_recipe(recipe, new_only=getattr(a, "new_only", False), ledger=getattr(a, "ledger", None),
                       engine=a.engine, only=only, workers=a.workers, quiet=a.quiet,
                       break_lock=getattr(a, "break_lock", False), force=force)
    print(format_summary(stats))
    print(f"output: {stats['output']}")
    if stats.get("report"):
        print(f"report: {stats['report']}")
    print(f"wall time: {time.time() - t0:.1f} s")
    return 0


def _stage_overrides(name: str, overrides: list[str]) -> tuple[dict, dict]:
    """(stage params, reader options) from `--set KEY=VALUE`. `options.KEY` is a reader
    option; for `stage read`, a key that is not a read parameter is one too. Both are
    validated by the recipe loader, so an unknown key is an error naming it."""
    import yaml

    from .ingest.read import ReadParams

    params, options = {}, {}
    for ov in overrides:
        k, sep, v = ov.partition("=")
        if not sep or not k.strip():
            from .core.recipe import RecipeError

            raise RecipeError(f"--set {ov!r}: expected KEY=VALUE")
        k, value = k.strip(), yaml.safe_load(v)
        if k.startswith("options."):
            options[k[len("options."):]] = value
        elif name == "read" and k not in ReadParams.model_fields:
            options[k] = value
        else:
            params[k] = value
    return params, options


def cmd_stage(a) -> int:
    """Run one stage on JSONL/Parquet files with a text column."""
    from .core.names import unknown_name
    from .core.recipe import RecipeError, load_recipe
    from .core.stage import all_stages
    from .core.summary import format_summary
    from .run import run_recipe

    if a.name not in all_stages():
        raise RecipeError(f"lmrefinery stage {a.name}: {unknown_name('stage', a.name, all_stages())}")
    fmt = a.format or ("parquet" if all(p.endswith(".parquet") for p in a.input) else "jsonl")
    from .ingest.formats import READERS, get_reader

    try:
        get_reader(fmt)
    except KeyError:
        raise RecipeError(f"--format {fmt}: {unknown_name('input format', fmt, sorted(READERS))}") from None
    params, options = _stage_overrides(a.name, a.overrides)
    stages = [{"stage": "read", "params": params if a.name == "read" else {}}]
    if a.name != "read":
        stages.append({"stage": a.name, "params": params})
    recipe = load_recipe({
        "name": f"stage-{a.name}", "output": a.output, "engine": a.engine,
        "resources": {"workers": a.workers},
        "inputs": [{"name": "input", "paths": a.input, "format": fmt, "options": options}],
        "stages": stages,
        "report": False,
    }, label=f"lmrefinery stage {a.name}")
    stats = run_recipe(recipe, quiet=a.quiet)
    print(format_summary(stats))
    print(f"output: {stats['output']}/stages/")
    return 0


def cmd_stages(a) -> int:
    from .core.stage import all_stages, get_stage

    for name in all_stages():
        cls = get_stage(name)
        role = "transform: may rewrite text" if cls.changes_text else "filter: never changes text"
        print(f"{name}  [{cls.kind}; {role}]  {cls.description}" if cls.kind == "map"
              else f"{name}  [{cls.kind}]  {cls.description}")
        for fname, f in cls.Params.model_fields.items():
            desc = f" - {f.description}" if f.description else ""
            if f.is_required():
                print(f"    {fname} (required){desc}")
                continue
            default = f.get_default(call_default_factory=True)
            if hasattr(default, "model_dump"):
                default = default.model_dump(mode="json")
            print(f"    {fname} = {json.dumps(default, default=str)}{desc}")
    return 0


def cmd_samples(a) -> int:
    from .samples.generate import write_samples

    info = write_samples(a.out_dir, seed=a.seed, docs=a.docs)
    print(json.dumps(info, indent=1))
    return 0


def cmd_demo(a) -> int:
    """Generate sample shards and run the mini recipe on them (the README's first command)."""
    from .core.resources import package_folder
    from .samples.generate import write_samples

    # Samples and runs go under the current directory (the checkout for `make demo`);
    # the recipe is the packaged mini recipe, so an installed wheel runs the same demo.
    samples = os.path.abspath(a.samples or "samples")
    os.environ.setdefault("LMR_SAMPLES", samples)
    os.environ.setdefault("LMR_RUNS", os.path.abspath("runs"))
    write_samples(samples, seed=a.seed, docs=a.docs)
    a.recipe = a.recipe or str(package_folder("lmrefinery", "recipes").joinpath("mini.yaml"))
    a.stages = None
    return cmd_run(a)


ENGINES = ["ray", "spark", "local"]


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=ENGINES, help="override the recipe's engine (default: the recipe's, else ray)")
    p.add_argument("--workers", type=int,
                   help="concurrent tasks (Ray) / partitions (Spark); outputs do not depend on it")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars or per-stage lines (for schedulers); the summary is still printed")


def build_parser() -> argparse.ArgumentParser:
    """Every sub-command, including those the stage families register (commands.py)."""
    from . import __version__

    ap = argparse.ArgumentParser(prog="lmrefinery", description=__doc__)
    ap.add_argument("--version", action="version", version=f"lmrefinery {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("run", help="run a recipe")
    p.add_argument("recipe", help="recipe YAML file (see conf/), or the name of one shipped in the package: "
                                  "mini, cc-snapshot")
    _add_run_options(p)
    p.add_argument("--stages", action="append", metavar="NAMES",
                   help="comma-separated stage names to run; the others must already be committed")
    p.add_argument("--force", action="append", metavar="STAGE",
                   help="re-run this committed stage and every stage after it (comma-separated or repeated)")
    p.add_argument("--new-only", action="store_true",
                   help="read only input objects not in the input ledger yet (or changed since)")
    p.add_argument("--ledger", help="input ledger URI (default: <output>/_ledger/inputs.json)")
    p.add_argument("--break-lock", action="store_true",
                   help="take over the output root's run lock although its holder looks alive "
                        "(only when you know that run is dead)")
    _add_common(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("stage", help="run one stage on JSONL or Parquet input with a text column")
    p.add_argument("name", help="stage name (`lmrefinery stages` lists them)")
    p.add_argument("--input", nargs="+", required=True, help="input files (JSONL or Parquet), local or s3://")
    p.add_argument("--output", required=True, help="output folder (stages/00-read, stages/01-NAME, stats.json)")
    p.add_argument("--format", help="input format (default: parquet when every input ends in .parquet, else jsonl)")
    p.add_argument("--engine", default="local", choices=ENGINES, help="engine (default: local)")
    p.add_argument("--workers", type=int, default=1, help="concurrent tasks (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PARAM=VALUE",
                   help="a stage parameter, e.g. --set min_chars=100 (repeatable); options.KEY=VALUE "
                        "(or, for `stage read`, any non-read parameter) sets a reader option of --format")
    p.set_defaults(fn=cmd_stage)

    p = sub.add_parser("stages", help="list stages and their parameters")
    p.set_defaults(fn=cmd_stages)

    p = sub.add_parser("samples", help="write the generated sample shards")
    p.add_argument("out_dir", help="folder to write the shards and labels.jsonl into")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--docs", type=int, default=200, help="documents per shard family (default 200)")
    p.set_defaults(fn=cmd_samples)

    p = sub.add_parser("demo", help="generate samples and run the mini recipe end to end")
    p.add_argument("--recipe", help="recipe to run instead of the packaged mini recipe")
    p.add_argument("--samples", help="where to write the sample shards (default ./samples)")
    p.add_argument("--seed", type=int, default=0, help="sample generator seed (default 0)")
    p.add_argument("--docs", type=int, default=200, help="documents per shard family (default 200)")
    _add_run_options(p)
    _add_common(p)
    p.set_defaults(fn=cmd_demo)

    from .report.cli import register as register_report

    register_report(sub)

    # commands contributed by later stages (tokenizer, inspect, train, instruct) register here
    from . import commands

    commands.register_all(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    from .core.recipe import RecipeError
    from .core.stage import StageDataError
    from .core.storage import StorageError

    try:
        return a.fn(a) or 0
    except (RecipeError, StorageError, StageDataError, FileNotFoundError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"lmrefinery: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
