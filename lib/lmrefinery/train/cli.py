"""``lmrefinery train RECIPE [--set k=v]``."""
from __future__ import annotations

import json


def cmd_train(a) -> int:
    from .config import load_train_recipe
    from .trainer import run_training

    overrides = list(a.overrides) + ([f"trainer.keep={a.keep}"] if a.keep else [])
    recipe = load_train_recipe(a.recipe, overrides)
    report = run_training(recipe)
    print(format_report(report))
    return 0 if report.get("finished") or recipe.trainer.stop_at_step else 1


def format_report(r: dict) -> str:
    lines = [f"run: {r['name']} ({r['kind']})", f"run folder: {r['run_dir']}",
             f"finished: {r['finished']}  starts (resumed from step): {r.get('starts')}  "
             f"wall: {r.get('wall_seconds')} s"]
    if r.get("first") and r.get("final"):
        first, last = r["first"], r["final"]
        lines.append(f"loss: {first['loss']:.4f} (step {first['step']}) -> {last['loss']:.4f} (step {last['step']}); "
                     f"{last['tokens_per_s']:,.0f} tokens/s"
                     + (f", MFU {100 * last['mfu']:.1f}%" if last.get("mfu") else ""))
    if r.get("best_val"):
        b = r["best_val"]
        lines.append(f"best validation: loss {b['val_loss']:.4f}, perplexity {b['val_ppl']:.2f} (step {b['step']})")
    if r.get("model"):
        lines.append(f"model: {r['model']}  ({holds_text(r.get('model_holds'))})")
    other = (r.get("model_holds") or {}).get("other")
    if other:
        lines.append(f"{other['weights']} weights (step {other['step']}): {other['path']}")
    elif r.get("model_best"):
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


def holds_text(h: dict | None) -> str:
    """Which weights model/ holds, in words."""
    if not h:
        return "last step"
    what = "best validation loss" if h["weights"] == "best" else "last step"
    text = f"holds the {what}: step {h.get('step')}"
    if h.get("best_val_loss") is not None and h["weights"] == "last" and h.get("best_step") != h.get("step"):
        text += f"; validation loss was best at step {h.get('best_step')} ({h['best_val_loss']:.4f}); --keep best"
    if h.get("note"):
        text += f"; {h['note']}"
    return text


def register(sub) -> None:
    p = sub.add_parser("train", help="pretrain or instruction-tune a decoder LM on Ray Train (conf/train/*.yaml)")
    p.add_argument("recipe", help="training recipe YAML (conf/train/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set trainer.max_steps=200 --set trainer.workers=8")
    p.add_argument("--keep", choices=["best", "last"],
                   help="which weights model/ holds: the last step's (default; best go to model-best/) or the "
                        "best-by-validation ones (last go to model-last/); same as --set trainer.keep=...")
    p.set_defaults(fn=cmd_train)
