"""Airflow DAG: the lmrefinery phases as separate tasks, each a Ray job.

    curate -> tokenize -> pretrain -> sft
    instruct ------------------------^

Each task submits `python jobs/<phase script>.py ...` to a Ray cluster through Ray's
Jobs SDK (uploading the checkout as the job's working dir), waits for it, fails
with the job's error if the job fails, and pushes the job's result (outputs,
report, per-stage counts; the `LMR_RESULT` line of its log) to XCom as
``stats`` (and as the return value).

Retries are safe: every stage commits its output atomically and is skipped when
already committed, and a retry first re-attaches to the job of an earlier try
of the same run if that one is still running or has succeeded.

Incremental runs (``incremental: true``): the run for date D writes to
``<recipe output>/D``; its curate phase reads only input objects the input
ledger has not recorded (``--new-only``); later phases read exactly the objects
that curate read (``--reuse-inputs``); when nothing is new the downstream
tasks are skipped.

Settings: deploy/airflow/pipeline.yaml (or $LMR_DAG_CONFIG); a run's conf may
override them. Needs `ray` (the client; no cluster) and `pyyaml` next to Airflow.
"""
from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime, timedelta

import yaml

try:  # Airflow 3
    from airflow.sdk import DAG, get_current_context, task
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.decorators import task
    from airflow.operators.python import get_current_context
try:
    from airflow.sdk.exceptions import AirflowException, AirflowSkipException
except ImportError:
    from airflow.exceptions import AirflowException, AirflowSkipException

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG_PATH = os.environ.get("LMR_DAG_CONFIG", os.path.join(HERE, "pipeline.yaml"))
RECIPE_PHASES = ("curate", "tokenize")   # take RECIPE --set ... --partition ...
# the job script of each phase (jobs/tokenize.py would shadow the standard library)
SCRIPTS = {"curate": "jobs/curate.py", "tokenize": "jobs/tokenize_phase.py", "instruct": "jobs/instruct.py",
           "pretrain": "jobs/pretrain.py", "sft": "jobs/sft.py"}
UPSTREAM = {"curate": [], "instruct": [], "tokenize": ["curate"], "pretrain": ["tokenize"],
            "sft": ["pretrain", "instruct"]}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def load_config(path: str = CONFIG_PATH) -> dict:
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    base = os.path.dirname(os.path.abspath(path))
    cfg["repo_dir"] = os.path.normpath(os.path.join(base, cfg.get("repo_dir", "../..")))
    return cfg


def effective_config(run_conf: dict | None) -> dict:
    """The file's settings with a run's conf on top (phases merged by name)."""
    cfg = load_config()
    for k, v in (run_conf or {}).items():
        if k == "phases":
            cfg["phases"] = {**cfg.get("phases", {}), **v}
        else:
            cfg[k] = v
    cfg["ray_address"] = os.environ.get("LMR_RAY_ADDRESS") or cfg.get("ray_address") \
        or os.environ.get("RAY_ADDRESS")
    return cfg


def parse_tagged(log: str, tag: str) -> dict | None:
    """The last ``TAG {json}`` line of a job log (the protocol lmrefinery/jobs/protocol.py writes).
    Repeated here on purpose: the DAG file must import nothing but Airflow and Ray's job
    client, so the Airflow workers need no lmrefinery install."""
    found = None
    for line in log.splitlines():
        i = line.find(tag + " ")
        if i >= 0:
            try:
                found = json.loads(line[i + len(tag) + 1:])
            except json.JSONDecodeError:
                continue
    return found


