"""Curation phase: run a recipe's curation stages (read, clean, filters, lid,
quality, pii, dedup; everything before tokenize/instruct stages).

    python jobs/curate.py conf/pipelines/mini.yaml [--set KEY=VALUE ...] [--engine ray|spark|local]
    spark-submit --master yarn jobs/curate.py RECIPE --engine spark    (see deploy/spark)

The same as `lmrefinery job curate RECIPE ...` (options: `lmrefinery job curate --help`).
Stages already committed with the same inputs, params and code are skipped, so
a retry redoes only what did not finish. Exit status: 0 done, 1 failed, 2 bad
recipe or arguments. Needs lmrefinery importable (installed, Ray's py_modules,
spark-submit's --py-files, or PYTHONPATH=lib).
"""
import os
import sys

from lmrefinery.cli import main

if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(["job", "curate", "--root", root, *sys.argv[1:]]))
