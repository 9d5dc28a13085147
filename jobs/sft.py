"""Instruction-tuning phase: `lmrefinery train` for a `kind: sft` recipe, as a job.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/sft.py conf/train/350m-sft.yaml --set model.init=s3://bucket/runs/train/llama-350m/model

Prints the run folder, the tuned model, ROUGE-L/BLEU of the base and the tuned model on
held-out prompts with sample generations, then `LMR_RESULT {...}`. Exit status as in
jobs/pretrain.py.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from jobs.pretrain import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main("sft", __doc__.splitlines()[0]))
