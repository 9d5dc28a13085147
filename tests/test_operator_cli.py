"""Operator-facing CLI behaviour: errors at load (exit 2, naming the key or
path, before any stage runs), --force, --version, a no-op re-run."""
import json
import os
import subprocess
import sys

import pytest


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lmrefinery.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def _recipe(tmp_path, stages=None, fmt="jsonl", output=None, extra=""):
    inp = tmp_path / "x.jsonl"
    inp.write_text("\n".join(json.dumps({"text": t}) for t in
                             ["short", "a much longer text " * 5, "a much longer text " * 5]) + "\n")
    out = output or str(tmp_path / "out")
    stages = stages or ["read", "clean", "length_filter", "exact_dedup"]
    body = "\n".join(f"  - {s}" for s in stages)
    r = tmp_path / "r.yaml"
    r.write_text(f"name: t\noutput: {out}\nengine: local\nreport: false\n"
                 f"inputs:\n  - name: a\n    format: {fmt}\n    paths: [{inp}]\n{extra}stages:\n{body}\n")
    return r, tmp_path / "out"


def _assert_load_error(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    for n in needles:
        assert n in p.stderr, (n, p.stderr)


def test_version():
    p = cli("--version")
    assert p.returncode == 0 and p.stdout.startswith("lmrefinery 0.")


def test_stage_typo_in_stages_fails_before_work_on_fresh_output(tmp_path):
    r, out = _recipe(tmp_path)
    p = cli("run", str(r), "--stages", "cleen")
    _assert_load_error(p, "--stages cleen", "did you mean 'clean'?")
    assert not out.exists()  # nothing ran


def test_stage_typo_on_finished_output_is_an_error_not_nothing_to_do(tmp_path):
    r, out = _recipe(tmp_path)
    assert cli("run", str(r), "--quiet").returncode == 0
    p = cli("run", str(r), "--stages", "cleen")
    _assert_load_error(p, "did you mean 'clean'?")
    assert "Nothing to do" not in p.stdout
    p = cli("run", str(r), "--force", "lenght_filter")
    _assert_load_error(p, "--force lenght_filter", "did you mean 'length_filter'?")


def test_unknown_format_fails_at_load_naming_the_key(tmp_path):
    r, out = _recipe(tmp_path, fmt="jsnol")
    p = cli("run", str(r))
    _assert_load_error(p, str(r), "inputs[0].format", "'jsnol'", "did you mean 'jsonl'?")
    assert not out.exists()


@pytest.mark.parametrize("tok,needle", [
    ("/missing/tokenizer", "/missing/tokenizer: no such file or folder"),
    ("gpt2", "Hub ids are not supported offline"),
    ("meta-llama/Llama-3.2-1B", "pass a local folder"),
])
def test_tokenizer_path_is_checked_before_any_stage(tmp_path, tok, needle):
    r, out = _recipe(tmp_path, stages=["read", "clean", f"{{stage: tokenize, tokenizer: '{tok}'}}"])
    p = cli("run", str(r))
    _assert_load_error(p, "stages[2].tokenizer", needle)
    assert not out.exists()


def test_output_under_a_file_is_refused_at_load(tmp_path):
    (tmp_path / "afile").write_text("x")
    r, _ = _recipe(tmp_path, output=str(tmp_path / "afile" / "out"))
    p = cli("run", str(r))
    _assert_load_error(p, "key 'output'", str(tmp_path / "afile"), "not a folder")


def test_s3_output_without_credentials_is_refused_at_load(tmp_path):
    r, _ = _recipe(tmp_path, output="s3://some-bucket/run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")
    p = cli("run", str(r), env=env)
    _assert_load_error(p, "s3://some-bucket/run", "no AWS credentials")


def test_stage_command_typo_names_the_command_not_a_recipe(tmp_path):
    inp = tmp_path / "x.jsonl"
    inp.write_text(json.dumps({"text": "hello"}) + "\n")
    p = cli("stage", "claen", "--input", str(inp), "--output", str(tmp_path / "o"))
    _assert_load_error(p, "lmrefinery stage claen", "did you mean 'clean'?")
    assert "<recipe>" not in p.stderr
    p = cli("stage", "clean", "--input", str(inp), "--output", str(tmp_path / "o"), "--format", "jsnol")
    _assert_load_error(p, "--format jsnol", "did you mean 'jsonl'?")


def test_force_reruns_a_committed_stage_and_everything_after_it(tmp_path):
    r, out = _recipe(tmp_path)
    assert cli("run", str(r), "--quiet").returncode == 0
    p = cli("run", str(r), "--stages", "exact_dedup")
    assert p.returncode == 0 and "--force exact_dedup re-runs it" in p.stderr
    p = cli("run", str(r), "--force", "length_filter", "--quiet")
    assert p.returncode == 0, p.stderr
    stats = json.loads((out / "stats.json").read_text())
    skipped = {s["stage"]: s["skipped"] for s in stats["stages"]}
    assert skipped == {"read": True, "clean": True, "length_filter": False, "exact_dedup": False}
    assert stats["stages"][3]["rejected"] == {"exact_duplicate": 1}


def test_noop_rerun_keeps_the_last_real_timings_and_appends_history(tmp_path):
    r, out = _recipe(tmp_path)
    assert cli("run", str(r), "--quiet").returncode == 0
    first = json.loads((out / "stats.json").read_text())
    assert [h["did_work"] for h in first["history"]] == [True]
    p = cli("run", str(r), "--quiet")
    assert p.returncode == 0 and "Nothing to do" in p.stdout
    again = json.loads((out / "stats.json").read_text())
    assert again["wall_seconds"] == first["wall_seconds"]
    assert [s["seconds"] for s in again["stages"]] == [s["seconds"] for s in first["stages"]]
    assert not any(s["skipped"] for s in again["stages"])
    assert [h["did_work"] for h in again["history"]] == [True, False]
    assert again["history"][1]["stages_run"] == [] and again["last_run_did_work"] is False


def test_progress_log_mode_has_rounds_as_steps_and_no_zero_doc_lines(tmp_path):
    r, out = _recipe(tmp_path)
    env = dict(os.environ, LMR_PROGRESS="log")
    p = cli("run", str(r), env=env)
    assert p.returncode == 0, p.stderr
    err = p.stderr
    assert "[local] engine started in" in err
    assert "[03 exact_dedup] step hash:" in err and "[03 exact_dedup] done: 2 docs in" in err
    assert "[00 read] done: 3 docs in" in err and "MB read" in err
    assert " 0 docs" not in err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["engine_startup_seconds"] is not None
    quiet = cli("run", str(r), "--force", "read", "--quiet", env=env)
    assert quiet.returncode == 0 and quiet.stderr.strip() == "", quiet.stderr
    bars = cli("run", str(r), "--force", "read", env=dict(os.environ, LMR_PROGRESS="bar"))
    assert bars.returncode == 0
    assert "00 read: 100%|" in bars.stderr and "03 exact_dedup > hash:" in bars.stderr
    assert "03 exact_dedup: 100%|" in bars.stderr and " 0 docs" not in bars.stderr


def test_every_option_has_help_text():
    """Every option of every sub-command, as `lmrefinery ... --help` shows it."""
    import argparse

    from lmrefinery.cli import build_parser

    missing = []

    def walk(p, name):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for n, sp in a.choices.items():
                    walk(sp, f"{name} {n}")
            elif not a.help and a.dest != "help":
                missing.append(f"{name} {'/'.join(a.option_strings) or a.dest}")

    walk(build_parser(), "lmrefinery")
    assert missing == []
