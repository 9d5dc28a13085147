"""Run a whole recipe (every stage, in order) as one job.

    python jobs/run_recipe.py conf/pipelines/mini.yaml [--set KEY=VALUE ...] [--engine ray|spark|local]
    ray job submit --working-dir . --runtime-env deploy/ray/runtime_env.yaml -- \
        python jobs/run_recipe.py conf/pipelines/mini.yaml

Exit status: 0 done, 1 failed, 2 bad recipe or arguments. The last lines say
where the outputs, stats and report are (and an ``LMR_RESULT {json}`` line for
schedulers).
"""
import os
import sys

# jobs/ must not shadow the standard library (jobs/tokenize.py); import it as a package
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from jobs import _common  # noqa: E402


def main() -> int:
    ap = _common.job_parser(__doc__.splitlines()[0])
    ap.add_argument("--stages", help="comma-separated stages to (re)run; the others must already be committed")
    args = ap.parse_args()

    def work() -> dict:
        recipe = _common.load(args)
        only = args.stages.split(",") if args.stages else None
        return _common.run_recipe(recipe, args, "recipe", only=only)

    return _common.guarded(work, "recipe")


if __name__ == "__main__":
    sys.exit(main())
