"""Entrypoint for `ray job submit`: instruction-tune from an SFT recipe.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/sft.py conf/train/350m-sft.yaml --set model.init=s3://bucket/runs/train/llama-350m/model

Prints the run folder, the tuned model, ROUGE-L/BLEU of the base and the tuned model
on held-out prompts, and sample generations; exits non-zero on failure."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pretrain import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(kind="sft"))
