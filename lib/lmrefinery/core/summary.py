"""The run summary printed after a run: one line per stage with its counts, top
rejection reasons and seconds, then the planted-label results of the sample shards."""
from __future__ import annotations

from typing import Any


def _stage_rows(stats: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("stage", "in", "kept", "top rejection reasons", "seconds", "")]
    for s in stats["stages"]:
        top = sorted(s["rejected"].items(), key=lambda x: (-x[1], x[0]))[:3]
        reasons = ", ".join(f"{r}={n}" for r, n in top) or "-"
        secs = f"({s['committed_seconds']:.1f})" if s["skipped"] and "committed_seconds" in s else f"{s['seconds']:.1f}"
        rows.append((f"{s['index']:02d} {s['stage']}", str(s["in"]), str(s["kept"]), reasons,
                     secs, "skipped" if s["skipped"] else ""))
    return rows


def format_summary(stats: dict[str, Any]) -> str:
    rows = _stage_rows(stats)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if j in (0, 3, 5) else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    out = "\n".join(lines)
    if any(s["skipped"] for s in stats["stages"]):
        out += "\n(seconds) of a skipped stage: as measured by the run that committed it"
    if stats.get("planted"):
        out += "\n\nPlanted labels (sample shards):\n"
        for kind, d in stats["planted"].items():
            where = ", ".join(f"{k}={v}" for k, v in sorted(d["removed_by"].items())) or "none"
            out += f"  {kind:<14} planted={d['planted']:<4} removed={d['removed']:<4} by: {where}\n"
    if not stats["did_work"]:
        out += "\nNothing to do: every stage was already committed with the same recipe, inputs and code.\n"
    return out


__all__ = ["format_summary"]
