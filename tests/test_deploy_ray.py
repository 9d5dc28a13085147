"""The cluster paths for real: a Ray head started with `ray start --head` (its
own ports, temp dir and auth token, so it never meets the session's `ray.init`
instance), jobs submitted with `ray job submit --working-dir .`, and the
Airflow DAG run with `airflow dags test` against the same head."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from lmrefinery.jobs.protocol import parse_tagged
from ray_nodes import RAY, RayNode
from ray_nodes import runtime_env_file as _runtime_env
from run_outputs import part_hashes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
# curation stages + tokenize (conf/pipelines/mini.yaml has grown into the full, slower pipeline)
RECIPE = "deploy/airflow/daily.yaml"



@pytest.fixture(scope="module")
def ray_head():
    head = RayNode(num_cpus=2)
    try:
        yield head
    finally:
        head.stop()
        assert not head.processes(), "Ray head processes survived the stop"


def _submit(head: RayNode, sub_id: str, runtime_env: str, *entrypoint: str) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, "job", "submit", "--address", head.address, "--submission-id", sub_id,
                           "--working-dir", ".", "--runtime-env", runtime_env, "--", *entrypoint],
                          cwd=ROOT, env=head.client_env(), capture_output=True, text=True, timeout=300)


def _job_cli(head: RayNode, *args: str) -> str:
    r = subprocess.run([RAY, "job", *args, "--address", head.address, "--log-style", "record",
                        "--log-color", "false"], cwd=ROOT, env=head.client_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def _local_run(samples: str, runs) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(LMR_SAMPLES=samples, LMR_RUNS=str(runs))
    r = subprocess.run([sys.executable, "jobs/curate.py", RECIPE, "--engine", "local",
                        "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return parse_tagged(r.stdout)["output"]


def test_ray_job_submit_runs_the_curate_phase(ray_head, samples_dir, tmp_path):
    runs = tmp_path / "runs"
    rt = _runtime_env(tmp_path, LMR_SAMPLES=samples_dir, LMR_RUNS=str(runs))
    r = _submit(ray_head, "lmr-curate-ok", rt, "python", "jobs/curate.py", RECIPE,
                "--set", "resources.workers=2", "--quiet")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "Job 'lmr-curate-ok' succeeded" in _job_cli(ray_head, "status", "lmr-curate-ok")

    logs = _job_cli(ray_head, "logs", "lmr-curate-ok")
    result = parse_tagged(logs)
    assert result is not None, logs[-3000:]
    out = str(runs / "daily")
    assert result["output"] == out and result["phase"] == "curate" and result["engine"] == "ray"
    assert f"output: {out}" in logs and f"report: {out}/report/index.html" in logs
    # the driver imported the package from the uploaded working dir, not from this checkout
    assert result["lmrefinery"].startswith(ray_head.tmp), result["lmrefinery"]

    # the outputs are there and agree with what the job reported
    stats = json.load(open(os.path.join(out, "stats.json")))
    assert [s["stage"] for s in stats["stages"]] == ["read", "clean", "length_filter", "exact_dedup"]
    assert [s["kept"] for s in stats["stages"]] == [s["kept"] for s in result["stages"]]
    final = [os.path.join(out, p) for p in stats["final_outputs"]]
    assert sum(pq.read_metadata(p).num_rows for p in final) == stats["stages"][-1]["kept"] > 0
    assert os.path.exists(os.path.join(out, "report", "index.html"))
    # the cluster job wrote byte-identical parts to a local in-process run of the same recipe
    local = _local_run(samples_dir, tmp_path / "local")
    assert part_hashes(out) == part_hashes(local)


def test_failed_ray_job_reports_status_and_error(ray_head, samples_dir, tmp_path):
    rt = _runtime_env(tmp_path, LMR_SAMPLES=samples_dir, LMR_RUNS=str(tmp_path / "runs"))
    r = _submit(ray_head, "lmr-curate-bad", rt, "python", "jobs/curate.py", RECIPE,
                "--set", "inputs.web_text.paths=[/nonexistent/lmr/*.jsonl]")
    assert r.returncode != 0
    status = _job_cli(ray_head, "status", "lmr-curate-bad")
    assert "Job 'lmr-curate-bad' failed" in status, status
    logs = _job_cli(ray_head, "logs", "lmr-curate-bad")
    failed = parse_tagged(logs, "LMR_FAILED")
    assert failed is not None, logs[-3000:]
    assert failed["phase"] == "curate" and failed["exit_code"] == 2
    assert "no files match" in failed["error"] and "/nonexistent/lmr/*.jsonl" in failed["error"]
    assert parse_tagged(logs) is None  # no success line from a failed job


# ------------------------------------------------------------------ Airflow
AF_VENV = os.environ.get("LMR_AIRFLOW_VENV", os.path.join(ROOT, ".venv-airflow"))
AF_BIN = os.path.join(AF_VENV, "bin")
DAG_ID = "lmrefinery_daily"


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, ray_head):
    """A real Airflow (its own virtualenv, made by `make airflow-venv`) with a
    fresh sqlite metadata DB, the repo's DAG folder, and the head's token."""
    if not os.path.exists(os.path.join(AF_BIN, "airflow")):
        pytest.fail(f"no Airflow virtualenv at {AF_VENV}: run `make airflow-venv` (make test does)")
    home = tmp_path_factory.mktemp("airflow")
    # the shipped settings, with a short retry delay so a retried task does not stall the test
    with open(os.path.join(ROOT, "deploy", "airflow", "pipeline.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg.update(repo_dir=ROOT, retries=1, retry_delay_s=1, poll_s=1)
    (home / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    env = ray_head.client_env(
        AIRFLOW_HOME=str(home), LMR_DAG_CONFIG=str(home / "pipeline.yaml"),
        AIRFLOW__CORE__DAGS_FOLDER=os.path.join(ROOT, "deploy", "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False", LMR_RAY_ADDRESS=ray_head.address,
        PATH=AF_BIN + os.pathsep + os.environ.get("PATH", ""))
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run([os.path.join(AF_BIN, "airflow"), "db", "migrate"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return env


def _af_python(env: dict, code: str) -> str:
    r = subprocess.run([os.path.join(AF_BIN, "python"), "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def test_airflow_dag_imports_with_phase_tasks(airflow_env):
    out = _af_python(airflow_env, """
