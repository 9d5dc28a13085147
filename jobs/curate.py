"""Curation phase: run a recipe's curation stages (read, clean, filters, lid,
quality, pii, dedup; everything before tokenize/instruct stages).

    python jobs/curate.py conf/pipelines/mini.yaml [--set KEY=VALUE ...] [--engine ray|spark|local]
    spark-submit --master yarn jobs/curate.py RECIPE --engine spark    (see deploy/spark)

Stages already committed with the same inputs, params and code are skipped, so
a retry redoes only what did not finish. Exit status: 0 done, 1 failed, 2 bad
recipe or arguments.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from jobs import _common  # noqa: E402

if __name__ == "__main__":
    sys.exit(_common.phase_main("curate", __doc__.splitlines()[0]))
