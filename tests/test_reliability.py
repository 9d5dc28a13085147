"""Issue 19: never wrong, never leaking — scratch owned by a fingerprint, run locks,
early named errors, no secrets in anything a run writes."""
from __future__ import annotations

import os

import pytest

from lmrefinery.core import storage
from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.runner import Runner, prepare_stage_dir, work_dir
from lmrefinery.dedup.drops import PartOut
from lmrefinery.dedup.near import IndexRef, apply, files
from lmrefinery.dedup.near import stage as near_stage


def _recipe(out: str, samples_dir: str, threshold: float) -> dict:
    return {"name": "t", "output": out, "engine": "local", "resources": {"workers": 2}, "report": False,
            "inputs": [{"name": "web", "format": "jsonl",
                        "paths": [os.path.join(samples_dir, "web", "extracted-*.jsonl")],
                        "fields": {"text": "text", "url": "url", "title": "title"}}],
            "stages": [{"stage": "read"}, {"stage": "dedup", "buckets": 3, "threshold": threshold}]}


def _kept_and_rejected(stats: dict) -> tuple[int, dict]:
    row = next(s for s in stats["stages"] if s["stage"] == "dedup")
    return row["kept"], row["rejected"]


def test_crash_then_changed_recipe_never_reads_the_old_scratch(samples_dir, tmp_path, monkeypatch):
    clean = Runner(load_recipe(_recipe(str(tmp_path / "clean"), samples_dir, 0.95)), quiet=True).run()
    out = str(tmp_path / "crashed")

    def crash(t):
        raise KeyboardInterrupt("killed in the apply round")

    monkeypatch.setattr(near_stage, "drop_rows", crash)
    with pytest.raises(KeyboardInterrupt):
        Runner(load_recipe(_recipe(out, samples_dir, 0.5)), quiet=True).run()
    sdir = os.path.join(out, "stages", "01-dedup")
    assert storage.list_files(os.path.join(sdir, "_work"))  # the crash left scratch behind
    monkeypatch.undo()
    again = Runner(load_recipe(_recipe(out, samples_dir, 0.95)), quiet=True).run()
    assert _kept_and_rejected(again) == _kept_and_rejected(clean)
    fp = next(s for s in again["stages"] if s["stage"] == "dedup")["fingerprint"]
    assert {os.path.relpath(f, sdir).split(os.sep)[1] for f in storage.list_files(os.path.join(sdir, "_work"))} \
        <= {fp}


def test_prepare_stage_dir_keeps_same_fingerprint_scratch_and_drops_foreign(tmp_path):
    sdir = str(tmp_path / "03-x")
    prepare_stage_dir(sdir, "aaa")
    mine = storage.join(work_dir(sdir, "aaa"), "keys", "b0000.parquet")
    storage.write_bytes(mine, b"progress")
    storage.write_bytes(mine + ".tmp-deadbeef", b"half")
    prepare_stage_dir(sdir, "aaa")  # resume of the same recipe: progress kept, half-writes gone
    assert storage.list_files(sdir) == sorted([mine, os.path.join(sdir, "_attempt.json")])
    assert not os.path.exists(mine + ".tmp-deadbeef")
    prepare_stage_dir(sdir, "bbb")  # another recipe: nothing of "aaa" survives
    assert storage.list_files(sdir) == [os.path.join(sdir, "_attempt.json")]
    legacy = str(tmp_path / "04-y")
    storage.write_bytes(os.path.join(legacy, "_work", "keys", "b0.parquet"), b"who wrote me?")
    prepare_stage_dir(legacy, "ccc")  # no attempt marker: provenance unknown, not reused
    assert storage.list_files(legacy) == [os.path.join(legacy, "_attempt.json")]


# ------------------------------------------------------------------ run lock
from lmrefinery.core.lock import LOCK_NAME, RunLock, RunLocked  # noqa: E402


def _roots(tmp_path, s3_bucket):
    return [str(tmp_path / "out"), f"s3://{s3_bucket}/runs/r1"]


def test_second_run_on_one_output_is_refused_naming_the_holder(tmp_path, s3_bucket):
    for root in _roots(tmp_path, s3_bucket):
        with RunLock(root, "first") as first:
            with pytest.raises(RunLocked) as e:
                RunLock(root, "second").acquire()
            msg = str(e.value)
            assert first.info.run_id in msg and "first" in msg and f"pid {os.getpid()}" in msg
            assert "--break-lock" in msg
        assert not storage.exists(storage.join(root, LOCK_NAME))  # released
        with RunLock(root, "third"):  # free again
            pass