import json
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
b = DagBag("deploy/airflow")
d = b.dags.get(DAG_ID)
print(json.dumps({"errors": {k: str(v) for k, v in b.import_errors.items()},
                  "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks} if d else None,
                  "retries": sorted({t.retries for t in d.tasks}) if d else None,
                  "schedule": str(getattr(d.timetable, "_expression", d.timetable)) if d else None}))
""".replace("DAG_ID", repr(DAG_ID)))
    info = json.loads(out.strip().splitlines()[-1])
    assert info["errors"] == {}
    assert info["tasks"] == {"curate": [], "instruct": [], "tokenize": ["curate"], "pretrain": ["tokenize"],
                             "sft": ["instruct", "pretrain"]}
    assert info["retries"] == [1]
    assert "0 0 * * *" in info["schedule"]


def _dags_test(env: dict, day: str, conf: dict) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(AF_BIN, "airflow"), "dags", "test", DAG_ID, day, "-c", json.dumps(conf)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)


def _errors(r: subprocess.CompletedProcess) -> str:
    lines = (r.stdout + r.stderr).splitlines()
    keep = [ln for i, ln in enumerate(lines) if "error" in ln.lower() or "LMR_FAILED" in ln]
    return "\n".join(keep[-40:]) or "\n".join(lines[-60:])


def _run_state(env: dict, day: str) -> tuple[dict, dict]:
    """Task states and XCom `stats` of the run for `day`, read from Airflow's DB."""
    import sqlite3

    db = sqlite3.connect(os.path.join(env["AIRFLOW_HOME"], "airflow.db"))
    run_id = db.execute("select run_id from dag_run where dag_id=? order by id desc", (DAG_ID,)).fetchone()[0]
    states = dict(db.execute("select task_id, state from task_instance where dag_id=? and run_id=?",
                             (DAG_ID, run_id)).fetchall())
    stats = {}
    for task_id, value in db.execute("select task_id, value from xcom where dag_id=? and run_id=? and key='stats'",
                                     (DAG_ID, run_id)).fetchall():
        stats[task_id] = json.loads(value)
    return states, stats


