"""Run a whole recipe (every stage, in order) as one job.

    python jobs/run_recipe.py conf/pipelines/mini.yaml [--set KEY=VALUE ...] [--engine ray|spark|local]
    ray job submit --working-dir . --runtime-env deploy/ray/runtime_env.yaml -- \
        python jobs/run_recipe.py conf/pipelines/mini.yaml

The same as `lmrefinery job recipe RECIPE ...` (`--stages a,b` re-runs some stages).
Exit status: 0 done, 1 failed, 2 bad recipe or arguments. The last lines say
where the outputs, stats and report are (and an ``LMR_RESULT {json}`` line for
schedulers).
"""
import os
import sys

from lmrefinery.cli import main

if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(["job", "recipe", "--root", root, *sys.argv[1:]]))
