"""`report/index.html`: one self-contained page (plotly.js inlined, no network)
with the stage table, the funnel by documents and characters, rejections and
example rejected documents per stage and reason, every quality signal's
histogram with its thresholds, language x source mix, tokens per source against
the mix target, dedup cluster sizes, all counters and the run history."""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field

from ..core import storage
from . import charts, collect
from .rundata import RunData, StageInfo


def esc(x) -> str:
    return html.escape(str(x))


@dataclass
class Page:
    """Sections of HTML and the figures they reference by div id."""
    parts: list[str] = field(default_factory=list)
    figures: dict[str, dict] = field(default_factory=dict)

    def h2(self, title: str, anchor: str) -> None:
        self.parts.append(f'<h2 id="{anchor}">{esc(title)}</h2>')

    def chart(self, fig: dict, css: str = "chart") -> None:
        cid = f"fig{len(self.figures)}"
        self.figures[cid] = fig
        self.parts.append(f'<div class="{css}" id="{cid}"></div>')

    def add(self, fragment: str) -> None:
        self.parts.append(fragment)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _kv(d: dict) -> str:
    return ", ".join(f"{esc(k)}={v:,}" if isinstance(v, int) else f"{esc(k)}={esc(v)}"
                     for k, v in sorted(d.items(), key=lambda x: (-x[1] if isinstance(x[1], int) else 0, x[0])))


def stage_table(run: RunData) -> str:
    rows = []
    for s in run.stats.get("stages", []):
        secs = s.get("seconds", 0.0) if not s.get("skipped") else s.get("committed_seconds", s.get("seconds", 0.0))
        note = "committed by an earlier run" if s.get("skipped") else ""
        rows.append([f"{s['index']:02d}", esc(s["stage"]), f"{s['in']:,}", f"{s['kept']:,}",
                     _kv(s["rejected"]) or "-", f"{secs:.1f}", note])
    return _table(["#", "stage", "in", "kept", "rejected by reason", "seconds", ""], rows)


def header(run: RunData) -> str:
    st = run.stats
    hist = st.get("history", [])
    startup = st.get("engine_startup_seconds")
    lines = [f"engine <b>{esc(st.get('engine'))}</b>, {esc(st.get('workers'))} workers, "
             f"wall {esc(st.get('wall_seconds'))} s"
             + (f" (engine start-up {startup} s, not counted in any stage)" if startup is not None else "")
             + f", recipe {esc(st.get('recipe_fingerprint'))}, output <code>{esc(st.get('output'))}</code>"]
    if hist and not hist[-1].get("did_work"):
        lines.append(f"The last run ({esc(hist[-1].get('at'))}) found every stage committed and did no work; "
                     "the numbers below are those of the last run that did.")
    return "".join(f"<p>{x}</p>" for x in lines)


def planted_section(page: Page, planted: dict) -> None:
    page.h2("Planted labels", "planted")
    rows = [[esc(k), f"{d['planted']:,}", f"{d['removed']:,}", _kv(d["removed_by"]) or "none", f"{d['kept']:,}"]
            for k, d in planted.items()]
    page.add(_table(["kind", "planted", "removed", "removed by", "in final output"], rows))


def rejects_section(page: Page, run: RunData) -> None:
    page.h2("Rejections by stage and reason, with examples", "rejects")
    page.add("<p>Up to three rejected documents per reason (first 500 characters; before the run's "
             "<code>pii</code> stage, shown with its replacements applied). "
             "<code>lmrefinery rejects OUTPUT --stage S --reason R</code> prints more, with every signal.</p>")
    for s in run.stages:
        if not s.rejected:
            continue
        page.add(f'<h3 id="rej-{esc(s.dirname)}">{esc(s.dirname)}</h3>')
        page.chart(charts.reasons_figure(s.name, s.rejected))
        for ex in collect.redact_examples(run, s, collect.examples(s)):
            shown = ex.text[:collect.EXAMPLE_CHARS]
            more = f" … ({ex.n_chars:,} characters in all)" if len(ex.text) > len(shown) else ""
            page.add(f'<details class="ex"><summary><b>{esc(ex.reason)}</b> · {esc(ex.source)} · '
                     f'<code>{esc(ex.id)}</code> · <a href="../{esc(ex.file)}">{esc(ex.file)}</a></summary>'
                     f"<pre>{esc(shown)}{esc(more)}</pre></details>")


def signals_section(page: Page, run: RunData) -> None:
    for s in run.stages:
        if s.name != "quality":
            continue
        hists = collect.signal_hists(s, collect.quality_thresholds(s, collect.langs_of(s)))
        if not hists:
            continue
        page.h2(f"Quality signals ({s.dirname}): kept (green) and rejected (red), thresholds dashed", "signals")
        page.add('<div class="grid">')
        for h in hists:
            page.chart(charts.signal_figure(h), "chart small")
        page.add("</div>")


def mix_section(page: Page, run: RunData) -> None:
    if not run.stages:
        return
    before_stage = run.stage("lid") or run.stages[0]
    before = collect.mix(before_stage, f"into {before_stage.dirname}", with_rejects=True)
    after = collect.mix(run.stages[-1], f"kept by {run.stages[-1].dirname}", with_rejects=False)
    page.h2("Language and source mix, before and after", "mix")
    page.chart(charts.mix_figure(before, after))


