"""Plotly figure specs (plain dicts: data + layout) for the report. plotly.js is
inlined once into the page, so the report renders offline."""
from __future__ import annotations

from .collect import FunnelRow, Mix, SignalHist

Figure = dict
KEPT, REJECTED, BEFORE, AFTER = "#2f8f5b", "#c0504d", "#9aa5b1", "#2f6fb0"
FONT = {"size": 11}


def _layout(title: str, height: int = 320, **kw) -> dict:
    base = {"title": {"text": title, "font": {"size": 13}}, "height": height, "font": FONT,
            "margin": {"l": 60, "r": 30, "t": 40, "b": 50}, "bargap": 0.1}
    base.update(kw)
    return base


def funnel_figure(rows: list[FunnelRow], final_tokens: int | None) -> Figure:
    stages = [r.stage for r in rows]
    data = [{"type": "funnel", "name": "documents kept", "y": stages, "x": [r.docs_kept for r in rows],
             "textinfo": "value+percent initial", "marker": {"color": AFTER}, "xaxis": "x", "yaxis": "y"},
            {"type": "funnel", "name": "characters kept", "y": stages, "x": [r.chars_kept or 0 for r in rows],
             "textinfo": "value+percent initial", "marker": {"color": KEPT}, "xaxis": "x2", "yaxis": "y2"}]
    title = "Funnel: documents and characters kept after each stage"
    if final_tokens:
        title += f" (final output: {final_tokens:,} tokens)"
    return {"data": data, "layout": _layout(title, 60 + 34 * len(rows), showlegend=True,
                                            grid={"rows": 1, "columns": 2, "pattern": "independent"},
                                            margin={"l": 110, "r": 30, "t": 40, "b": 30})}


def reasons_figure(stage: str, rejected: dict[str, int]) -> Figure:
    items = sorted(rejected.items(), key=lambda x: x[1])
    data = [{"type": "bar", "orientation": "h", "y": [k for k, _ in items], "x": [v for _, v in items],
             "text": [f"{v:,}" for _, v in items], "textposition": "outside", "cliponaxis": False,
             "marker": {"color": REJECTED}}]
    longest = max((len(k) for k, _ in items), default=10)
    return {"data": data, "layout": _layout(f"{stage}: rejected documents by reason", 70 + 24 * len(items),
                                            margin={"l": min(320, 7 * longest + 20), "r": 60, "t": 40, "b": 30},
                                            xaxis={"title": {"text": "documents"}, "rangemode": "tozero"})}


def length_figure(first: dict[str, int], last: dict[str, int], first_label: str, last_label: str) -> Figure:
    keys = [int(k) for k in list(first) + list(last) if int(k) >= 0]
    if not keys:
        return {"data": [], "layout": _layout("Document length: no documents")}
    bins = list(range(min(keys), max(keys) + 1))  # every bin, empty ones too
    labels = [f"{2 ** k:,}-{2 ** (k + 1) - 1:,}" for k in bins]
    data = [{"type": "bar", "name": first_label, "x": labels, "y": [first.get(str(k), 0) for k in bins],
             "marker": {"color": BEFORE}},
            {"type": "bar", "name": last_label, "x": labels, "y": [last.get(str(k), 0) for k in bins],
             "marker": {"color": KEPT}}]
    return {"data": data, "layout": _layout("Document length (characters, log2 bins)", 340, barmode="group",
                                            xaxis={"title": {"text": "characters per document"}},
                                            yaxis={"title": {"text": "documents"}, "rangemode": "tozero"})}


def signal_figure(h: SignalHist) -> Figure:
    mids = [(a + b) / 2 for a, b in zip(h.edges, h.edges[1:])]
    width = (h.edges[1] - h.edges[0]) if len(h.edges) > 1 else 1
    data = [{"type": "bar", "name": "kept", "x": mids, "y": h.kept, "width": width, "marker": {"color": KEPT}},
            {"type": "bar", "name": "rejected", "x": mids, "y": h.rejected, "width": width,
             "marker": {"color": REJECTED}}]
    shapes, notes = [], []
    lo, hi = h.edges[0], h.edges[-1]
    for langs, v in h.thresholds:
        if lo - (hi - lo) * 0.05 <= v <= hi + (hi - lo) * 0.05:
            shapes.append({"type": "line", "x0": v, "x1": v, "y0": 0, "y1": 1, "yref": "paper",
                           "line": {"color": "#222", "dash": "dash", "width": 1.5}})
        notes.append(f"{langs}: {v:g}")
    title = h.column + (f"<br><sub>threshold {'; '.join(notes)}</sub>" if notes else "")
    if h.n_nan:
        title += f"<br><sub>{h.n_nan:,} docs without this signal</sub>"
    return {"data": data, "layout": _layout(title, 260, barmode="stack", showlegend=False,
                                            margin={"l": 45, "r": 10, "t": 60, "b": 30}, shapes=shapes,
                                            yaxis={"rangemode": "tozero"})}