def test_stale_or_broken_lock_is_taken_over_and_the_old_holder_stops(tmp_path, s3_bucket, monkeypatch):
    for root in _roots(tmp_path, s3_bucket):
        old = RunLock(root, "slow").acquire()
        monkeypatch.setenv("LMR_LOCK_STALE_S", "0")  # its heartbeat is now too old
        new = RunLock(root, "retry").acquire()
        monkeypatch.delenv("LMR_LOCK_STALE_S")
        with pytest.raises(RunLocked, match="taken over by run .*retry"):
            old.check()  # the old holder refuses to commit
        new.check()
        forced = RunLock(root, "forced", break_lock=True).acquire()
        with pytest.raises(RunLocked):
            new.check()
        forced.release()
        assert not storage.exists(storage.join(root, LOCK_NAME))


def test_lock_of_a_dead_process_on_this_host_is_stale_at_once(tmp_path):
    import subprocess
    import sys

    root = str(tmp_path / "out")
    code = ("import os,sys; from lmrefinery.core.lock import RunLock; RunLock(sys.argv[1], 'killed').acquire(); "
            "os._exit(0)")  # exits holding the lock, as a SIGKILLed run does
    subprocess.run([sys.executable, "-c", code, root], check=True, env=dict(os.environ))
    assert storage.exists(storage.join(root, LOCK_NAME))
    with RunLock(root, "resume") as lk:
        assert lk.info.run_name == "resume"


