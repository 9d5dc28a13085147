"""The pretrain / sft phases as jobs: ``lmrefinery train`` plus the result dict
(run folder, model, losses, SFT scores) that ``protocol.guarded`` prints."""
from __future__ import annotations

import os
from typing import Any

from .phases import resolve_path
from .protocol import PhaseError


def train_phase(kind: str, args: Any) -> dict[str, Any]:
    from ..train.cli import format_report
    from ..train.config import load_train_recipe
    from ..train.trainer import REPORT, run_training

    recipe = load_train_recipe(resolve_path(args.recipe, args.root), args.overrides)
    if recipe.kind != kind:
        raise PhaseError(f"{args.recipe} is a {recipe.kind!r} recipe; use jobs/{recipe.kind}.py")
    os.environ.setdefault("RAY_ADDRESS", "auto")
    report = run_training(recipe)
    print(format_report(report), flush=True)
    if not report.get("finished") and not recipe.trainer.stop_at_step:
        raise RuntimeError(f"training did not finish (run folder {report['run_dir']})")
    out = {"phase": kind, "output": report["run_dir"], "report": f"{report['run_dir']}/{REPORT}",
           "model": report.get("model"), "model_holds": report.get("model_holds"),
           "finished": report.get("finished"), "starts": report.get("starts")}
    if report.get("final"):
        out["final_loss"] = report["final"]["loss"]
    if report.get("best_val"):
        out["best_val"] = report["best_val"]
    ev = report.get("sft_eval") or {}
    for k in ("base", "tuned"):
        if k in ev:
            out[f"{k}_rougeL"], out[f"{k}_bleu"] = ev[k]["rougeL"], ev[k]["bleu"]
    return out
