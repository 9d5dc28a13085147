"""Evaluation phase: `lmrefinery eval MODEL ...` as a job (perplexity on text files or
tokenize splits; ROUGE-L / BLEU / exact match on an instruction split).

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/evaluate.py s3://bucket/runs/train/125m/model \
            --tokens s3://bucket/runs/pile/stages/08-tokenize:valid --out s3://bucket/eval/125m.json

Prints the table, then the `LMR_RESULT {...}` line with every
perplexity. Exit status: 0 done, 1 failed, 2 bad arguments.

The same as `lmrefinery job eval ...` (options: `lmrefinery job eval --help`).
"""
import os
import sys

from lmrefinery.cli import main

if __name__ == "__main__":
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(["job", "eval", "--root", root, *sys.argv[1:]]))
