"""``lmrefinery train RECIPE [--set k=v]``."""
from __future__ import annotations

import json


def cmd_train(a) -> int:
    from .config import load_train_recipe
    from .trainer import run_training

    recipe = load_train_recipe(a.recipe, a.overrides)
    report = run_training(recipe)
    print(format_report(report))
    return 0 if report.get("finished") or recipe.trainer.stop_at_step else 1


def format_report(r: dict) -> str:
    lines = [f"run: {r['name']} ({r['kind']})", f"run folder: {r['run_dir']}",
             f"finished: {r['finished']}  starts (resumed from step): {r.get('starts')}  wall: {r.get('wall_seconds')} s"]
    if r.get("first") and r.get("final"):
        f, l = r["first"], r["final"]
        lines.append(f"loss: {f['loss']:.4f} (step {f['step']}) -> {l['loss']:.4f} (step {l['step']}); "
                     f"{l['tokens_per_s']:,.0f} tokens/s" + (f", MFU {100 * l['mfu']:.1f}%" if l.get("mfu") else ""))
    if r.get("best_val"):
        b = r["best_val"]
        lines.append(f"best validation: loss {b['val_loss']:.4f}, perplexity {b['val_ppl']:.2f} (step {b['step']})")
    if r.get("model"):
        lines.append(f"model: {r['model']}")
    if r.get("model_best"):
        lines.append(f"best model: {r['model_best']}")
    ev = r.get("sft_eval")
    if ev:
        for k in ("base", "tuned"):
            if k in ev:
                lines.append(f"{k}: ROUGE-L {ev[k]['rougeL']:.4f}  BLEU {ev[k]['bleu']:.2f}  ({ev[k]['n']} prompts)")
        for s in (ev.get("tuned") or {}).get("samples", [])[:3]:
            lines.append("  sample: " + json.dumps(s, ensure_ascii=False)[:300])
    lines.append(f"report: {r['run_dir']}/train_report.json")
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser("train", help="pretrain or instruction-tune a decoder LM on Ray Train (conf/train/*.yaml)")
    p.add_argument("recipe")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set trainer.max_steps=200 --set trainer.workers=8")
    p.set_defaults(fn=cmd_train)
