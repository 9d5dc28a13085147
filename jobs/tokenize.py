"""Tokenize phase: run a recipe through its tokenize stage(s); the curation
stages before them are skipped when already committed (run by jobs/curate.py).

    python jobs/tokenize.py RECIPE [--set KEY=VALUE ...]

Exit status: 0 done, 1 failed, 2 bad recipe or arguments (including a recipe
without tokenize stages).
"""
import os
import sys

# this file is named like the stdlib module `tokenize`: drop jobs/ from the path first
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from jobs import _common  # noqa: E402

if __name__ == "__main__":
    sys.exit(_common.phase_main("tokenize", __doc__.splitlines()[0]))
