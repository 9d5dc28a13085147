import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest

from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.runner import AccountingError, Runner
from lmrefinery.core.stage import BatchResult, Stage, StageParams, register


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lmrefinery.cli", *args], capture_output=True, text=True,
                          timeout=300, **kw)


def test_stages_lists_names_and_params():
    p = cli("stages")
    assert p.returncode == 0
    for name in ("read", "clean", "length_filter", "exact_dedup"):
        assert f"{name}  [" in p.stdout
    assert "min_chars = 50" in p.stdout


def test_stage_command_on_jsonl(tmp_path):
    inp = tmp_path / "x.jsonl"
    inp.write_text("\n".join(json.dumps({"text": t}) for t in ["short", "a much longer text " * 5]) + "\n")
    p = cli("stage", "length_filter", "--input", str(inp), "--output", str(tmp_path / "o"), "--set", "min_chars=20")
    assert p.returncode == 0, p.stderr
    assert "too_short=1" in p.stdout
    stats = json.load(open(tmp_path / "o" / "stats.json"))
    assert stats["stages"][1]["kept"] == 1


def test_unknown_recipe_key_exits_2_with_message(tmp_path):
    r = tmp_path / "r.yaml"
    r.write_text("name: t\noutput: o\nstages: [read]\nwokers: 3\n")
    p = cli("run", str(r))
    assert p.returncode == 2 and "unknown key 'wokers'" in p.stderr and str(r) in p.stderr


class _LeakyParams(StageParams):
    pass


@register
class _Leaky(Stage):
    """A broken stage that silently drops a row: the runner must refuse it."""
    name = "_test_leaky"
    Params = _LeakyParams

    def process(self, batch: pa.Table) -> BatchResult:
        return BatchResult(batch.slice(1))


def test_accounting_mismatch_fails_loudly(tmp_path):
    inp = tmp_path / "x.jsonl"
    inp.write_text("\n".join(json.dumps({"text": f"doc {i}"}) for i in range(3)) + "\n")
    r = load_recipe({"name": "t", "output": str(tmp_path / "o"), "engine": "local",
                     "inputs": [{"name": "a", "paths": [str(inp)]}], "stages": ["read", "_test_leaky"]})
    with pytest.raises(AccountingError, match="in=3"):
        Runner(r, quiet=True).run()
    assert not os.path.exists(tmp_path / "o" / "stages" / "01-_test_leaky" / "_manifest.json")


def test_stage_read_set_unknown_option_is_an_error_not_ignored(tmp_path):
    inp = tmp_path / "x.jsonl"
    inp.write_text(json.dumps({"text": "one document"}) + "\n")
    p = cli("stage", "read", "--input", str(inp), "--output", str(tmp_path / "o"), "--set", "anything=1")
    assert p.returncode == 2 and "inputs[0].options.anything" in p.stderr and "lmrefinery stage read" in p.stderr
    assert not (tmp_path / "o").exists()
    # a real reader option reaches the reader: a 5-byte line cap quarantines the line
    p = cli("stage", "read", "--input", str(inp), "--output", str(tmp_path / "o2"), "--set", "max_doc_bytes=5")
    assert p.returncode == 0, p.stderr
    assert json.load(open(tmp_path / "o2" / "stats.json"))["stages"][0]["rejected"] == {"too_large": 1}


def test_formats_lists_each_readers_options():
    p = cli("formats", "--options")
    assert p.returncode == 0, p.stderr
    warc = p.stdout.split("\nwarc ", 1)[1].split("\nwet ", 1)[0]
    assert "options.include_tables = true" in warc and "options.extractor = \"trafilatura\"" in warc
    wiki = p.stdout.split("\nmediawiki ", 1)[1].split("\nopenai_messages", 1)[0]
    assert "options.namespaces = [0]" in wiki and "options.extractor" not in wiki
