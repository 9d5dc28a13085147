#!/usr/bin/env bash
# The GPU training benchmark as one script, for a single leased H100/H200:
#   bash bench/gpu_train.sh OUT_JSON
# Each line is its own process (compile included). The trainer as it is now comes first,
# the pre-fix trainer (--legacy) after it as the same-machine baseline.
set -u
OUT_JSON=${1:-bench/results/train.json}
PY=${PYTHON:-python3}
export PYTHONPATH=lib${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
run() { echo "== $*"; timeout 170 "$PY" bench/train.py --gpu --compile --out "$OUT_JSON" "$@" || echo "!! failed ($?): $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__, "cudnn", torch.backends.cudnn.version())'
run --presets 350m --seq 1024 --micro-batch 32 --sdpa cudnn
run --presets 350m --seq 1024 --micro-batch 32
run --presets 350m --seq 2048 --micro-batch 16 --sdpa cudnn
run --presets 350m --seq 1024 --micro-batch 32 --legacy
run --presets 125m --seq 1024 2048 --micro-batch 16 --sdpa cudnn
