"""Instruction-tuning phase: `lmrefinery train` for a `kind: sft` recipe, as a job.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/sft.py conf/train/350m-sft.yaml --set model.init=s3://bucket/runs/train/llama-350m/model

The same as `lmrefinery job sft RECIPE ...`. Prints the run folder, the tuned model,
ROUGE-L/BLEU of the base and the tuned model on held-out prompts with sample
generations, then `LMR_RESULT {...}`. Exit status as in jobs/pretrain.py.
"""
import os
import sys

from lmrefinery.cli import main

if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(["job", "sft", "--root", root, *sys.argv[1:]]))
