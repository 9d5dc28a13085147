"""Launching a run: what it finds (or does not find) on the machine must not
change what it does. Errors come before any stage, name the path, exit 2."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LMR = os.path.join(os.path.dirname(sys.executable), "lmrefinery")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(extra)
    return env


def _recipe(tmp_path, samples_dir, engine: str, **stage_params) -> str:
    r = {"name": "launch", "output": str(tmp_path / "out"), "engine": engine,
         "inputs": [{"name": "web_text", "format": "jsonl",
                     "paths": [os.path.join(samples_dir, "web", "extracted-*.jsonl")]}],
         "stages": [{"stage": "read"}, {"stage": "clean"}, {"stage": "quality", **stage_params}]}
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(r))
    return str(p)


def test_stale_ray_cluster_file_does_not_capture_a_local_run(samples_dir, tmp_path):
    """`/tmp/ray/ray_current_cluster` left by a stopped head made every run fail with
    "Failed to connect to Ray cluster"; without an address a run starts its own Ray."""
    ray_tmp = tempfile.mkdtemp(prefix="lr", dir="/tmp")  # short: Ray's unix socket paths
    try:
        os.makedirs(os.path.join(ray_tmp, "ray"))
        with open(os.path.join(ray_tmp, "ray", "ray_current_cluster"), "w") as f:
            f.write("127.0.0.1:1\n")  # nothing listens there
        r = subprocess.run([LMR, "run", _recipe(tmp_path, samples_dir, "ray"), "--quiet"], cwd=str(tmp_path),
                           env=_env(RAY_TMPDIR=ray_tmp), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        assert os.path.exists(tmp_path / "out" / "stages" / "02-quality" / "_manifest.json")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_recipe_path_the_job_does_not_have_is_exit_2_naming_it(tmp_path):
    r = subprocess.run([LMR, "run", "conf/pipelines/nope.yaml"], cwd=str(tmp_path), env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "conf/pipelines/nope.yaml: recipe file not found" in r.stderr
    assert str(tmp_path) in r.stderr  # says where it looked
    assert "Traceback" not in r.stderr


def test_quality_conf_dir_that_does_not_exist_is_exit_2_before_any_stage(samples_dir, tmp_path):
    recipe = _recipe(tmp_path, samples_dir, "local", conf_dir=str(tmp_path / "no-such-rules"))
    r = subprocess.run([LMR, "run", recipe], cwd=str(tmp_path), env=_env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr
    assert "stages[2]" in r.stderr and "no-such-rules does not exist" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "out" / "stages")


def test_quality_rules_env_folder_that_does_not_exist_is_exit_2(samples_dir, tmp_path):
    recipe = _recipe(tmp_path, samples_dir, "local")
    r = subprocess.run([LMR, "run", recipe], cwd=str(tmp_path), env=_env(LMR_QUALITY_CONF=str(tmp_path / "gone")),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "$LMR_QUALITY_CONF" in r.stderr and "gone does not exist" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "out" / "stages")


def test_ray_train_workers_are_given_the_drivers_cluster_address(ray_cluster, tmp_path):
    """Ray Train workers must join the driver's cluster, not guess among several
    on the machine ("multiple active Ray instances")."""
    from lmrefinery.train.config import TrainRecipe
    from lmrefinery.train.trainer import build_trainer

    recipe = TrainRecipe(name="addr", kind="pretrain", output=str(tmp_path / "train"), tokenizer=str(tmp_path),
                         data={"train": str(tmp_path)}, trainer={"workers": 1, "max_steps": 1})
    trainer = build_trainer(recipe)
    env = trainer.run_config.worker_runtime_env["env_vars"]
    assert env["RAY_ADDRESS"] == ray_cluster.get_runtime_context().gcs_address
