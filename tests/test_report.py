import json
import os
import re

from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.summary import format_summary
from lmrefinery.run import run_recipe


def test_report_is_offline_and_has_table_and_plots(tmp_path):
    inp = tmp_path / "x.jsonl"
    rows = [{"text": "word " * n, "url": f"u{n}"} for n in (1, 20, 200, 2000)] + [{"text": "word " * 20, "url": "d"}]
    inp.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "o"
    r = load_recipe({"name": "rep", "output": str(out), "engine": "local",
                     "inputs": [{"name": "a", "paths": [str(inp)]}],
                     "stages": ["read", {"stage": "length_filter", "min_chars": 10}, "exact_dedup"]})
    stats = run_recipe(r, quiet=True)
    html = (out / "report" / "index.html").read_text()
    assert "<table>" in html and "length_filter" in html and "too_short=1" in html
    assert "exact_duplicate" in html and "Plotly.newPlot" in html
    figs = json.loads(html.split('<script id="lmr-figures" type="application/json">', 1)[1].split("</script>")[0])
    titles = [f["layout"]["title"]["text"] for f in figs.values()]
    assert any(t.startswith("Funnel") for t in titles) and "exact_dedup: rejected documents by reason" in titles
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # plotly.js itself is inlined
    assert "<script src" not in html and not re.search(r"(src|href)=\"https?://", markup)  # viewable offline
    summary = format_summary(stats)
    assert "too_short=1" in summary and "exact_duplicate=1" in summary
    assert os.path.exists(stats["report"])


def test_rejects_and_report_commands(tmp_path):
    import subprocess
    import sys

    inp = tmp_path / "x.jsonl"
    rows = [{"text": "word " * n, "url": f"u{n}"} for n in (1, 20, 200)] + [{"text": "word " * 20, "url": "d"}]
    inp.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "o"
    r = load_recipe({"name": "rep", "output": str(out), "engine": "local", "report": False,
                     "inputs": [{"name": "a", "paths": [str(inp)]}],
                     "stages": ["read", {"stage": "length_filter", "min_chars": 10}, "exact_dedup"]})
    run_recipe(r, quiet=True)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "lmrefinery.cli", *args], capture_output=True, text=True,
                              timeout=300)

    p = cli("rejects", str(out), "--sample", "0")
    assert p.returncode == 0, p.stderr
    assert "== length_filter: too_short" in p.stdout and "== exact_dedup: exact_duplicate" in p.stdout
    assert "file: stages/02-exact_dedup/rejects/part-00000.parquet" in p.stdout and "n_chars=" in p.stdout
    p = cli("rejects", str(out), "--stage", "exact_dedup", "--json")
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert [x["reject_reason"] for x in rows] == ["exact_duplicate"] and rows[0]["duplicate_of"]
    p = cli("rejects", str(out), "--reason", "too_shrt")
    assert p.returncode == 2 and "did you mean 'too_short'?" in p.stderr
    p = cli("rejects", str(out), "--stage", "exact_dedp")
    assert p.returncode == 2 and "did you mean 'exact_dedup'?" in p.stderr
    p = cli("rejects", str(tmp_path / "nope"))
    assert p.returncode == 2 and "stats.json: not found" in p.stderr
    assert not (out / "report").exists()
    p = cli("report", str(out))
    assert p.returncode == 0 and (out / "report" / "index.html").exists()


def test_report_of_a_tokenize_run_without_mix_weights(tmp_path):
    """A tokenize stage with no mix (mode 'none') has no target shares: the report
    still renders the token chart, with natural and achieved bars only."""
    inp = tmp_path / "x.jsonl"
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    rows = [{"text": " ".join(words[(i + j) % 10] for j in range(40)), "url": f"u{i}"} for i in range(30)]
    inp.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "o"
    r = load_recipe({"name": "rep", "output": str(out), "engine": "local",
                     "inputs": [{"name": "web_text", "paths": [str(inp)]}],
                     "stages": ["read", {"stage": "tokenize", "shard_tokens": 100000,
                                         "train": {"vocab_size": 300, "min_frequency": 1}}]})
    stats = run_recipe(r, quiet=True)
    html = (out / "report" / "index.html").read_text()
    figs = json.loads(html.split('<script id="lmr-figures" type="application/json">', 1)[1].split("</script>")[0])
    mix = [f for f in figs.values() if f["layout"]["title"]["text"].startswith("Tokens per source")]
    assert len(mix) == 1 and [d["name"] for d in mix[0]["data"]] == ["natural share", "achieved"]
    assert mix[0]["data"][1]["x"] == ["web_text"] and mix[0]["data"][1]["y"] == [1.0]
    assert os.path.exists(stats["report"])
