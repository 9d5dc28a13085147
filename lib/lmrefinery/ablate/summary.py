"""The ablation's outputs: per variant x held-out group the mean nats/token over
seeds, the seed spread (max - min), the difference to the baseline and whether it
exceeds twice the larger of the two spreads; ablation.json, a text table, a plotly
figure (perplexity per variant with each seed's point and the min-max range) and
report/ablation.html (plotly.js inlined, like the run report)."""
from __future__ import annotations

import html
import json
import math
import os
from collections import defaultdict


def aggregate(result: dict) -> list[dict]:
    """One row per (variant, group) with mean/spread over seeds and the baseline comparison."""
    by: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for r in result["runs"]:
        for g, e in r["eval"].items():
            by[(r["variant"], g)].append((r["seed"], e["nats_per_token"]))
    rows = []
    for (v, g), vals in by.items():
        nats = [x for _, x in vals]
        mean = sum(nats) / len(nats)
        rows.append({"variant": v, "group": g, "seeds": len(nats), "nats_per_token": mean, "ppl": math.exp(mean),
                     "spread": max(nats) - min(nats), "per_seed": {str(s): x for s, x in vals}})
    _compare(rows, result["baseline"], "baseline")
    if result.get("reference"):
        _compare(rows, result["reference"], "reference")
    order = {v["name"]: i for i, v in enumerate(result["variants"])}
    return sorted(rows, key=lambda r: (r["group"], order.get(r["variant"], 0)))


def _compare(rows: list[dict], name: str, label: str) -> None:
    """delta_vs_<label> (nats/token) and whether it exceeds twice the larger seed spread."""
    ref = {r["group"]: r for r in rows if r["variant"] == name}
    for r in rows:
        b = ref.get(r["group"])
        if b is None or r["variant"] == name:
            continue
        r[f"delta_vs_{label}"] = r["nats_per_token"] - b["nats_per_token"]
        noise = max(r["spread"], b["spread"])
        sig = (abs(r[f"delta_vs_{label}"]) > 2 * noise) if r["seeds"] > 1 and b["seeds"] > 1 else None
        r["beyond_2x_spread" if label == "baseline" else f"{label}_beyond_2x_spread"] = sig


def run_table(result: dict) -> str:
    """One line per variant x seed x group: the raw numbers."""
    lines = [(f"{'variant':<16} {'seed':>4} {'group':<10} {'docs':>5} {'tokens':>9} {'nats/token':>10} {'ppl':>9} "
              f"{'steps':>6} {'trained':>10}")]
    for r in result["runs"]:
        for g, e in r["eval"].items():
            lines.append(f"{r['variant'][:16]:<16} {r['seed']:>4} {g[:10]:<10} {e['docs']:>5} {e['tokens']:>9,} "
                         f"{e['nats_per_token']:>10.4f} {e['ppl']:>9.2f} {r['steps']:>6} "
                         f"{(r['trained_tokens'] or 0):>10,}")
    return "\n".join(lines)


def summary_table(rows: list[dict], baseline: str, reference: str | None = None) -> str:
    """Per group and variant: seed-mean perplexity, spread, difference to the baseline (and
    to the reference variant) in nats/token, and whether it exceeds 2x the seed spread."""
    def cell(d, sig) -> str:
        return ("-" if d is None else f"{d:+.4f}") + ("" if sig is None else (" *" if sig else "  "))

    head = f"{'group':<10} {'variant':<16} {'seeds':>5} {'ppl':>9} {'nats/token':>10} {'spread':>7} " \
           f"{'vs ' + baseline[:12]:>16}" + (f" {'vs ' + reference[:12]:>16}" if reference else "")
    lines = [head]
    for r in rows:
        line = f"{r['group'][:10]:<10} {r['variant'][:16]:<16} {r['seeds']:>5} {r['ppl']:>9.2f} " \
               f"{r['nats_per_token']:>10.4f} {r['spread']:>7.4f} " \
               f"{cell(r.get('delta_vs_baseline'), r.get('beyond_2x_spread')):>16}"
        if reference:
            line += f" {cell(r.get('delta_vs_reference'), r.get('reference_beyond_2x_spread')):>16}"
        lines.append(line)
    lines.append("differences in nats/token (negative: lower perplexity); * = larger than 2x the seed spread")
    return "\n".join(lines)


def figure(result: dict) -> dict:
    """Perplexity per variant, one panel colour per held-out group: a bar at the seed
    mean (exp of the mean nats/token), an error bar over the seeds' min..max, a dot per seed."""
    from ..report.charts import _layout

    variants = [v["name"] for v in result["variants"]]
    groups = sorted({g for r in result["runs"] for g in r["eval"]})
    rows = {(r["variant"], r["group"]): r for r in aggregate(result)}
    data = []
    for g in groups:
        got = [rows.get((v, g)) for v in variants]
        ppl = [r["ppl"] if r else None for r in got]
        lo = [r["ppl"] - math.exp(min(r["per_seed"].values())) if r else 0 for r in got]
        hi = [math.exp(max(r["per_seed"].values())) - r["ppl"] if r else 0 for r in got]
        data.append({"type": "bar", "name": f"{g} (seed mean)", "x": variants, "y": ppl, "offsetgroup": g,
                     "error_y": {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo}})
        pts = [(r["variant"], math.exp(e["nats_per_token"])) for r in result["runs"] for gg, e in r["eval"].items()
               if gg == g]
        data.append({"type": "scatter", "mode": "markers", "name": f"{g} (each seed)", "x": [p[0] for p in pts],
                     "y": [p[1] for p in pts], "offsetgroup": g, "marker": {"size": 7, "color": "black"}})
    return {"data": data, "layout": _layout(
        f"Held-out perplexity per variant ({len(result['seeds'])} seeds, {result['token_budget']:,} tokens each)",
        420, barmode="group", yaxis={"title": {"text": "perplexity (lower is better)"}})}


def write_outputs(result: dict) -> dict:
    """ablation.json, ablation.txt, ablation_figure.json and report/ablation.html in the run folder."""
    from ..report.html import Page, render

    rows = aggregate(result)
    result["summary"] = rows
    fig = figure(result)
    run = result["run_dir"]
    result["outputs"] = {"json": os.path.join(run, "ablation.json"), "table": os.path.join(run, "ablation.txt"),
                         "figure": os.path.join(run, "ablation_figure.json"),
                         "html": os.path.join(run, "report", "ablation.html")}
    text = summary_table(rows, result["baseline"], result.get("reference")) + "\n\n" + run_table(result)
    with open(os.path.join(run, "ablation.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
    with open(os.path.join(run, "ablation.txt"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    with open(os.path.join(run, "ablation_figure.json"), "w", encoding="utf-8") as f:
        json.dump(fig, f)
    page = Page()
    page.h2(f"Ablation {result['name']}: held-out perplexity at an equal token budget", "ablation")
    page.chart(fig)
    page.add(f"<pre>{html.escape(text)}</pre>")
    os.makedirs(os.path.join(run, "report"), exist_ok=True)
    with open(os.path.join(run, "report", "ablation.html"), "w", encoding="utf-8") as f:
        f.write(render(page, f"lmrefinery ablation {result['name']}"))
    return result
