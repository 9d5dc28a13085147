"""Pretraining phase: `lmrefinery train` for a `kind: pretrain` recipe, as a job.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/pretrain.py conf/train/125m-pretrain.yaml --set trainer.max_steps=5000

Runs on the cluster the job was submitted to (RAY_ADDRESS=auto unless set). Submitting
the same recipe again resumes from the run's latest checkpoint. Prints the run folder,
the exported model and the report, then the `LMR_RESULT {...}` line (jobs/_common.py).
Exit status: 0 finished (or stopped at `trainer.stop_at_step`), 1 failed or unfinished,
2 bad recipe or arguments.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
# jobs/ holds scripts named like stdlib modules (tokenize.py): keep it off the import path
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from jobs import _common  # noqa: E402


def train_main(kind: str, description: str, argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("recipe")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)

    def work() -> dict:
        from lmrefinery.train.cli import format_report
        from lmrefinery.train.config import load_train_recipe
        from lmrefinery.train.trainer import REPORT, run_training

        recipe = load_train_recipe(_common.resolve_path(a.recipe), a.overrides)
        if recipe.kind != kind:
            raise _common.PhaseError(f"{a.recipe} is a {recipe.kind!r} recipe; use jobs/{recipe.kind}.py")
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

    return _common.guarded(work, kind)


if __name__ == "__main__":
    sys.exit(train_main("pretrain", __doc__.splitlines()[0]))
