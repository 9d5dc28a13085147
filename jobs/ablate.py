"""Ablation phase: `lmrefinery ablate SPEC` as a job (curation variants x seeds on an
equal token budget, held-out perplexity; see lib/lmrefinery/ablate/spec.py).

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/ablate.py conf/ablate/mini.yaml --set train.tokens=50000000

Re-submitting reuses finished variants and models. Prints the summary table, then the
`LMR_RESULT {...}` line. Exit status: 0 done, 1 failed, 2 bad spec.

The same as `lmrefinery job ablate ...` (options: `lmrefinery job ablate --help`).
"""
import os
import sys

from lmrefinery.cli import main

if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(["job", "ablate", "--root", root, *sys.argv[1:]]))