def tokens_section(page: Page, dataset: dict | None) -> None:
    if not dataset or not dataset.get("mixing"):
        return
    page.h2("Tokens per source", "tokens")
    page.chart(charts.token_mix_figure(dataset["mixing"]))


def dedup_section(page: Page, run: RunData) -> None:
    figs = []
    for s in run.stages:
        if s.name == "exact_dedup":
            sizes = collect.exact_cluster_sizes(s)
            if sizes:
                figs.append(charts.cluster_figure(f"{s.dirname}: exact-duplicate cluster sizes", sizes))
        rep = s.artifact("dedup_report.json") if s.name == "dedup" else None
        if rep and rep.get("cluster_size_hist"):
            figs.append(charts.cluster_figure(f"{s.dirname}: near-duplicate cluster sizes "
                                              f"({rep.get('clusters', 0):,} clusters)", rep["cluster_size_hist"]))
    if figs:
        page.h2("Duplicate clusters", "dedup")
        for f in figs:
            page.chart(f)


def counters_section(page: Page, run: RunData) -> None:
    rows = [[esc(s.dirname), esc(k), f"{v:,}" if isinstance(v, int) else esc(v)]
            for s in run.stages for k, v in sorted(s.manifest.get("counters", {}).items())]
    page.h2("Counters", "counters")
    page.add(_table(["stage", "counter", "value"], rows) if rows else "<p>No stage reported counters.</p>")


def history_section(page: Page, history: list[dict]) -> None:
    if not history:
        return
    page.h2("Run history", "history")
    page.chart(charts.history_figure(history))
    rows = [[str(i + 1), esc(h.get("at")), "yes" if h.get("did_work") else "no (everything committed)",
             esc(h.get("engine")), esc(h.get("wall_seconds")), esc(h.get("engine_startup_seconds") or "-"),
             ", ".join(f"{esc(k)}={v:.1f}" for k, v in h.get("seconds", {}).items()) or "-"]
            for i, h in enumerate(history)]
    page.add(_table(["#", "at (UTC)", "did work", "engine", "wall s", "engine start-up s", "stage seconds"], rows))


def final_dataset(run: RunData) -> dict | None:
    tok = run.stage("tokenize")
    return tok.artifact("dataset.json") if tok else None


def build_page(run: RunData) -> Page:
    page = Page()
    st = run.stats
    page.add(f"<h1>Run <code>{esc(st.get('run'))}</code></h1>{header(run)}")
    page.h2("Stages", "stages")
    page.add(stage_table(run))
    dataset = final_dataset(run)
    tokens = sum(v.get("tokens", 0) for v in (dataset or {}).get("splits", {}).values()) or None
    page.chart(charts.funnel_figure(collect.funnel(run), tokens))
    if st.get("planted"):
        planted_section(page, st["planted"])
    first, last = (run.stages[0], run.stages[-1]) if run.stages else (None, None)
    if first and last:
        page.h2("Document length, before and after", "lengths")
        page.chart(charts.length_figure(first.manifest.get("length_hist", {}), last.manifest.get("length_hist", {}),
                                        f"kept by {first.dirname}", f"kept by {last.dirname}"))
    rejects_section(page, run)
    signals_section(page, run)
    mix_section(page, run)
    tokens_section(page, dataset)
    dedup_section(page, run)
    counters_section(page, run)
    history_section(page, st.get("history", []))
    return page


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;
vertical-align:top}th{background:#eee}.chart{width:100%;min-height:120px}.grid{display:grid;
grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:6px}pre{white-space:pre-wrap;background:#f6f6f6;
padding:6px;font-size:12px;max-height:14em;overflow:auto}details.ex{margin:2px 0 2px 1em;font-size:13px}
nav a{margin-right:1em}"""

NAV = ["stages", "planted", "lengths", "rejects", "signals", "mix", "tokens", "dedup", "counters", "history"]


def render(page: Page, title: str) -> str:
    from plotly.offline import get_plotlyjs

    figs = json.dumps(page.figures, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    nav = "".join(f'<a href="#{a}">{a}</a>' for a in NAV if f'id="{a}"' in "".join(page.parts))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>{CSS}</style><script>{get_plotlyjs()}</script></head><body><nav>{nav}</nav>
{''.join(page.parts)}
<script id="lmr-figures" type="application/json">{figs}</script>
<script>
const FIGS = JSON.parse(document.getElementById("lmr-figures").textContent);
for (const [id, f] of Object.entries(FIGS)) {{
  Plotly.newPlot(id, f.data, f.layout, {{displaylogo: false, responsive: true}});
}}
</script></body></html>"""


def write_report(out_root: str, stats: dict) -> str:
    run = RunData.from_stats(out_root, stats)
    page = build_page(run)
    uri = storage.join(out_root, "report", "index.html")
    storage.write_bytes(uri, render(page, f"lmrefinery run {stats.get('run')}").encode("utf-8"))
    return uri


__all__ = ["write_report", "build_page", "render", "StageInfo"]