def test_airflow_dags_test_runs_phases_on_ray_incrementally(airflow_env, ray_head, tmp_path):
    from lmrefinery.samples.generate import write_samples

    samples, runs = tmp_path / "samples", tmp_path / "runs"
    write_samples(str(samples), seed=0, docs=60)
    conf = {"env_vars": {"LMR_SAMPLES": str(samples), "LMR_RUNS": str(runs)}}

    # day 1: every object is new; curate then tokenize run as two Ray jobs
    r = _dags_test(airflow_env, "2026-03-01", conf)
    states, stats = _run_state(airflow_env, "2026-03-01")
    assert states == {"curate": "success", "tokenize": "success", "instruct": "skipped", "pretrain": "skipped",
                      "sft": "skipped"}, _errors(r)
    day1 = str(runs / "daily" / "2026-03-01")
    assert stats["curate"]["output"] == stats["tokenize"]["output"] == day1
    assert stats["curate"]["ray_job"] != stats["tokenize"]["ray_job"]
    read1 = stats["curate"]["stages"][0]
    assert read1["stage"] == "read" and read1["in"] > 0 and stats["curate"]["new_inputs_recorded"] >= 1
    tok = {s["stage"]: s for s in stats["tokenize"]["stages"]}
    assert all(tok[s]["skipped"] for s in ("read", "clean", "length_filter", "exact_dedup"))
    assert not tok["tokenize"]["skipped"] and tok["tokenize"]["in"] == tok["exact_dedup"]["kept"]
    assert os.path.exists(os.path.join(day1, "stages", "04-tokenize", "_manifest.json"))
    ledger = json.load(open(runs / "daily" / "_ledger" / "inputs.json"))["objects"]
    assert len(ledger) == stats["curate"]["new_inputs_recorded"]

    # day 2: one new shard arrives; only it is read
    extra = tmp_path / "extra"
    write_samples(str(extra), seed=7, docs=40)
    src = sorted((extra / "web").glob("extracted-*.jsonl"))[0]
    new = samples / "web" / "extracted-new-00000.jsonl"
    shutil.copy(src, new)
    new_rows = sum(1 for line in open(new) if line.strip())
    _dags_test(airflow_env, "2026-03-02", conf)
    states, stats = _run_state(airflow_env, "2026-03-02")
    assert states["curate"] == states["tokenize"] == "success", states
    assert stats["curate"]["output"].endswith("2026-03-02")
    assert stats["curate"]["new_inputs_recorded"] == 1
    assert stats["curate"]["stages"][0]["in"] == new_rows < read1["in"] + new_rows
    assert {s["stage"]: s["in"] for s in stats["tokenize"]["stages"]}["read"] == new_rows

    # day 3: nothing new; curate says so and tokenize is skipped
    _dags_test(airflow_env, "2026-03-03", conf)
    states, stats = _run_state(airflow_env, "2026-03-03")
    assert states["curate"] == "success" and states["tokenize"] == "skipped", states
    assert stats["curate"]["nothing_new"] is True and stats["tokenize"]["nothing_new"] is True


def test_airflow_retry_reattaches_to_the_earlier_tries_job(airflow_env, ray_head):
    """A retried task waits for (and reuses) the earlier try's job when that is
    still running, and submits a new job only when the earlier one failed."""
    out = _af_python(airflow_env, """
import importlib.util, json, os
spec = importlib.util.spec_from_file_location("lmr_dag", "deploy/airflow/lmrefinery_dag.py")
dag = importlib.util.module_from_spec(spec); spec.loader.exec_module(dag)
client = dag._client(os.environ["LMR_RAY_ADDRESS"])
cfg = {"poll_s": 0.5, "job_timeout_s": 120}
# try 1 is still running when try 2 starts
client.submit_job(entrypoint="sleep 4 && echo 'LMR_RESULT {\\"v\\": 1}'", submission_id="ra-t1")
got = dag.submit_or_reattach(client, "ra", 2, cfg, entrypoint="echo 'LMR_RESULT {\\"v\\": 2}'")
res = dag.parse_tagged(client.get_job_logs(got[0]), "LMR_RESULT")
# try 1 failed: try 2 submits its own job
client.submit_job(entrypoint="echo 'LMR_FAILED {\\"error\\": \\"boom\\"}' && exit 3", submission_id="rb-t1")
dag._wait(client, "rb-t1", cfg)
got_b = dag.submit_or_reattach(client, "rb", 2, cfg, entrypoint="echo 'LMR_RESULT {\\"v\\": 2}'")
ids = sorted(j.submission_id for j in client.list_jobs() if j.submission_id.startswith(("ra-", "rb-")))
print(json.dumps({"a": got, "a_result": res, "b": got_b, "ids": ids,
                  "b1_failed": dag.parse_tagged(client.get_job_logs("rb-t1"), "LMR_FAILED")}))
""")
    info = json.loads(out.strip().splitlines()[-1])
    assert info["a"] == ["ra-t1", "SUCCEEDED"] and info["a_result"] == {"v": 1}
    assert info["b"] == ["rb-t2", "SUCCEEDED"] and info["b1_failed"] == {"error": "boom"}
    assert info["ids"] == ["ra-t1", "rb-t1", "rb-t2"]   # no second job for the run that was still going
