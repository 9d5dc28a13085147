#!/usr/bin/env bash
# Run a recipe's curation stages on a Spark cluster with spark-submit.
#
#   deploy/spark/submit.sh RECIPE [jobs/curate.py options...]
#
# Environment:
#   SPARK_MASTER   --master for spark-submit (default local[2]; yarn, spark://HOST:7077, k8s://...)
#   DEPLOY_MODE    client (default) or cluster
#   SPARK_SUBMIT   the spark-submit to use (default: the one on PATH)
#   PYSPARK_PYTHON the Python the executors run (must have lmrefinery's dependencies;
#                  the package itself travels in the --py-files archive)
#   SPARK_CONF     extra "--conf k=v ..." arguments, e.g. executor sizes
#   JOB            which entrypoint of jobs/ to run: curate (default: the curation stages)
#                  or run_recipe (every stage of the recipe, tokenize included)
#
# The code ships as build/lmrefinery-pyfiles.zip (the lmrefinery package; jobs/*.py
# only call its `lmrefinery job` command), built here on every call; the recipe is passed as a file with --files
# in cluster mode, so use s3:// inputs and outputs there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RECIPE="${1:?usage: deploy/spark/submit.sh RECIPE [--set KEY=VALUE ...]}"; shift
SPARK_SUBMIT="${SPARK_SUBMIT:-spark-submit}"
MASTER="${SPARK_MASTER:-local[2]}"
MODE="${DEPLOY_MODE:-client}"
JOB="${JOB:-curate}"
case "$JOB" in curate|run_recipe) ;; *) echo "submit.sh: JOB must be curate or run_recipe, not '$JOB'" >&2; exit 2;; esac
ZIP="$ROOT/build/lmrefinery-pyfiles.zip"

mkdir -p "$ROOT/build"
rm -f "$ZIP"
( cd "$ROOT/lib" && python3 - "$ZIP" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for top in ("lmrefinery",):
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for f in files:
                if not f.endswith((".pyc", ".ftz", ".bin")):
                    z.write(os.path.join(root, f))
PY
)

if [ "$MODE" = cluster ]; then
  RECIPE_ARG="$(basename "$RECIPE")"; FILES=(--files "$RECIPE")
else
  RECIPE_ARG="$RECIPE"; FILES=()
fi

# shellcheck disable=SC2086
exec "$SPARK_SUBMIT" \
  --master "$MASTER" --deploy-mode "$MODE" --name "lmrefinery-$JOB" \
  --py-files "$ZIP" ${FILES[@]+"${FILES[@]}"} \
  --conf spark.sql.execution.arrow.pyspark.enabled=true \
  --conf spark.python.worker.reuse=true \
  --conf spark.ui.enabled=false \
  ${SPARK_CONF:-} \
  "$ROOT/jobs/$JOB.py" "$RECIPE_ARG" --engine spark "$@"
