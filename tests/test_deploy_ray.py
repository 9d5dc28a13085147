"""The cluster paths for real: a Ray head started with `ray start --head` (its
own ports, temp dir and auth token, so it never meets the session's `ray.init`
instance), jobs submitted with `ray job submit --working-dir .`, and the
Airflow DAG run with `airflow dags test` against the same head."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil
import pyarrow.parquet as pq
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
RAY = os.path.join(BIN, "ray")

sys.path.insert(0, ROOT)
from jobs._common import parse_tagged  # noqa: E402


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class RayHead:
    """A Ray head node in its own process session, stopped by killing exactly
    the processes of that session (``ray stop`` would stop every Ray on the box)."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="lmrd-", dir="/tmp")  # short: unix socket paths
        gcs, dash, client, nm, om, agent_http, agent_grpc, rt_agent, metrics = _free_ports(9)
        self.gcs_port, self.dash_port = gcs, dash
        self.address = f"http://127.0.0.1:{dash}"
        self.token = secrets.token_hex(32)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "AWS_ENDPOINT_URL"}
        # `python` in a job's entrypoint is the head's Python (this venv), as on a cluster image
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0",
                   PATH=BIN + os.pathsep + env.get("PATH", ""))
        self.env = env
        self.proc = subprocess.Popen(
            [RAY, "start", "--head", "--num-cpus", "2", "--port", str(gcs),
             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--include-dashboard", "true",
             "--ray-client-server-port", str(client), "--node-manager-port", str(nm),
             "--object-manager-port", str(om), "--dashboard-agent-listen-port", str(agent_http),
             "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(rt_agent),
             "--metrics-export-port", str(metrics), "--min-worker-port", "0", "--max-worker-port", "0",
             "--temp-dir", self.tmp, "--disable-usage-stats"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.sid = self.proc.pid
        out, _ = self.proc.communicate(timeout=120)
        if self.proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start --head failed:\n{out}")

    def client_env(self, **extra) -> dict:
        env = dict(self.env)
        env.update(RAY_ADDRESS=self.address, **extra)
        return env

    def _processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if os.getsid(p.pid) == self.sid or self.tmp in " ".join(p.info["cmdline"] or []):
                    found.append(p)
            except (OSError, psutil.Error):
                continue
        return found

    def stop(self) -> None:
        procs = self._processes()
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head():
    head = RayHead()
    try:
        yield head
    finally:
        head.stop()
        assert not head._processes(), "Ray head processes survived the stop"


def _runtime_env(tmp_path, **env_vars) -> str:
    """deploy/ray/runtime_env.yaml as shipped, plus where this test's data lives."""
    with open(os.path.join(ROOT, "deploy", "ray", "runtime_env.yaml")) as f:
        rt = yaml.safe_load(f)
    rt.setdefault("env_vars", {}).update(env_vars)
    p = tmp_path / "runtime_env.yaml"
    p.write_text(yaml.safe_dump(rt))
    return str(p)


def _submit(head: RayHead, sub_id: str, runtime_env: str, *entrypoint: str) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, "job", "submit", "--address", head.address, "--submission-id", sub_id,
                           "--working-dir", ".", "--runtime-env", runtime_env, "--", *entrypoint],
                          cwd=ROOT, env=head.client_env(), capture_output=True, text=True, timeout=300)


def _job_cli(head: RayHead, *args: str) -> str:
    r = subprocess.run([RAY, "job", *args, "--address", head.address, "--log-style", "record",
                        "--log-color", "false"], cwd=ROOT, env=head.client_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def _local_run(samples: str, runs) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(LMR_SAMPLES=samples, LMR_RUNS=str(runs))
    r = subprocess.run([sys.executable, "jobs/run_recipe.py", "conf/pipelines/mini.yaml", "--engine", "local",
                        "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return parse_tagged(r.stdout)["output"]


def _part_hashes(out: str) -> dict:
    hashes = {}
    for stage in sorted(os.listdir(os.path.join(out, "stages"))):
        m = json.load(open(os.path.join(out, "stages", stage, "_manifest.json")))
        hashes[stage] = [o["sha256"] for o in m["outputs"]]
    return hashes


def test_ray_job_submit_runs_the_mini_recipe(ray_head, samples_dir, tmp_path):
    runs = tmp_path / "runs"
    rt = _runtime_env(tmp_path, LMR_SAMPLES=samples_dir, LMR_RUNS=str(runs))
    r = _submit(ray_head, "lmr-curate-ok", rt, "python", "jobs/curate.py", "conf/pipelines/mini.yaml",
                "--set", "resources.workers=2", "--quiet")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "Job 'lmr-curate-ok' succeeded" in _job_cli(ray_head, "status", "lmr-curate-ok")

    logs = _job_cli(ray_head, "logs", "lmr-curate-ok")
    result = parse_tagged(logs)
    assert result is not None, logs[-3000:]
    out = str(runs / "mini")
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
    assert _part_hashes(out) == _part_hashes(local)

    # resubmitting is safe: every stage is already committed and skipped
    r = _submit(ray_head, "lmr-curate-again", rt, "python", "jobs/run_recipe.py", "conf/pipelines/mini.yaml",
                "--quiet")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    again = parse_tagged(_job_cli(ray_head, "logs", "lmr-curate-again"))
    assert again["did_work"] is False and all(s["skipped"] for s in again["stages"])


def test_failed_ray_job_reports_status_and_error(ray_head, samples_dir, tmp_path):
    rt = _runtime_env(tmp_path, LMR_SAMPLES=samples_dir, LMR_RUNS=str(tmp_path / "runs"))
    r = _submit(ray_head, "lmr-curate-bad", rt, "python", "jobs/curate.py", "conf/pipelines/mini.yaml",
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
