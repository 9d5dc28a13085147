"""Ray nodes started the way operators start them (`ray start`), each in its
own process session with its own ports and temp dir, and stopped by killing
exactly its own processes (`ray stop` would stop every Ray on the machine)."""
from __future__ import annotations

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
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
RAY = os.path.join(BIN, "ray")


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class RayNode:
    """One `ray start` node: the head (``head=None``) or a node joining it."""

    def __init__(self, head: RayNode | None = None, num_cpus: int = 2, resources: str | None = None,
                 env_extra: dict | None = None):
        self.tmp = tempfile.mkdtemp(prefix="lmrn-", dir="/tmp")  # short: unix socket paths
        self.head = head
        nm, om, agent_http, agent_grpc, rt_agent, metrics, gcs, dash, client = free_ports(9)
        if head is None:
            self.token = secrets.token_hex(32)
            self.gcs_port, self.dash_port = gcs, dash
            self.address = f"http://127.0.0.1:{dash}"
            self.gcs_address = f"127.0.0.1:{gcs}"
        else:
            self.token, self.address, self.gcs_address = head.token, head.address, head.gcs_address
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.pop("AWS_ENDPOINT_URL", None)
        # `python` in a job's entrypoint is the node's Python (this venv), as on a cluster image
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0",
                   PATH=BIN + os.pathsep + env.get("PATH", ""), **(env_extra or {}))
        self.env = env
        common = ["--num-cpus", str(num_cpus), "--node-manager-port", str(nm), "--object-manager-port", str(om),
                  "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
                  "--runtime-env-agent-port", str(rt_agent), "--metrics-export-port", str(metrics),
                  "--min-worker-port", "0", "--max-worker-port", "0", "--temp-dir", self.tmp,
                  "--disable-usage-stats"]
        if resources:
            common += ["--resources", resources]
        if head is None:
            cmd = [RAY, "start", "--head", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
                   "--dashboard-port", str(dash), "--include-dashboard", "true",
                   "--ray-client-server-port", str(client)] + common
        else:
            cmd = [RAY, "start", "--address", head.gcs_address] + common
        # Ray waits a fixed 30 s for a new node to register; on a loaded machine that can
        # pass, so a node that timed out is cleared away and started again (bounded).
        for attempt in range(3):
            self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True, start_new_session=True)
            self.sid = self.proc.pid
            out, _ = self.proc.communicate(timeout=180)
            if self.proc.returncode == 0:
                return
            self.kill()
            if attempt == 2 or "timed out during startup" not in out:
                self.stop()
                raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{out}")

    def client_env(self, **extra) -> dict:
        env = dict(self.env)
        env.update(RAY_ADDRESS=self.address, **extra)
        return env

    def driver_env(self, **extra) -> dict:
        """For a driver that connects directly (``ray.init(address=GCS)``)."""
        env = dict(self.env)
        env.update(RAY_ADDRESS=self.gcs_address, **extra)
        return env

    def processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if os.getsid(p.pid) == self.sid or self.tmp in " ".join(p.info["cmdline"] or []):
                    found.append(p)
            except (OSError, psutil.Error):
                continue
        return found

    def kill(self) -> int:
        """SIGKILL every process of this node at once (a node lost to a crash); returns how many."""
        procs = self.processes()
        _signal_all(procs, signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        return len(procs)

    def stop(self) -> None:
        procs = self.processes()
        _signal_all(procs, signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=5)
        _signal_all(alive, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.Error:
            pass


def wait_for_nodes(head: RayNode, n: int, timeout: float = 60) -> None:
    """Until the cluster reports ``n`` alive nodes (checked through the CLI)."""
    deadline = time.time() + timeout
    out = ""
    while time.time() < deadline:
        r = subprocess.run([RAY, "list", "nodes", "--address", head.address, "--format", "json"],
                           env=head.client_env(), capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        if r.returncode == 0 and out.count('"state": "ALIVE"') >= n:
            return
        time.sleep(1)
    raise RuntimeError(f"cluster did not reach {n} alive nodes:\n{out[-2000:]}")


def runtime_env_file(tmp_path, **env_vars) -> str:
    """deploy/ray/runtime_env.yaml as shipped, plus where a test's data lives."""
    with open(os.path.join(ROOT, "deploy", "ray", "runtime_env.yaml")) as f:
        rt = yaml.safe_load(f)
    rt.setdefault("env_vars", {}).update(env_vars)
    p = tmp_path / "runtime_env.yaml"
    p.write_text(yaml.safe_dump(rt))
    return str(p)
