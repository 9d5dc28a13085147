#!/usr/bin/env bash
# The Ray Train stage itself on one GPU: `lmrefinery train conf/train/350m-pretrain.yaml` with
# one worker and a short schedule, on token shards written by the tokenize stage.
#   bash bench/gpu_trainer.sh DATA_DIR RUNS_DIR [--set KEY=VALUE ...]
# DATA_DIR holds the stage's dataset.json, shards/ and tokenizer/. The trainer's own
# metrics.jsonl (tokens/s, MFU every log step) ends up in RUNS_DIR/train/<name>/.
set -u
DATA=$1; RUNS=$2; shift 2
PY=${PYTHON:-python3}
export PYTHONPATH=lib${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export LMR_TOKENS=$DATA LMR_TOKENIZER=$DATA/tokenizer LMR_RUNS=$RUNS
exec "$PY" -m lmrefinery.cli train conf/train/350m-pretrain.yaml \
  --set trainer.workers=1 --set trainer.cpus_per_worker=8 \
  --set data.seq_len=1024 --set trainer.micro_batch_size=32 --set trainer.grad_accum=1 \
  --set trainer.max_steps=60 --set trainer.warmup_steps=10 --set trainer.log_every=10 \
  --set trainer.eval_every=60 --set trainer.eval_batches=4 --set trainer.checkpoint_every=60 \
  --set logging.tensorboard=false "$@"
