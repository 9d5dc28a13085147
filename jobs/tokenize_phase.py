"""Tokenize phase: run a recipe through its tokenize stage(s); the curation
stages before them are skipped when already committed (run by jobs/curate.py).

    python jobs/tokenize_phase.py RECIPE [--set KEY=VALUE ...]

The same as `lmrefinery job tokenize RECIPE ...`. (Not named tokenize.py: a script
folder is first on sys.path, and that name would shadow the standard library.)
Exit status: 0 done, 1 failed, 2 bad recipe or arguments (including a recipe
without tokenize stages).
"""
import os
import sys

from lmrefinery.cli import main

if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(["job", "tokenize", "--root", root, *sys.argv[1:]]))
