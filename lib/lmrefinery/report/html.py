"""`report/index.html`: one self-contained page (inline SVG, no scripts or
network) with the stats table, document lengths before/after and rejections
by reason per stage."""
from __future__ import annotations

import html
import json

from ..core import storage


def _bars(items: list[tuple[str, float]], width=520, bar_h=16, color="#4a7bd0", title="") -> str:
    if not items:
        return "<p><em>nothing</em></p>"
    m = max(v for _, v in items) or 1
    h = bar_h * len(items) + 24
    out = [f'<svg width="{width + 260}" height="{h}" role="img" aria-label="{html.escape(title)}">']
    for i, (label, v) in enumerate(items):
        y = 20 + i * bar_h
        w = max(1, int(width * v / m))
        out.append(f'<text x="0" y="{y + 11}" font-size="11">{html.escape(label[:38])}</text>'
                   f'<rect x="250" y="{y}" width="{w}" height="{bar_h - 3}" fill="{color}"/>'
                   f'<text x="{254 + w}" y="{y + 11}" font-size="11">{v:,.0f}</text>')
    out.append("</svg>")
    return "".join(out)


def _hist_svg(first: dict, last: dict, width=640, height=200) -> str:
    keys = sorted({int(k) for k in list(first) + list(last)})
    if not keys:
        return "<p><em>no documents</em></p>"
    m = max([1] + list(first.values()) + list(last.values()))
    bw = width / max(1, len(keys))
    out = [f'<svg width="{width + 40}" height="{height + 40}" role="img" aria-label="length histogram">']
    for i, k in enumerate(keys):
        for j, (src, col) in enumerate(((first, "#bbb"), (last, "#2f8f5b"))):
            v = src.get(str(k), 0)
            hh = int(height * v / m)
            x = 20 + i * bw + j * bw / 2
            out.append(f'<rect x="{x:.1f}" y="{height - hh + 5}" width="{bw / 2 - 1:.1f}" height="{hh}" fill="{col}">'
                       f'<title>{"before" if j == 0 else "after"}: {v} docs with 2^{k}..2^{k + 1} chars</title></rect>')
        out.append(f'<text x="{20 + i * bw:.1f}" y="{height + 20}" font-size="10">2^{k}</text>')
    out.append(f'<text x="20" y="{height + 36}" font-size="11">characters per document (log2 bins); '
               f'grey = after first stage, green = final</text></svg>')
    return "".join(out)


def write_report(out_root: str, stats: dict) -> str:
    st = stats["stages"]
    rows = []
    for s in st:
        rej = ", ".join(f"{html.escape(k)}={v}" for k, v in sorted(s["rejected"].items(), key=lambda x: -x[1]))
        rows.append(f"<tr><td>{s['index']:02d}</td><td>{html.escape(s['stage'])}</td><td>{s['in']:,}</td>"
                    f"<td>{s['kept']:,}</td><td>{rej or '-'}</td><td>{s['seconds']:.1f}</td>"
                    f"<td>{'skipped' if s['skipped'] else ''}</td></tr>")
    sections = []
    for s in st:
        items = sorted(s["rejected"].items(), key=lambda x: -x[1])
        if items:
            sections.append(f"<h3>{html.escape(s['stage'])}: rejections by reason</h3>"
                            + _bars([(k, v) for k, v in items], color="#c0504d", title=s["stage"]))
    planted = ""
    if stats.get("planted"):
        pr = "".join(f"<tr><td>{html.escape(k)}</td><td>{d['planted']}</td><td>{d['removed']}</td>"
                     f"<td>{html.escape(json.dumps(d['removed_by']))}</td><td>{d['kept']}</td></tr>"
                     for k, d in stats["planted"].items())
        planted = ("<h2>Planted labels</h2><table><tr><th>kind</th><th>planted</th><th>removed</th>"
                   f"<th>removed by</th><th>in final output</th></tr>{pr}</table>")
    first = st[0]["length_hist"] if st else {}
    last = st[-1]["length_hist"] if st else {}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>lmrefinery run {html.escape(stats['run'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}th{{background:#eee}}</style></head><body>
<h1>Run <code>{html.escape(stats['run'])}</code></h1>
<p>engine {html.escape(stats['engine'])}, {stats['workers']} workers, wall {stats['wall_seconds']} s,
recipe {html.escape(stats['recipe_fingerprint'])}, output <code>{html.escape(stats['output'])}</code></p>
<h2>Stages</h2><table><tr><th>#</th><th>stage</th><th>in</th><th>kept</th><th>rejected by reason</th>
<th>seconds</th><th></th></tr>{''.join(rows)}</table>
{planted}
<h2>Document length, before and after</h2>{_hist_svg(first, last)}
<h2>Documents kept per stage</h2>{_bars([(s['stage'], s['kept']) for s in st], title='kept')}
{''.join(sections)}
<p>Rejected rows of every stage are in <code>stages/NN-stage/rejects/</code> with <code>reject_reason</code>.</p>
</body></html>"""
    uri = storage.join(out_root, "report", "index.html")
    storage.write_bytes(uri, page.encode("utf-8"))
    return uri