def fallback_result(log: str) -> dict:
    """For entrypoints that print only `output:` / `report:` lines."""
    out = {}
    for line in log.splitlines():
        m = re.match(r"^(output|report|stats): (\S+)\s*$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def entrypoint(phase: str, spec: dict, cfg: dict, partition: str) -> str:
    import shlex

    if phase in RECIPE_PHASES:
        args = [spec["recipe"]]
        for ov in spec.get("set", []) or []:
            args += ["--set", ov]
        if cfg.get("incremental"):
            args += ["--partition", partition, "--new-only" if phase == "curate" else "--reuse-inputs"]
        args.append("--quiet")
    else:
        args = list(spec.get("args", []))
    return " ".join(shlex.quote(a) for a in ["python", SCRIPTS[phase], *args])


def runtime_env(cfg: dict) -> dict:
    """deploy/ray/runtime_env.yaml with its local paths made absolute (the Jobs
    SDK uploads them from where the Airflow worker runs)."""
    repo = cfg["repo_dir"]
    with open(os.path.join(repo, cfg.get("runtime_env", "deploy/ray/runtime_env.yaml")), encoding="utf-8") as f:
        rt = yaml.safe_load(f) or {}
    if rt.get("working_dir") and "://" not in rt["working_dir"]:
        rt["working_dir"] = os.path.normpath(os.path.join(repo, rt["working_dir"]))
    if rt.get("py_modules"):
        rt["py_modules"] = [m if "://" in m else os.path.normpath(os.path.join(repo, m)) for m in rt["py_modules"]]
    rt["env_vars"] = {**(rt.get("env_vars") or {}), **{k: str(v) for k, v in (cfg.get("env_vars") or {}).items()}}
    return rt


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def _status(client, sub_id: str) -> str | None:
    try:
        return str(client.get_job_status(sub_id).value)
    except RuntimeError:  # no such job
        return None


def _wait(client, sub_id: str, cfg: dict) -> str:
    deadline = time.time() + float(cfg.get("job_timeout_s", 86400))
    poll = float(cfg.get("poll_s", 10))
    while True:
        st = _status(client, sub_id)
        if st in TERMINAL:
            return st
        if time.time() > deadline:
            client.stop_job(sub_id)
            raise AirflowException(f"Ray job {sub_id} still {st} after {cfg.get('job_timeout_s')} s; stopped it")
        time.sleep(poll)


def _result_of(client, sub_id: str, phase: str) -> dict:
    log = client.get_job_logs(sub_id)
    res = parse_tagged(log, "LMR_RESULT") or fallback_result(log)
    res.update(phase=phase, ray_job=sub_id)
    return res


def submit_or_reattach(client, base: str, try_no: int, cfg: dict, **submit_kw) -> tuple[str, str]:
    """Wait for the Ray job of this task try, submitting it if needed; but first
    re-attach to an earlier try's job of the same run that is still running or
    has succeeded (e.g. the worker died while waiting), so a retry never runs a
    phase twice. Returns (submission id, final status)."""
    for prev_try in range(try_no - 1, 0, -1):
        prev_id = f"{base}-t{prev_try}"
        st = _status(client, prev_id)
        if st in ("PENDING", "RUNNING"):
            st = _wait(client, prev_id, cfg)
        if st == "SUCCEEDED":
            return prev_id, st
    sub_id = f"{base}-t{try_no}"
    if _status(client, sub_id) is None:
        client.submit_job(submission_id=sub_id, **submit_kw)
    return sub_id, _wait(client, sub_id, cfg)


def run_phase(phase: str) -> dict:
    ctx = get_current_context()
    ti, dag_run = ctx["ti"], ctx["dag_run"]
    cfg = effective_config(getattr(dag_run, "conf", None))
    spec = (cfg.get("phases") or {}).get(phase)
    if not spec:
        raise AirflowSkipException(f"phase {phase} is not configured")
    for up in UPSTREAM[phase]:
        prev = ti.xcom_pull(task_ids=up, key="stats")
        if prev and prev.get("nothing_new"):
            ti.xcom_push(key="stats", value={"phase": phase, "nothing_new": True, "skipped": True})
            raise AirflowSkipException(f"{up} found no new input objects; nothing to do")
    if not cfg.get("ray_address"):
        raise AirflowException("no Ray address: set ray_address in pipeline.yaml or $LMR_RAY_ADDRESS")

    # the run's date; Airflow 3 runs triggered without a logical date use their run_after
    partition = ctx.get("ds") or (getattr(dag_run, "run_after", None) or datetime.utcnow()).strftime("%Y-%m-%d")
    client = _client(cfg["ray_address"])
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", f"lmr-{ti.dag_id}-{phase}-{dag_run.run_id}")[:180]
    try_no = int(getattr(ti, "try_number", 1) or 1)
    kw = {}
    if spec.get("num_gpus"):
        kw["entrypoint_num_gpus"] = float(spec["num_gpus"])
    if spec.get("num_cpus"):
        kw["entrypoint_num_cpus"] = float(spec["num_cpus"])
    sub_id, st = submit_or_reattach(
        client, base, try_no, cfg, entrypoint=entrypoint(phase, spec, cfg, partition), runtime_env=runtime_env(cfg),
        metadata={"airflow_dag": ti.dag_id, "phase": phase, "airflow_run": dag_run.run_id}, **kw)
    if st != "SUCCEEDED":
        log = client.get_job_logs(sub_id)
        failed = parse_tagged(log, "LMR_FAILED") or {}
        info = client.get_job_info(sub_id)
        err = failed.get("error") or info.message or "see the job log"
        ti.xcom_push(key="stats", value={"phase": phase, "ray_job": sub_id, "status": st, "error": err})
        raise AirflowException(f"Ray job {sub_id} {st}: {err}\n--- last lines of the job log ---\n"
                               + "\n".join(log.splitlines()[-40:]))
    result = _result_of(client, sub_id, phase)
    ti.xcom_push(key="stats", value=result)
    return result


def build_dag(cfg: dict) -> DAG:
    with DAG(
        dag_id=cfg.get("dag_id", "lmrefinery_daily"),
        schedule=cfg.get("schedule", "@daily"),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,   # incremental runs must see the ledger of the run before them
        default_args={"retries": int(cfg.get("retries", 2)),
                      "retry_delay": timedelta(seconds=float(cfg.get("retry_delay_s", 300)))},
        tags=["lmrefinery"],
        doc_md=__doc__,
    ) as dag:
        tasks = {}
        for phase in ("curate", "instruct", "tokenize", "pretrain", "sft"):
            # none_failed: a phase that is not configured (skipped) does not stop the ones after it
            tasks[phase] = task(task_id=phase, trigger_rule="none_failed", multiple_outputs=False)(run_phase)(phase)
        for phase, ups in UPSTREAM.items():
            for up in ups:
                tasks[up] >> tasks[phase]
    return dag


dag = build_dag(load_config())
