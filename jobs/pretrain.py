"""Pretraining phase: `lmrefinery train` for a `kind: pretrain` recipe, as a job.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/pretrain.py conf/train/125m-pretrain.yaml --set trainer.max_steps=5000

The same as `lmrefinery job pretrain RECIPE ...`. Runs on the cluster the job was
submitted to (RAY_ADDRESS=auto unless set). Submitting the same recipe again resumes
from the run's latest checkpoint. Prints the run folder, the exported model and the
report, then the `LMR_RESULT {...}` line (lmrefinery/jobs/protocol.py).
Exit status: 0 finished (or stopped at `trainer.stop_at_step`), 1 failed or unfinished,
2 bad recipe or arguments.
"""
import os
import sys

from lmrefinery.cli import main

if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(["job", "pretrain", "--root", root, *sys.argv[1:]]))
