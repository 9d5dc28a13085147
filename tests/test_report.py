import json
import os
import re

from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.runner import Runner, format_summary


def test_report_is_offline_and_has_table_and_plots(tmp_path):
    inp = tmp_path / "x.jsonl"
    rows = [{"text": "word " * n, "url": f"u{n}"} for n in (1, 20, 200, 2000)] + [{"text": "word " * 20, "url": "d"}]
    inp.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "o"
    r = load_recipe({"name": "rep", "output": str(out), "engine": "local",
                     "inputs": [{"name": "a", "paths": [str(inp)]}],
                     "stages": ["read", {"stage": "length_filter", "min_chars": 10}, "exact_dedup"]})
    stats = Runner(r, quiet=True).run()
    html = (out / "report" / "index.html").read_text()
    assert "<table>" in html and "length_filter" in html and "too_short=1" in html
    assert "exact_duplicate" in html and html.count("<svg") >= 3
    assert not re.search(r"(src|href)=\"https?://", html)  # viewable offline
    summary = format_summary(stats)
    assert "too_short=1" in summary and "exact_duplicate=1" in summary
    assert os.path.exists(stats["report"])
