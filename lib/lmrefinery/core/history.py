"""`stats.json` keeps a run history: every run appends one entry, and a run that
did no work (every stage already committed) leaves the last real run's numbers
(stage seconds, wall time, engine start-up) in place instead of overwriting them
with "wall 0.02 s, every stage 0.0 s skipped"."""
from __future__ import annotations

import datetime as _dt
from typing import Any

HISTORY_KEEP = 200  # entries kept in stats.json


def history_entry(stats: dict[str, Any]) -> dict[str, Any]:
    return {"at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "did_work": bool(stats.get("did_work")), "wall_seconds": stats.get("wall_seconds"),
            "engine": stats.get("engine"), "workers": stats.get("workers"),
            "engine_startup_seconds": stats.get("engine_startup_seconds"),
            "stages_run": [s["stage"] for s in stats.get("stages", []) if not s.get("skipped")],
            "seconds": {s["stage"]: s.get("seconds", 0.0) for s in stats.get("stages", []) if not s.get("skipped")}}


def with_history(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """What to store as stats.json after a run whose own stats are ``current``.

    A no-op run over the same recipe keeps ``previous`` (the last real timings)
    and only appends its entry; any other run is stored with the history carried over."""
    history = list((previous or {}).get("history", []))
    history.append(history_entry(current))
    history = history[-HISTORY_KEEP:]
    same_recipe = previous is not None and previous.get("recipe_fingerprint") == current.get("recipe_fingerprint")
    if previous is not None and not current.get("did_work") and same_recipe and previous.get("stages"):
        kept = {k: v for k, v in previous.items() if k != "nothing_new"}
        kept["history"] = history
        kept["last_run_did_work"] = False
        if current.get("nothing_new"):  # --new-only found no new input object (schedulers read this)
            kept["nothing_new"] = True
        return kept
    stored = dict(current)
    stored["history"] = history
    stored["last_run_did_work"] = bool(current.get("did_work"))
    return stored