def test_cli_run_exits_2_when_the_output_is_locked(samples_dir, tmp_path, capsys):
    import yaml

    from lmrefinery.cli import main

    out = str(tmp_path / "o")
    rec = tmp_path / "r.yaml"
    rec.write_text(yaml.safe_dump({**_recipe(out, samples_dir, 0.9), "stages": [{"stage": "read"}]}))
    with RunLock(out, "airflow-try-1") as holder:
        assert main(["run", str(rec), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "in use by run " + holder.info.run_id in err and "Traceback" not in err
        assert not os.path.exists(os.path.join(out, "stages"))  # nothing ran
    assert main(["run", str(rec), "--quiet"]) == 0


def test_a_missing_dedup_index_file_is_an_error_not_empty_data(tmp_path):
    import pyarrow as pa

    root = str(tmp_path / "index")
    tb = pa.table({"key": pa.array([1], pa.uint64()), "node": pa.array([7], pa.int64())})
    for part in range(3):
        storage.write_parquet(tb, os.path.join(root, "bands", "b0000", f"p{part:05d}.parquet"))
    ix = IndexRef(root, offset=0, n_parts=3, release=0, rel_rank=0)
    assert files.read_index_dir(ix, "bands/b0000").num_rows == 3
    os.remove(os.path.join(root, "bands", "b0000", "p00001.parquet"))  # deleted by a concurrent run
    storage.write_bytes(os.path.join(root, "bands", "b0000", "p00001.parquet.tmp-0badc0de"), b"half")
    with pytest.raises(storage.StorageError, match="b0000: dedup index has 2 of 3 part files"):
        files.read_index_dir(ix, "bands/b0000")
    storage.delete_prefix(root)
    with pytest.raises(storage.StorageError, match="0 of 3"):
        files.read_index_dir(ix, "bands/b0000")


# ------------------------------------------------------------------ file modes, checkpoints
def test_token_shards_get_the_same_mode_as_every_other_output(tmp_path):
    import stat

    import numpy as np

    from lmrefinery.tokenize.indexed import IndexedWriter

    w = IndexedWriter(str(tmp_path / "train-00000"), np.uint16)
    w.add(np.arange(10, dtype=np.uint16))
    w.close()
    storage.write_bytes(str(tmp_path / "other.json"), b"{}")
    want = stat.S_IMODE(os.stat(tmp_path / "other.json").st_mode)
    files = [p for p in tmp_path.iterdir() if p.name.startswith("train-00000")]
    assert files and {stat.S_IMODE(os.stat(p).st_mode) for p in files} == {want}


class _Payload:
    def __reduce__(self):
        return (os.mkdir, (os.environ["LMR_PWNED_DIR"],))


def test_checkpoints_load_weights_only(tmp_path, monkeypatch):
    import torch

    from lmrefinery.train.files import STATE_FILE, read_state_file

    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    good = tmp_path / "good"
    good.mkdir()
    torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, good / STATE_FILE)
    blob = read_state_file(str(good))  # a real model + AdamW state loads with weights_only
    assert torch.equal(blob["model"]["weight"], model.weight.detach())
    bad = tmp_path / "bad"
    bad.mkdir()
    monkeypatch.setenv("LMR_PWNED_DIR", str(tmp_path / "pwned"))
    torch.save({"model": _Payload()}, bad / STATE_FILE)
    with pytest.raises(RuntimeError, match="refusing to load"):
        read_state_file(str(bad))
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------ early, named errors (exit 2, nothing runs)
def _run_cli(recipe_path: str, capsys, *extra: str) -> tuple[int, str]:
    from lmrefinery.cli import main

    rc = main(["run", recipe_path, "--quiet", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_missing_output_bucket_is_named_before_any_stage(samples_dir, tmp_path, s3_server, capsys):
    import yaml

    rec = tmp_path / "r.yaml"
    rec.write_text(yaml.safe_dump({**_recipe("s3://no-such-bucket-lmr/runs/x", samples_dir, 0.9),
                                   "stages": [{"stage": "read"}, {"stage": "clean"}]}))
    rc, err = _run_cli(str(rec), capsys)
    assert rc == 2 and "bucket 'no-such-bucket-lmr' does not exist" in err


def test_recipe_errors_name_the_file_and_exit_2(samples_dir, tmp_path, capsys):
    import yaml

    good = yaml.safe_dump({**_recipe(str(tmp_path / "o"), samples_dir, 0.9), "stages": [{"stage": "read"}]})
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(("name: caf\xe9\n" + good.split("\n", 1)[1]).encode("latin-1"))
    rc, err = _run_cli(str(latin1), capsys)
    assert rc == 2 and "latin1.yaml: not UTF-8 text (byte 0xe9 at offset 9)" in err

    dup = tmp_path / "dup.yaml"
    dup.write_text(good + "seed: 1\nseed: 2\n")
    rc, err = _run_cli(str(dup), capsys)
    assert rc == 2 and "dup.yaml" in err and "duplicate key 'seed'" in err

    bad_len = tmp_path / "len.yaml"
    bad_len.write_text(good.replace("- stage: read", "- stage: read\n- stage: length_filter\n"
                                                     "  min_chars: 500\n  max_chars: 100"))
    rc, err = _run_cli(str(bad_len), capsys)
    assert rc == 2 and "len.yaml" in err and "min_chars (500) > max_chars (100)" in err
    assert not os.path.exists(tmp_path / "o")  # nothing ran


# ------------------------------------------------------------------ the OpenAI-compatible server
def test_serve_refuses_to_start_when_the_named_key_variable_is_unset(tmp_path, capsys, monkeypatch):
    from lmrefinery.cli import main

    monkeypatch.delenv("LMR_UNSET_SERVER_KEY", raising=False)
    rc = main(["instruct", "serve", str(tmp_path / "no-model"), "--port", "0", "--api-key-env", "LMR_UNSET_SERVER_KEY"])
    err = capsys.readouterr().err
    assert rc == 2 and "LMR_UNSET_SERVER_KEY: the variable is unset or empty" in err and "Traceback" not in err
    monkeypatch.setenv("LMR_UNSET_SERVER_KEY", "  ")
    assert main(["instruct", "serve", str(tmp_path / "no-model"), "--api-key-env", "LMR_UNSET_SERVER_KEY"]) == 2


@pytest.mark.parametrize("body", [b"[1, 2]", b'["messages"]', b"{not json", b"\xff\xfe{}", b'"text"', b"null",
                                  b'{"messages": "hi"}', b'{"messages": []}', b'{"messages": [1]}',
                                  b'{"messages": [{"role": "user", "content": 5}]}'])
def test_server_answers_400_json_for_any_malformed_body(body):
    import http.client
    import json
    import threading
    from http.server import ThreadingHTTPServer

    from lmrefinery.instruct.server import make_handler

    # malformed bodies are answered before the model is touched: no backend is needed
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(None, "m", {"requests": 0, "errors": 0},
                                                               threading.Lock(), "k"))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        c = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=10)
        c.request("POST", "/v1/chat/completions", body=body,
                  headers={"Authorization": "Bearer k", "Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 400
        assert "bad request" in json.loads(r.read())["error"]["message"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_lost_drop_decisions_fail_the_apply_round(tmp_path):
    import pyarrow as pa

    work = str(tmp_path / "_work" / "fp")
    drops = pa.table({"row": pa.array([1, 4], pa.int64()), "reason": ["near_duplicate"] * 2,
                      "duplicate_of": ["a", "b"]})
    storage.write_parquet(drops, os.path.join(work, "drops", "p00000", "c0001.parquet"))
    with pytest.raises(storage.StorageError, match="2 drop decisions found, the choose round wrote 5"):
        out = PartOut(0, "in.parquet", "in.parquet", "dedup", str(tmp_path), "fp")
        apply.drop_rows(apply.ApplyTask(out, work, expected_drops=5))
