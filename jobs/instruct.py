"""Thin entry point for `ray job submit`: runs `lmrefinery instruct ...` (or a
recipe with `run RECIPE`) on the cluster the job was submitted to.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/instruct.py self-instruct --seeds seeds.jsonl --base-url http://vllm:8000/v1 \
        --model my-model --out s3://bucket/gen/round1.jsonl
    ray job submit ... -- python jobs/instruct.py run conf/instruct/recipe.yaml
"""
import os
import sys

from lmrefinery.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "run":
        os.environ.setdefault("RAY_ADDRESS", "auto")
        sys.exit(main(args))
    sys.exit(main(["instruct", *args]))
