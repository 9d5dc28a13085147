"""The measuring phases of ``lmrefinery job``: ``eval`` (perplexity / ROUGE-L / BLEU /
exact match of a model, lmrefinery/evals) and ``ablate`` (curation variants x seeds on an
equal token budget, lmrefinery/ablate). Each returns the LMR_RESULT fields."""
from __future__ import annotations

import json
import os
from typing import Any

from .protocol import PhaseError


def eval_phase(a: Any) -> dict[str, Any]:
    from ..core import storage
    from ..evals.cli import _named, evaluate, format_table

    if not (a.text or a.tokens or a.instruct):
        raise PhaseError("eval: give --text, --tokens or --instruct")
    rep = evaluate(a.model, _named(a.text), _named(a.tokens), a.instruct, a.split, a.shots, a.context,
                   a.stride, a.max_docs, a.text_field, a.max_new_tokens, a.limit)
    print(format_table(rep), flush=True)
    if a.out:
        storage.write_bytes(a.out, json.dumps(rep.to_dict(), indent=1, ensure_ascii=False).encode())
    return {"phase": "eval", "output": a.out, "model": a.model,
            "perplexity": {p.name: {"ppl": p.ppl, "nats_per_token": p.nats_per_token, "tokens": p.tokens}
                           for p in rep.perplexity},
            "instruct": (rep.instruct or {}).get("by_language")}


def ablate_phase(a: Any) -> dict[str, Any]:
    from ..ablate.run import run_ablation
    from ..ablate.spec import load_spec
    from ..ablate.summary import summary_table
    from .phases import resolve_path

    overrides = list(a.overrides) + ([f"recipe={a.recipe}"] if a.recipe else [])
    spec = load_spec(resolve_path(a.spec, a.root), overrides)
    os.environ.setdefault("RAY_ADDRESS", "auto")   # a submitted job runs on the cluster it was sent to
    result = run_ablation(spec, engine=a.engine, phase=a.phase)
    if a.phase == "curate":
        return {"phase": "ablate", "output": result["run_dir"],
                "curated": os.path.join(result["run_dir"], "curated.json"),
                "variants": [{k: v[k] for k in ("name", "documents", "tokens")} for v in result["variants"]]}
    print(summary_table(result["summary"], result["baseline"], result.get("reference")), flush=True)
    return {"phase": "ablate", "output": result["run_dir"], "report": result["outputs"]["html"],
            "ablation": result["outputs"]["json"],
            "summary": [{k: r.get(k) for k in ("variant", "group", "ppl", "spread", "delta_vs_baseline")}
                        for r in result["summary"]]}
