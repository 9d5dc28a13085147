"""The report in a real headless browser (Debian's chromium driven by
Playwright): it loads without console errors, every chart has drawn marks,
and a screenshot is saved under the run. Chromium missing is a failure, not a
skip: `make setup` installs it."""
import json
import os
import shutil

import pytest

from lmrefinery.core.recipe import load_recipe
from lmrefinery.run import run_recipe

CHROMIUM = os.environ.get("LMR_CHROMIUM", "/usr/bin/chromium")
# every chart kind the report draws puts its marks in one of these
MARKS = ".bars path, .funnellayer path, .trace.bars path, g.point path"


@pytest.fixture(scope="module")
def mini_local(samples_dir, tmp_path_factory):
    from lmrefinery.core.resources import package_folder

    out = tmp_path_factory.mktemp("runs") / "mini"
    recipe = load_recipe(str(package_folder("lmrefinery", "recipes").joinpath("mini.yaml")),
                         [f"output={out}", "engine=local", f"labels={samples_dir}/labels.jsonl"]
                         + [f"inputs.{i}.paths=[{p}]" for i, p in enumerate(
                             [f"{samples_dir}/web/*.warc.gz", f"{samples_dir}/web/extracted-*.jsonl",
                              f"{samples_dir}/wiki/*.xml.bz2", f"{samples_dir}/books/*.txt"])])
    stats = run_recipe(recipe, quiet=True)
    run_recipe(recipe, quiet=True)  # a no-op re-run: the history grows, timings stay
    return out, stats


def open_report(path: str, screenshot: str):
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or os.path.exists(CHROMIUM), \
        f"{CHROMIUM} not found: the report's browser test needs Debian's chromium (make setup installs it)"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(f"file://{path}", wait_until="load")
            page.wait_for_function("document.querySelectorAll('.chart').length > 0 && "
                                   "[...document.querySelectorAll('.chart')].every(d => d.querySelector('.main-svg'))",
                                   timeout=60_000)
            marks = page.evaluate(f"""() => Object.fromEntries([...document.querySelectorAll('.chart')].map(
                d => [d.id + ' ' + (d.querySelector('.gtitle') || {{textContent: ''}}).textContent,
                      d.querySelectorAll('{MARKS}').length]))""")
            external = page.evaluate("""() => [...document.querySelectorAll('[src],[href]')]
                .map(e => e.getAttribute('src') || e.getAttribute('href')).filter(u => /^https?:/.test(u))""")
            page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
    return errors, marks, external


def test_report_renders_in_a_real_browser(mini_local):
    out, stats = mini_local
    report = out / "report" / "index.html"
    shot = out / "report" / "screenshot.png"
    errors, marks, external = open_report(str(report), str(shot))
    assert errors == []
    assert external == []  # nothing fetched from the network
    assert len(marks) >= 40  # funnel, lengths, reasons per stage, ~40 signals, mix, tokens, dedup, history
    assert all(n > 0 for n in marks.values()), {k: n for k, n in marks.items() if not n}
    titles = " ".join(marks)
    for needle in ("Funnel", "q_gopher_repetition_dup_5_gram", "Language x source", "Tokens per source",
                   "near-duplicate cluster sizes", "exact-duplicate cluster sizes", "Run history"):
        assert needle in titles, needle
    assert shot.stat().st_size > 50_000


def test_report_content_from_the_run(mini_local):
    out, stats = mini_local
    html = (out / "report" / "index.html").read_text()
    figs = json.loads(html.split('<script id="lmr-figures" type="application/json">', 1)[1].split("</script>")[0])
    # the longest bar's number is drawn outside the bar and never clipped
    reasons = [f for f in figs.values() if "rejected documents by reason" in f["layout"]["title"]["text"]]
    assert reasons and all(f["data"][0]["cliponaxis"] is False and f["data"][0]["textposition"] == "outside"
                           for f in reasons)
    # quality signals carry their thresholds as dashed lines
    dup5 = next(f for f in figs.values() if f["layout"]["title"]["text"].startswith("q_gopher_repetition_dup_5_gram"))
    assert any(s["x0"] == 0.15 for s in dup5["layout"]["shapes"])
    # the length histogram keeps empty bins and has a y axis title
    lengths = next(f for f in figs.values() if f["layout"]["title"]["text"].startswith("Document length"))
    labels = lengths["data"][0]["x"]
    assert "32-63" in labels and lengths["layout"]["yaxis"]["title"]["text"] == "documents"
    # example rejects link to their rejects file; planted labels are not raw JSON
    assert 'href="../stages/04-quality/rejects/part-' in html
    assert "removed_by" not in html and "{&quot;" not in html
    assert "pii_email" in html or "tokenize:tokens_out" in html  # the counters table
    on_disk = json.loads((out / "stats.json").read_text())
    assert [h["did_work"] for h in on_disk["history"]] == [True, False]
    assert on_disk["wall_seconds"] == stats["wall_seconds"]
    assert "did no work" in html
