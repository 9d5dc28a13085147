"""jobs/ and `lmrefinery job`: phase selection and the exit-code/result convention,
in-process and as scripts."""
from __future__ import annotations

import os
import subprocess
import sys

import yaml

from lmrefinery.jobs import phases, protocol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_phases_cut_a_recipe_and_keep_its_fingerprint(samples_dir, monkeypatch):
    monkeypatch.setenv("LMR_SAMPLES", samples_dir)
    from lmrefinery.core.recipe import load_recipe

    r = load_recipe(os.path.join(ROOT, "deploy", "airflow", "daily.yaml"))
    cur = phases.select_phase(r, "curate")
    tok = phases.select_phase(r, "tokenize")
    assert [s.stage for s in cur.stages] == ["read", "clean", "length_filter", "exact_dedup"]
    assert [s.stage for s in tok.stages] == [s.stage for s in r.stages]
    assert cur.fingerprint() == tok.fingerprint() == r.fingerprint()
    try:
        phases.select_phase(r, "instruct")
    except protocol.PhaseError as e:
        assert "no instruct stages" in str(e) and "tokenize(tokenize)" in str(e)
    else:
        raise AssertionError("a recipe without instruct stages was accepted for the instruct phase")


def test_entrypoint_exit_codes_and_tagged_lines(samples_dir, tmp_path):
    recipe = tmp_path / "read-only.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "r", "output": str(tmp_path / "out"), "engine": "local", "report": False,
        "inputs": [{"name": "web", "paths": [f"{samples_dir}/web/extracted-*.jsonl"],
                    "fields": {"text": "text", "url": "url"}}],
        "stages": [{"stage": "read"}, {"stage": "clean"}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}

    def run(*args):
        return subprocess.run([sys.executable, *args], cwd=str(tmp_path), env=env, capture_output=True,
                              text=True, timeout=120)

    # jobs/tokenize_phase.py runs and says the recipe has nothing for it: exit 2 with LMR_FAILED
    r = run(os.path.join(ROOT, "jobs", "tokenize_phase.py"), str(recipe))
    assert r.returncode == 2, r.stderr[-2000:]
    failed = protocol.parse_tagged(r.stdout, protocol.FAILED_TAG)
    assert failed["phase"] == "tokenize" and "no tokenize stages" in failed["error"]
    # a bad override is a recipe error: exit 2
    r = run(os.path.join(ROOT, "jobs", "run_recipe.py"), str(recipe), "--set", "stages.clean.nope=1")
    assert r.returncode == 2 and "nope" in protocol.parse_tagged(r.stdout, protocol.FAILED_TAG)["error"]
    # success: exit 0, human lines and LMR_RESULT, and the stats file it names exists
    r = run(os.path.join(ROOT, "jobs", "curate.py"), str(recipe), "--quiet",
            "--stats-out", str(tmp_path / "stats-copy.json"))
    assert r.returncode == 0, r.stderr[-2000:]
    res = protocol.parse_tagged(r.stdout)
    assert f"output: {tmp_path / 'out'}" in r.stdout and res["phase"] == "curate"
    assert [s["stage"] for s in res["stages"]] == ["read", "clean"] and res["stages"][0]["in"] > 0
    assert os.path.exists(res["stats"]) and os.path.exists(tmp_path / "stats-copy.json")
    assert protocol.parse_tagged(r.stdout, protocol.FAILED_TAG) is None
