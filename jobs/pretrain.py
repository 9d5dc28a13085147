"""Entrypoint for `ray job submit`: pretrain from a recipe on the cluster the job runs on.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/pretrain.py conf/train/125m-pretrain.yaml --set trainer.max_steps=5000

Re-submitting the same recipe resumes from the run's latest checkpoint. Prints the
run folder, the exported model and the report; exits non-zero when training failed
or did not finish."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))


def main(argv: list[str] | None = None, kind: str = "pretrain") -> int:
    import argparse

    from lmrefinery.core.recipe import RecipeError
    from lmrefinery.train.cli import format_report
    from lmrefinery.train.config import load_train_recipe
    from lmrefinery.train.trainer import run_training

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("recipe")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    try:
        recipe = load_train_recipe(a.recipe, a.overrides)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if recipe.kind != kind:
        print(f"error: {a.recipe} is a {recipe.kind!r} recipe; use jobs/{recipe.kind}.py", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_ADDRESS", "auto")  # inside `ray job submit`: the job's cluster
    try:
        report = run_training(recipe)
    except Exception as e:  # noqa: BLE001 - report and fail the job
        print(f"error: training failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(format_report(report), flush=True)
    return 0 if report.get("finished") else 1


if __name__ == "__main__":
    sys.exit(main())
