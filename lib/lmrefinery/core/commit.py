"""The driver side of the commit protocol: a stage's part markers summed into its
manifest (``_manifest.json``, the commit point), with the accounting checked first,
and the stage's row of stats.json made from that manifest."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from . import manifest as mf
from .parts import AccountingError


@dataclass(frozen=True)
class StageRun:
    """What a stage ran with, as its manifest records it."""

    index: int
    stage: str
    fingerprint: str
    params: dict[str, Any]
    inputs: list[dict[str, Any]]
    sources: list[str] | None = None


@dataclass(frozen=True)
class RunInfo:
    """The run a stage is committed in."""

    recipe_fingerprint: str
    engine: str
    workers: int


def manifest_of(st: StageRun, parts: list[dict[str, Any]], seconds: float, run: RunInfo,
                chars_in: int | None = None) -> dict[str, Any]:
    """The manifest of a stage from its part markers. ``chars_in`` is what the stage
    before kept (None for a read stage: in = what it produced). AccountingError when a
    document is neither kept nor rejected."""
    n_in = sum(p["in"] for p in parts)
    kept = sum(p["kept"] for p in parts)
    rej: Counter[str] = Counter()
    counters: Counter[str] = Counter()
    hist: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    for p in parts:
        chars.update(p.get("chars", {}))
        rej.update(p["rejected"])
        counters.update(p.get("counters", {}))
        hist.update(p.get("length_hist", {}))
    if n_in != kept + sum(rej.values()):
        raise AccountingError(f"stage {st.stage}: in={n_in} != kept={kept} + rejected={sum(rej.values())} "
                              f"({dict(rej)}); refusing to commit")
    # characters in = what the stage before kept (a read stage: what it produced); what a
    # transform removed from the rows it kept is in - kept - rejected
    chars["in"] = chars_in if chars_in is not None else chars["kept"] + chars["rejected"]
    chars["removed_from_kept"] = chars["in"] - chars["kept"] - chars["rejected"]
    m: dict[str, Any] = {
        "stage": st.stage, "index": st.index, "fingerprint": st.fingerprint, "recipe": run.recipe_fingerprint,
        "code_version": mf.code_version(), "params": st.params, "inputs": st.inputs,
        "outputs": [p["output"] for p in parts], "rejects": [p["rejects"] for p in parts],
        "counts": {"in": n_in, "kept": kept, "rejected": dict(sorted(rej.items()))},
        "counters": dict(sorted(counters.items())), "chars": dict(sorted(chars.items())),
        "length_hist": dict(sorted(hist.items(), key=lambda x: int(x[0]))),
        "seconds": round(seconds, 3), "engine": run.engine, "workers": run.workers,
        "skipped_parts": sum(1 for p in parts if p.get("skipped")), "complete": True}
    if st.sources is not None:
        m["sources"] = st.sources
    artifacts = [p["artifacts"] for p in parts if "artifacts" in p]
    if artifacts:
        m["artifacts"] = artifacts
    return m


def stat_row(m: dict[str, Any], skipped: bool) -> dict[str, Any]:
    """A stage's row of stats.json, from its manifest."""
    c = m["counts"]
    return {"stage": m["stage"], "index": m["index"], "in": c["in"], "kept": c["kept"],
            "rejected": c["rejected"], "counters": m.get("counters", {}),
            "seconds": 0.0 if skipped else m["seconds"], "committed_seconds": m["seconds"], "skipped": skipped,
            "length_hist": m.get("length_hist", {}), "fingerprint": m["fingerprint"],
            "chars": m.get("chars", {}), **({"sources": m["sources"]} if "sources" in m else {}),
            **({"tokens": m["artifacts"][0]["tokens"]} if m.get("artifacts") and "tokens" in m["artifacts"][0]
               else {})}


__all__ = ["RunInfo", "StageRun", "manifest_of", "stat_row"]
