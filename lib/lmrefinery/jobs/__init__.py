"""``lmrefinery job PHASE RECIPE ...``: a recipe phase, a whole recipe or a training
run as a scheduler job (``ray job submit``, KubeRay, spark-submit, Airflow). The
scripts in the repository's ``jobs/`` folder are one-line wrappers over this command.

Phases: ``recipe`` (every stage), ``curate`` (everything before the first
tokenize/instruct stage), ``tokenize`` (through the tokenize stages; committed
curation stages are skipped), ``pretrain`` / ``sft`` (``lmrefinery train`` for a
recipe of that kind). Exit codes and the ``LMR_RESULT`` / ``LMR_FAILED`` lines:
``protocol.py``."""
from __future__ import annotations

import argparse
from typing import Any

RECIPE_PHASES = ("recipe", "curate", "tokenize")
TRAIN_PHASES = ("pretrain", "sft")
MEASURE_PHASES = ("eval", "ablate")


def cmd_job(a: argparse.Namespace) -> int:
    from .protocol import guarded

    def work() -> dict[str, Any]:
        if a.phase in MEASURE_PHASES:
            from .measure import ablate_phase, eval_phase

            return eval_phase(a) if a.phase == "eval" else ablate_phase(a)
        if a.phase in TRAIN_PHASES:
            from .training import train_phase

            return train_phase(a.phase, a)
        from .phases import load, select_phase
        from .pipeline import run_job_recipe

        recipe = load(a)
        if a.phase == "recipe":
            only = a.stages.split(",") if a.stages else None
            return run_job_recipe(recipe, a, "recipe", only=only)
        return run_job_recipe(select_phase(recipe, a.phase), a, a.phase)

    return guarded(work, a.phase)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML (a path, or relative to --root)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key (repeatable), e.g. --set resources.workers=8")
    p.add_argument("--root", help="resolve a relative recipe path against this folder when it is not found "
                                  "from the working directory (the jobs/ scripts pass their checkout)")


def _recipe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=["ray", "spark", "local"], help="override the recipe's engine")
    p.add_argument("--workers", type=int, help="override resources.workers")
    p.add_argument("--stats-out", metavar="URI", help="also write the run's stats JSON here (local path or s3://)")
    p.add_argument("--quiet", action="store_true", help="no per-part progress lines")
    inc = p.add_argument_group("incremental runs (the input ledger, lmrefinery/ingest/ledger.py)")
    inc.add_argument("--partition", metavar="NAME",
                     help="write to <recipe output>/NAME (e.g. the run date) and share the ledger at "
                          "<recipe output>/_ledger/inputs.json between partitions")
    inc.add_argument("--new-only", action="store_true",
                     help="read only input objects not in the ledger yet (or changed since)")
    inc.add_argument("--ledger", metavar="URI", help="input ledger location (overrides the default)")
    inc.add_argument("--reuse-inputs", action="store_true",
                     help="read exactly the objects the committed read stage of this output read "
                          "(the phases that follow an incremental curate in the same partition)")


HELP = {
    "recipe": "every stage of a recipe",
    "curate": "the curation stages (everything before the first tokenize/instruct stage)",
    "tokenize": "the recipe through its tokenize stages (committed curation stages are skipped)",
    "pretrain": "`lmrefinery train` for a `kind: pretrain` recipe",
    "sft": "`lmrefinery train` for a `kind: sft` recipe",
    "eval": "`lmrefinery eval MODEL ...`: perplexity, ROUGE-L/BLEU/exact match",
    "ablate": "`lmrefinery ablate SPEC`: curation variants x seeds, held-out perplexity",
}


def register(sub: Any) -> None:
    p = sub.add_parser("job", help="run a recipe phase or a training run as a scheduler job "
                                   "(exit 0/1/2 and an LMR_RESULT / LMR_FAILED line)")
    phases = p.add_subparsers(dest="phase", required=True)
    for phase in RECIPE_PHASES + TRAIN_PHASES:
        q = phases.add_parser(phase, help=HELP[phase], description=HELP[phase])
        _common(q)
        if phase in RECIPE_PHASES:
            _recipe_options(q)
        if phase == "recipe":
            q.add_argument("--stages", help="comma-separated stages to (re)run; the others must already be committed")
        q.set_defaults(fn=cmd_job)
    from ..ablate.cli import add_ablate_arguments
    from ..evals.cli import add_eval_arguments

    for phase, add in (("eval", add_eval_arguments), ("ablate", add_ablate_arguments)):
        q = phases.add_parser(phase, help=HELP[phase], description=HELP[phase])
        add(q)
        q.add_argument("--root", help="resolve a relative spec path against this folder (the jobs/ scripts pass "
                                      "their checkout)")
        q.set_defaults(fn=cmd_job)
