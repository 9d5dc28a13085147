"""`lmrefinery rejects OUTPUT` (browse rejected documents with their reasons and
signals) and `lmrefinery report OUTPUT` (rebuild report/index.html)."""
from __future__ import annotations

import json
import math
import random
import sys
from dataclasses import dataclass

from .rundata import SIGNAL_EXCLUDE, RunData, StageInfo


@dataclass
class RejectQuery:
    stage: str | None
    reason: str | None
    sample: int
    seed: int
    chars: int


def _matches_reason(reason: str, wanted: str) -> bool:
    """Exact reason, or its family: `gopher_repetition` matches `gopher_repetition:dup_5_gram`."""
    return reason == wanted or reason.startswith(wanted + ":")


def _pick_stages(run: RunData, wanted: str | None) -> list[StageInfo]:
    from ..core.names import unknown_name
    from ..core.recipe import RecipeError

    if wanted is None:
        return run.stages
    hits = [s for s in run.stages if wanted in (s.name, s.dirname, f"{s.index:02d}", str(s.index))]
    if not hits:
        names = [s.name for s in run.stages]
        raise RecipeError(f"--stage {wanted}: {unknown_name('stage of this run', wanted, names)}")
    return hits


def collect_rejects(run: RunData, q: RejectQuery) -> list[dict]:
    from ..core.names import did_you_mean
    from ..core.recipe import RecipeError

    stages = _pick_stages(run, q.stage)
    if q.reason:
        known = sorted({r for s in stages for r in s.rejected})
        if not any(_matches_reason(r, q.reason) for r in known):
            where = f"stage {q.stage}" if q.stage else "this run"
            raise RecipeError(f"--reason {q.reason}: no rejects with this reason in {where}"
                              f"{did_you_mean(q.reason, known)} (reasons: {', '.join(known) or 'none'})")
    rows: list[dict] = []
    for s in stages:
        if not s.rejected or (q.reason and not any(_matches_reason(r, q.reason) for r in s.rejected)):
            continue
        for rel, table in s.reject_tables():
            for row in table.to_pylist():
                if q.reason and not _matches_reason(row.get("reject_reason") or "", q.reason):
                    continue
                row["_file"] = f"stages/{s.dirname}/{rel}"
                rows.append(row)
    if q.sample and len(rows) > q.sample:
        rows = random.Random(q.seed).sample(rows, q.sample)
    return rows


def format_reject(row: dict, chars: int) -> str:
    signals = {k: v for k, v in row.items() if k not in SIGNAL_EXCLUDE and not k.startswith("_")
               and v is not None and not (isinstance(v, float) and math.isnan(v))}
    text = " ".join((row.get("text") or "").split())
    more = f" … (+{len(text) - chars} chars)" if len(text) > chars else ""
    lines = [f"== {row.get('reject_stage')}: {row.get('reject_reason')}   "
             f"id={row.get('id')}  source={row.get('source')}",
             f"   file: {row['_file']}"]
    if row.get("url"):
        lines.append(f"   url: {row['url']}")
    if signals:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in sorted(signals.items()))
        lines.append(f"   signals: {shown}")
    lines.append(f"   text: {text[:chars]}{more}")
    return "\n".join(lines)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    s = json.dumps(v, ensure_ascii=False, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 60 else s[:57] + "..."


def cmd_rejects(a) -> int:
    run = RunData.open(a.output)
    q = RejectQuery(a.stage, a.reason, a.sample, a.seed, a.chars)
    rows = collect_rejects(run, q)
    if a.json:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False, default=str))
        return 0
    for r in rows:
        print(format_reject(r, q.chars))
    print(f"{len(rows)} rejected document(s) shown", file=sys.stderr)
    return 0


def cmd_report(a) -> int:
    from .html import write_report

    run = RunData.open(a.output)
    print(write_report(run.root, run.stats))
    return 0


def register(sub) -> None:
    p = sub.add_parser("rejects", help="print rejected documents of a run with their reasons and signals")
    p.add_argument("output", help="the run's output folder (holds stats.json and stages/)")
    p.add_argument("--stage", help="only this stage (name, folder like 04-quality, or index)")
    p.add_argument("--reason", help="only this reason; a family name (e.g. gopher_repetition) matches its sub-reasons")
    p.add_argument("--sample", type=int, default=10,
                   help="show at most N documents, sampled with --seed (0 = all; default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--chars", type=int, default=300, help="characters of text to show per document (default 300)")
    p.add_argument("--json", action="store_true", help="one JSON object per rejected row instead of text")
    p.set_defaults(fn=cmd_rejects)

    p = sub.add_parser("report", help="rebuild OUTPUT/report/index.html from the run's stats and stage outputs")
    p.add_argument("output", help="the run's output folder (holds stats.json and stages/)")
    p.set_defaults(fn=cmd_report)
