"""Curation on Spark through spark-submit (local mode here; a cluster's master
on EMR/Databricks/YARN): deploy/spark/submit.sh ships the package with
--py-files and runs jobs/curate.py with the Spark engine."""
from __future__ import annotations

import os
import subprocess
import sys

from lmrefinery.jobs.protocol import parse_tagged
from run_outputs import part_hashes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
# curation stages + tokenize (conf/pipelines/mini.yaml has grown into the full, slower pipeline)
RECIPE = "deploy/airflow/daily.yaml"



def test_spark_submit_local_mode_curates_like_a_local_run(samples_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYSPARK_", "SPARK_"))}
    env.update(LMR_SAMPLES=samples_dir, LMR_RUNS=str(tmp_path / "spark"), SPARK_SUBMIT=os.path.join(BIN, "spark-submit"),
               SPARK_MASTER="local[2]", PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               PATH=BIN + os.pathsep + env.get("PATH", ""))
    r = subprocess.run(["bash", "deploy/spark/submit.sh", RECIPE, "--quiet"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    res = parse_tagged(r.stdout)
    assert res is not None, r.stdout[-3000:]
    # the session came from spark-submit's --master, not from the recipe's default local[*]
    assert res["engine"] == "spark" and res["spark_master"] == "local[2]"
    # lmrefinery's worker settings filled in what spark-submit left unset
    assert res["spark_unix_sockets"] == "true"
    assert res["phase"] == "curate" and [s["stage"] for s in res["stages"]] == [
        "read", "clean", "length_filter", "exact_dedup"]
    out = res["output"]
    assert out == str(tmp_path / "spark" / "daily")
    assert os.path.exists(os.path.join(out, "report", "index.html"))
    assert os.path.exists(os.path.join(ROOT, "build", "lmrefinery-pyfiles.zip"))

    # the same recipe run in-process writes byte-identical parts
    env_local = dict(env, LMR_RUNS=str(tmp_path / "local"))
    r = subprocess.run([sys.executable, "jobs/curate.py", RECIPE, "--engine", "local",
                        "--quiet"], cwd=ROOT, env=env_local, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert part_hashes(out) == part_hashes(parse_tagged(r.stdout)["output"])
    assert sum(s["kept"] for s in res["stages"][-1:]) > 0
