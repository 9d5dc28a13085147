"""Shared plumbing for the job entrypoints in ``jobs/``.

Every entrypoint (``run_recipe.py``, ``curate.py``, ``tokenize.py`` and the
``pretrain.py`` / ``sft.py`` / ``instruct.py`` entrypoints of the training and
instruction-data phases) is a plain script that works the same way whether it
is started from a shell, by ``ray job submit``, by a KubeRay ``RayJob``, by
``spark-submit`` or by the Airflow DAG in ``deploy/airflow``:

* ``bootstrap()`` puts ``<repo>/lib`` first on ``sys.path`` so the package is
  importable from a ``--working-dir`` upload on a cluster where lmrefinery is
  not installed.
* ``job_parser()`` gives the common flags: ``RECIPE``, ``--set KEY=VALUE``,
  ``--engine``, ``--workers``, ``--stats-out``, ``--quiet``.
* ``guarded(fn, phase)`` runs the work and turns the outcome into an exit code
  (0 done, 1 failed, 2 bad recipe/arguments) and into two machine-readable
  lines on stdout that schedulers parse from the job's log:

      LMR_RESULT {"phase": ..., "output": ..., "report": ..., "stats": ..., ...}
      LMR_FAILED {"phase": ..., "error": ..., "type": ...}

  Human-readable ``output:`` / ``report:`` lines are printed too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from typing import Any, Callable

JOBS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(JOBS_DIR)
RESULT_TAG = "LMR_RESULT"
FAILED_TAG = "LMR_FAILED"

# Stage modules that belong to a phase other than curation (the rest is curation).
PHASE_MODULES = {
    "tokenize": ("lmrefinery.tokenize",),
    "instruct": ("lmrefinery.instruct",),
}


def bootstrap() -> None:
    """Make ``lmrefinery`` importable from the checkout (or uploaded working dir)
    this script lives in, ahead of any other installed copy."""
    lib = os.path.join(ROOT, "lib")
    if os.path.isdir(os.path.join(lib, "lmrefinery")) and lib not in sys.path:
        sys.path.insert(0, lib)


def resolve_path(path: str) -> str:
    """A recipe path as given, else relative to the repository root (so
    ``conf/pipelines/mini.yaml`` works from any current directory)."""
    if "://" in path or os.path.isabs(path) or os.path.exists(path):
        return path
    alt = os.path.join(ROOT, path)
    return alt if os.path.exists(alt) else path


def job_parser(description: str, recipe_required: bool = True) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("recipe", nargs=None if recipe_required else "?",
                    help="recipe YAML (a path, or relative to the repository root)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe key (repeatable), e.g. --set resources.workers=8")
    ap.add_argument("--engine", choices=["ray", "spark", "local"],
                    help="override the recipe's engine")
    ap.add_argument("--workers", type=int, help="override resources.workers")
    ap.add_argument("--stats-out", metavar="URI",
                    help="also write the run's stats JSON here (local path or s3://)")
    ap.add_argument("--quiet", action="store_true", help="no per-part progress lines")
    inc = ap.add_argument_group("incremental runs (the input ledger, lmrefinery/ingest/ledger.py)")
    inc.add_argument("--partition", metavar="NAME",
                     help="write to <recipe output>/NAME (e.g. the run date) and share the ledger at "
                          "<recipe output>/_ledger/inputs.json between partitions")
    inc.add_argument("--new-only", action="store_true",
                     help="read only input objects not in the ledger yet (or changed since)")
    inc.add_argument("--ledger", metavar="URI", help="input ledger location (overrides the default)")
    inc.add_argument("--reuse-inputs", action="store_true",
                     help="read exactly the objects the committed read stage of this output read "
                          "(the phases that follow an incremental curate in the same partition)")
    return ap


def load(args) -> Any:
    bootstrap()
    from lmrefinery.core import storage
    from lmrefinery.core.recipe import load_recipe

    recipe = load_recipe(resolve_path(args.recipe), args.overrides)
    if getattr(args, "partition", None):
        base = recipe.output.rstrip("/")
        if not getattr(args, "ledger", None):
            args.ledger = storage.join(base, "_ledger", "inputs.json")
        recipe.output = storage.join(base, args.partition)
    return recipe


def stage_phase(name: str) -> str:
    """Which phase a stage belongs to: by the module that defines it."""
    from lmrefinery.core.stage import get_stage

    mod = get_stage(name).__module__
    for phase, prefixes in PHASE_MODULES.items():
        if any(mod == p or mod.startswith(p + ".") for p in prefixes):
            return phase
    return "curate"


class PhaseError(ValueError):
    """The recipe has nothing for the requested phase (an argument error, exit 2)."""


def select_phase(recipe, phase: str):
    """The recipe cut after the last stage of ``phase``.

    Stages before it that are already committed are skipped by the runner, so
    running ``curate`` then ``tokenize`` does each stage once. The cut recipe
    keeps the full recipe's fingerprint, so stats and manifests name the same
    recipe whichever phase wrote them."""
    phases = [stage_phase(s.stage) for s in recipe.stages]
    if phase not in phases:
        listing = ", ".join(f"{s.stage}({p})" for s, p in zip(recipe.stages, phases))
        raise PhaseError(f"{recipe.source_file or recipe.name}: no {phase} stages in this recipe "
                         f"(stages: {listing})")
    last = max(i for i, p in enumerate(phases) if p == phase)
    return pin_prefix(recipe, last + 1)


def pin_prefix(recipe, n: int):
    from pydantic import PrivateAttr

    from lmrefinery.core.recipe import Recipe

    class _Cut(Recipe):
        _pinned: str | None = PrivateAttr(default=None)

        def fingerprint(self) -> str:  # noqa: D401 - same as the full recipe's
            return self._pinned or super().fingerprint()

    fp = recipe.fingerprint()
    data = recipe.model_dump()
    data["stages"] = data["stages"][:n]
    cut = _Cut(**data)
    cut._pinned = fp
    return cut


def prepare_engine(recipe) -> None:
    """Under spark-submit, build the session from spark-submit's own settings
    (master, executors, confs) before the engine would make a local one."""
    if recipe.engine == "spark" and os.environ.get("PYSPARK_GATEWAY_PORT"):
        from pyspark.sql import SparkSession

        (SparkSession.builder.appName(f"lmrefinery-{recipe.name}")
         .config("spark.sql.execution.arrow.pyspark.enabled", "true")
         .config("spark.python.worker.reuse", "true")
         .getOrCreate())


def run_recipe(recipe, args, phase: str, only: list[str] | None = None) -> dict:
    """Run a (possibly cut) recipe with the Runner; print the summary; return
    the result dict that ``guarded`` prints as ``LMR_RESULT``."""
    from lmrefinery.core import manifest as mf
    from lmrefinery.core import storage
    from lmrefinery.core.runner import Runner, format_summary

    if args.engine:
        recipe.engine = args.engine
    prepare_engine(recipe)
    cls = _SameInputsRunner if getattr(args, "reuse_inputs", False) else Runner
    runner = cls(recipe, engine=args.engine, only=only, workers=args.workers, quiet=args.quiet,
                 new_only=getattr(args, "new_only", False), ledger=getattr(args, "ledger", None))
    stats = runner.run()
    extra = {}
    if recipe.engine == "spark":
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        extra["spark_master"] = active.sparkContext.master if active else None
    print(format_summary(stats) if stats["stages"] else "nothing new to read: no stage ran", flush=True)
    if args.stats_out:
        mf.write_json(args.stats_out, stats)
    import lmrefinery

    return {
        "phase": phase,
        "lmrefinery": os.path.dirname(os.path.abspath(lmrefinery.__file__)),
        "recipe": recipe.source_file or recipe.name,
        "run": stats["run"],
        "engine": stats["engine"],
        "output": stats["output"],
        "stats": storage.join(stats["output"], "stats.json"),
        "report": stats.get("report"),
        "did_work": stats["did_work"],
        "nothing_new": bool(stats.get("nothing_new")),
        "new_inputs_recorded": stats.get("new_inputs_recorded"),
        "ledger": getattr(args, "ledger", None),
        "final_outputs": stats["final_outputs"],
        "stages": [{k: s[k] for k in ("stage", "in", "kept", "rejected", "skipped")} for s in stats["stages"]],
        "planted": stats.get("planted"),
        **extra,
    }


def _same_inputs_runner():
    from lmrefinery.core import manifest as mf
    from lmrefinery.core.runner import Runner
    from lmrefinery.core.stage import get_stage

    class SameInputsRunner(Runner):
        """Reads the objects that the committed read stage of this output read,
        so a later phase of an incremental run sees the same inputs as its curate
        phase (and finds every curation stage committed)."""

        def input_files(self) -> list[dict]:
            files = super().input_files()
            k, name = next((k, s.stage) for k, s in enumerate(self.recipe.stages)
                           if get_stage(s.stage).kind == "read")
            m = mf.read_manifest(self.stage_dir(k, name))
            if m is None:
                raise RuntimeError(f"--reuse-inputs: {self.out} has no committed {name} stage; "
                                   "run the curate phase for this output first")
            took = {(d["path"].split("@", 1)[0], d["size"], d["etag"]) for d in m["inputs"]}
            return [f for f in files if (f"{f['input']}:{f['rel']}", f["size"], f["etag"]) in took]

    return SameInputsRunner


class _LazyRunner:
    def __call__(self, *a, **kw):
        return _same_inputs_runner()(*a, **kw)


_SameInputsRunner = _LazyRunner()


def emit_result(result: dict) -> None:
    """The closing lines of a successful job (humans read the first ones,
    schedulers parse the tagged one)."""
    for key in ("output", "report", "stats"):
        if result.get(key):
            print(f"{key}: {result[key]}", flush=True)
    print(f"{RESULT_TAG} {json.dumps(result, sort_keys=True, default=str)}", flush=True)


def guarded(fn: Callable[[], dict], phase: str) -> int:
    """Run ``fn`` and turn its outcome into an exit code and tagged log lines."""
    t0 = time.time()
    bootstrap()
    usage: tuple = (PhaseError, FileNotFoundError)
    try:
        from lmrefinery.core.recipe import RecipeError

        usage += (RecipeError,)
    except ImportError:  # the package or a dependency is missing: fn() reports it below
        pass
    try:
        result = fn()
    except usage as e:
        return _fail(phase, e, 2, t0)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - report every failure the same way
        traceback.print_exc()
        return _fail(phase, e, 1, t0)
    result["seconds"] = round(time.time() - t0, 2)
    emit_result(result)
    return 0


def _fail(phase: str, e: BaseException, code: int, t0: float) -> int:
    msg = str(e) or type(e).__name__
    print(f"lmrefinery {phase}: error: {msg}", file=sys.stderr, flush=True)
    print(f"{FAILED_TAG} " + json.dumps({"phase": phase, "error": msg, "type": type(e).__name__,
                                         "exit_code": code, "seconds": round(time.time() - t0, 2)}),
          flush=True)
    return code


def parse_tagged(log: str, tag: str = RESULT_TAG) -> dict | None:
    """The last ``LMR_RESULT`` (or ``LMR_FAILED``) object in a job's log."""
    found = None
    for line in log.splitlines():
        i = line.find(tag + " ")
        if i >= 0:
            try:
                found = json.loads(line[i + len(tag) + 1:])
            except json.JSONDecodeError:
                continue
    return found


def phase_main(phase: str, description: str) -> int:
    """The whole of a recipe-phase entrypoint (curate, tokenize, instruct)."""
    ap = job_parser(description)
    args = ap.parse_args()

    def work() -> dict:
        recipe = select_phase(load(args), phase)
        return run_recipe(recipe, args, phase)

    return guarded(work, phase)
