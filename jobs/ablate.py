"""Ablation phase: `lmrefinery ablate SPEC` as a job (curation variants x seeds on an
equal token budget, held-out perplexity; see lib/lmrefinery/ablate/spec.py).

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/ablate.py conf/ablate/mini.yaml --set train.tokens=50000000

Re-submitting reuses finished variants and models. Prints the summary table, then the
`LMR_RESULT {...}` line (jobs/_common.py). Exit status: 0 done, 1 failed, 2 bad spec.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
# jobs/ holds scripts named like stdlib modules (tokenize.py): keep it off the import path
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from jobs import _common  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)

    def work() -> dict:
        from lmrefinery.ablate.run import run_ablation
        from lmrefinery.ablate.spec import load_spec
        from lmrefinery.ablate.summary import summary_table

        spec = load_spec(_common.resolve_path(a.spec), a.overrides)
        os.environ.setdefault("RAY_ADDRESS", "auto")
        result = run_ablation(spec)
        print(summary_table(result["summary"], result["baseline"], result.get("reference")), flush=True)
        return {"phase": "ablate", "output": result["run_dir"], "report": result["outputs"]["html"],
                "ablation": result["outputs"]["json"],
                "summary": [{k: r.get(k) for k in ("variant", "group", "ppl", "spread", "delta_vs_baseline")}
                            for r in result["summary"]]}

    return _common.guarded(work, "ablate")


if __name__ == "__main__":
    sys.exit(main())