def mix_figure(before: Mix, after: Mix) -> Figure:
    langs = sorted({lang for m in (before, after) for _, lang in m.counts})
    sources = sorted({src for m in (before, after) for src, _ in m.counts})
    data = []
    palette = ["#2f6fb0", "#2f8f5b", "#c0504d", "#8064a2", "#f79646", "#4bacc6", "#9bbb59", "#7f7f7f",
               "#d19fe8", "#e6b800"]
    for j, lang in enumerate(langs):
        for i, m in enumerate((before, after)):
            data.append({"type": "bar", "name": lang, "legendgroup": lang, "showlegend": i == 0,
                         "x": sources, "y": [m.counts.get((s, lang), 0) for s in sources],
                         "marker": {"color": palette[j % len(palette)]},
                         "xaxis": "x" if i == 0 else "x2", "yaxis": "y" if i == 0 else "y2"})
    return {"data": data, "layout": _layout(f"Language x source: {before.label} (left) and {after.label} (right)",
                                            360, barmode="stack", grid={"rows": 1, "columns": 2,
                                                                        "pattern": "independent"},
                                            yaxis={"title": {"text": "documents"}})}


def token_mix_figure(mixing: dict) -> Figure:
    """Natural, target and achieved token shares per source. A run without mixing
    weights (mode 'none') has target None: its bars are left out."""
    natural = mixing.get("natural") or {}
    target = mixing.get("target") or {}
    total_nat = sum(v.get("tokens", 0) for v in natural.values()) or 1
    sources = sorted(set(target) | set(natural))
    series = [("natural share", {s: natural.get(s, {}).get("tokens", 0) / total_nat for s in sources}, BEFORE),
              *([("target", target, "#222")] if target else []),
              ("achieved", mixing.get("achieved") or {}, KEPT)]
    data = [{"type": "bar", "name": name, "x": sources, "y": [vals.get(s, 0) for s in sources],
             "marker": {"color": color}, "text": [f"{vals.get(s, 0):.1%}" for s in sources],
             "textposition": "outside", "cliponaxis": False} for name, vals, color in series]
    tokens = mixing.get("output_tokens") or {}
    sub = ", ".join(f"{s}: {tokens.get(s, 0):,}" for s in sources)
    return {"data": data, "layout": _layout(f"Tokens per source vs the mix target<br><sub>output tokens {sub}</sub>",
                                            340, barmode="group", yaxis={"tickformat": ".0%", "rangemode": "tozero"},
                                            margin={"l": 60, "r": 30, "t": 60, "b": 40})}


def cluster_figure(title: str, hist: dict) -> Figure:
    items = sorted((int(k), int(v)) for k, v in hist.items())
    data = [{"type": "bar", "x": [str(k) for k, _ in items], "y": [v for _, v in items],
             "text": [f"{v:,}" for _, v in items], "textposition": "outside", "cliponaxis": False,
             "marker": {"color": AFTER}}]
    return {"data": data, "layout": _layout(title, 280, xaxis={"title": {"text": "documents in cluster"},
                                                               "type": "category"},
                                            yaxis={"title": {"text": "clusters"}, "rangemode": "tozero"})}


def history_figure(history: list[dict]) -> Figure:
    xs = [f"#{i + 1} {h.get('at', '')}" for i, h in enumerate(history)]
    data = [{"type": "bar", "x": xs, "y": [h.get("wall_seconds") or 0 for h in history],
             "marker": {"color": [AFTER if h.get("did_work") else BEFORE for h in history]},
             "text": ["work" if h.get("did_work") else "no-op" for h in history], "textposition": "outside",
             "cliponaxis": False}]
    return {"data": data, "layout": _layout("Run history: wall seconds (grey = no-op re-run)", 280,
                                            yaxis={"title": {"text": "seconds"}, "rangemode": "tozero"})}
