"""Evaluation phase: `lmrefinery eval MODEL ...` as a job (perplexity on text files or
tokenize splits; ROUGE-L / BLEU / exact match on an instruction split).

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/evaluate.py s3://bucket/runs/train/125m/model \
            --tokens s3://bucket/runs/pile/stages/08-tokenize:valid --out s3://bucket/eval/125m.json

Prints the table, then the `LMR_RESULT {...}` line (jobs/_common.py) with every
perplexity. Exit status: 0 done, 1 failed, 2 bad arguments.
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

    from lmrefinery.evals.cli import register

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    register(ap.add_subparsers(dest="cmd"))
    a = ap.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])

    def work() -> dict:
        import json

        from lmrefinery.core import storage
        from lmrefinery.evals.cli import _named, evaluate, format_table

        rep = evaluate(a.model, _named(a.text), _named(a.tokens), a.instruct, a.split, a.shots, a.context,
                       a.stride, a.max_docs, a.text_field, a.max_new_tokens, a.limit)
        print(format_table(rep), flush=True)
        if a.out:
            storage.write_bytes(a.out, json.dumps(rep.to_dict(), indent=1, ensure_ascii=False).encode())
        return {"phase": "eval", "output": a.out, "model": a.model,
                "perplexity": {p.name: {"ppl": p.ppl, "nats_per_token": p.nats_per_token, "tokens": p.tokens}
                               for p in rep.perplexity},
                "instruct": (rep.instruct or {}).get("by_language")}

    return _common.guarded(work, "eval")


if __name__ == "__main__":
    sys.exit(main())
