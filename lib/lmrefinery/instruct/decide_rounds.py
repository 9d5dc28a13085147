"""The rounds of the global instruct stages that decide per row (instruct_balance,
instruct_split): summary -> decide -> apply.

  summary (per part) a light record of every row (id, lang, a few meta fields, the
          prompt when asked) -> `_work/summary/pNNNNN.json`;
  decide  (driver) the stage's `decide(light) -> (decisions, report)`: per row id,
          drop it with a reason or set meta fields;
  apply   (per part) the decisions of its rows applied; the part committed.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core import storage
from ..core.manifest import write_json
from ..core.stage import BatchResult
from .common import table_to_rows
from .stage_base import PartOf, parts_of, replace_rows

Light = dict[str, Any]           # one row's summary
Decision = dict[str, Any]        # {"drop": reason} or {"set": {meta field: value}}
Decide = Callable[[list[Light]], tuple[dict[str, Decision], dict[str, Any]]]

SUMMARY_FIELDS = ("category", "task", "repeat_of", "origin", "parent_id", "pair_id")


@dataclass(frozen=True)
class SummaryTask:
    part: int
    input: str
    work: str
    with_prompt: bool
    link_fields: tuple[str, ...]


@dataclass(frozen=True)
class ApplyTask:
    part: PartOf
    work: str


def _scratch(work: str, kind: str, part: int) -> str:
    return storage.join(work, kind, f"p{part:05d}.json")


def summarise_part(t: SummaryTask) -> int:
    """Write the part's light records; returns how many."""
    from .split import prompt_text

    tbl = storage.read_parquet(t.input, columns=["id", "source", "lang", "meta"])
    light = []
    for r in table_to_rows(tbl):
        m = r["meta"]
        light.append({"id": r["id"], "lang": r.get("lang"), "part": t.part,
                      "meta": {**{k: m.get(k) for k in (*SUMMARY_FIELDS, *t.link_fields)},
                               "source": r.get("source")},
                      "prompt": prompt_text(r) if t.with_prompt else ""})
    storage.write_bytes(_scratch(t.work, "summary", t.part), json.dumps(light, ensure_ascii=False).encode())
    return len(light)


def apply_decisions(t: ApplyTask) -> dict[str, Any]:
    """Drop or edit the part's rows as decided and commit the part; returns its marker."""
    t0 = time.time()
    tbl = storage.read_parquet(t.part.input)
    dec = json.loads(storage.read_bytes(_scratch(t.work, "decisions", t.part.part)))
    rows = table_to_rows(tbl)
    reasons: list[str | None] = []
    counters: Counter[str] = Counter()
    for r in rows:
        d = dec.get(r["id"], {})
        if d.get("drop"):
            reasons.append(d["drop"])
            continue
        reasons.append(None)
        for k, v in d.get("set", {}).items():
            r["meta"][k] = v
        for k, v in d.get("set", {}).items():
            counters[f"{k}:{v}"] += 1
    res = BatchResult.split(replace_rows(tbl, rows), t.part.stage, reasons, dict(counters))
    return t.part.commit([res], tbl.num_rows, t0)


def _summaries(job: Any, work: str, with_prompt: bool, link_fields: tuple[str, ...]) -> list[Light]:
    tasks = [SummaryTask(i, p, work, with_prompt, link_fields) for i, p in enumerate(job.inputs)]
    job.map(summarise_part, tasks, "summary")
    out: list[Light] = []
    for i in range(len(job.inputs)):
        out.extend(json.loads(storage.read_bytes(_scratch(work, "summary", i))))
    return out


def _apply(job: Any, work: str, decisions: dict[str, Decision], light: list[Light]) -> list[dict[str, Any]]:
    by_part: dict[int, dict[str, Decision]] = {i: {} for i in range(len(job.inputs))}
    for r in light:
        if r["id"] in decisions:
            by_part[r["part"]][r["id"]] = decisions[r["id"]]
    for i, d in by_part.items():
        storage.write_bytes(_scratch(work, "decisions", i), json.dumps(d).encode())
    parts: list[dict[str, Any]] = job.map(apply_decisions, [ApplyTask(p, work) for p in parts_of(job)], "apply")
    return parts


def decide_and_apply(job: Any, with_prompt: bool, decide: Decide, report_name: str,
                     link_fields: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Per-part summaries, ``decide(light) -> (decisions, report)`` on the driver,
    per-part application, the report, cleanup."""
    work = job.work_dir
    light = _summaries(job, work, with_prompt, link_fields)
    decisions, report = decide(light)
    parts = _apply(job, work, decisions, light)
    write_json(storage.join(job.stage_dir, report_name), report)
    storage.delete_prefix(work)
    return parts
