#!/usr/bin/env bash
# `lmrefinery ablate` at 125M on one leased GPU (issue 14): default vs raw, 2 seeds, the
# largest equal budget with at most 4 passes over the smaller variant. Two phases:
#
#   here:        bash bench/gpu_ablate.sh prepare
#                  wheels the GPU image lacks into .whl/, the shared corpora curated by
#                  bench/ablation.py --phase curate, what training reads packed into .gpuab/
#   GPU machine: run(command="bash bench/gpu_ablate.sh train", carry=[".whl", ".gpuab"], timeout_s=560)
#                  --phase train with train.backend=local (the image has PyTorch and
#                  transformers, but neither Ray nor pydantic); results into $OUT
#
# Both folders must be ignored by git (.git/info/exclude: /.whl/ and /.gpuab/); together
# they are about 20 MB, under the 64 MiB a device call carries.
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
case "${1:-}" in
prepare)
  rm -rf .whl .gpuab && mkdir .whl
  pins=$("$PY" - <<'PYEOF'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("pydantic", "pydantic-core", "annotated-types",
                                               "typing-inspection", "plotly")))
PYEOF
)
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $pins
  "$PY" bench/ablation.py --phase curate --pack .gpuab --work "${WORK:-/tmp/lmr/gpu-ablate-work}"
  du -sh .whl .gpuab
  ;;
train)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:lib PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
  out=${OUT:-.gpuab}
  python3 bench/ablation.py --phase train --scale 125m --gpu --backend local --work .gpuab --seeds 0 1 \
      --out "$out/ablation_125m.json" 2>&1 | tee "$out/ablation_125m.log"
  cp .gpuab/shared/ablation.txt "$out/" || true
  ;;
*)
  echo "usage: bash bench/gpu_ablate.sh prepare|train" >&2
  exit 2
  ;;
esac
