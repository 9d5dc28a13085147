"""Issue 19: never wrong, never leaking — scratch owned by a fingerprint, run locks,
early named errors, no secrets in anything a run writes."""
from __future__ import annotations

import os

import pytest

from lmrefinery.core import storage
from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.runner import Runner, prepare_stage_dir, work_dir
from lmrefinery.dedup import near


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

    monkeypatch.setattr(near, "_apply_task", crash)
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
