"""``lmrefinery eval MODEL [--text FILE]... [--tokens DATASET[:SPLIT]]... [--instruct REF]``.

``evaluate()`` is the typed entry point for recipes, jobs and the ablation; the
command writes its ``EvalReport`` as JSON (``--out``) and prints a table."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

from .perplexity import PerplexityResult, load_model, perplexity, read_texts, split_token_docs


@dataclass
class EvalReport:
    model: str
    perplexity: list[PerplexityResult] = field(default_factory=list)
    instruct: dict | None = None

    def to_dict(self) -> dict:
        return {"model": self.model, "perplexity": [p.to_dict() for p in self.perplexity],
                "instruct": self.instruct,
                "definition": "token-weighted mean NLL over documents (nats/token); each document encoded "
                              "alone with EOS appended, scored in windows of `context` tokens every `stride` "
                              "tokens, each token once, a window's first token unscored; ppl = exp(nats/token)"}


def _split_ref(ref: str) -> tuple[str, str]:
    """DATASET[:SPLIT] -> (dataset, split); the split defaults to valid. The last ':' after
    a URI's scheme separator (s3://) starts the split."""
    head = ref.split("://", 1)
    tail = head[-1]
    if ":" in tail:
        tail, split = tail.rsplit(":", 1)
        return (head[0] + "://" + tail if len(head) == 2 else tail), split
    return ref, "valid"


def evaluate(model_dir: str, texts: dict[str, str] | None = None, tokens: dict[str, str] | None = None,
             instruct: str | None = None, instruct_split: str = "test", shots: int = 0,
             context: int | None = None, stride: int | None = None, max_docs: int | None = None,
             text_field: str = "text", max_new_tokens: int = 64, limit: int | None = None) -> EvalReport:
    """Evaluate one model. ``texts``: {name: JSONL/Parquet path}; ``tokens``: {name:
    "DATASET[:SPLIT]"} (a tokenize-stage output); ``instruct``: a dataset version (or
    an instruction JSONL) scored by generation on ``instruct_split``."""
    model, tok = load_model(model_dir)
    rep = EvalReport(model=model_dir)
    for name, path in (texts or {}).items():
        rep.perplexity.append(perplexity(model_dir, texts=read_texts(path, text_field, max_docs), name=name,
                                         context=context, stride=stride, model=model, tok=tok))
    for name, ref in (tokens or {}).items():
        src, split = _split_ref(ref)
        rep.perplexity.append(perplexity(model_dir, token_docs=split_token_docs(src, split, max_docs), name=name,
                                         context=context, stride=stride, model=model, tok=tok))
    if instruct:
        from .generation import instruction_eval

        rep.instruct = instruction_eval(model_dir, instruct, instruct_split, shots=shots, limit=limit,
                                        max_new_tokens=max_new_tokens, model=model, tok=tok)
    return rep


def format_table(rep: EvalReport) -> str:
    lines = [f"model: {rep.model}"]
    if rep.perplexity:
        lines.append(f"{'data':<28} {'docs':>6} {'tokens':>10} {'nats/token':>11} {'ppl':>10} {'ctx/stride':>11}")
        for p in rep.perplexity:
            lines.append(f"{p.name[:28]:<28} {p.docs:>6} {p.tokens:>10,} {p.nats_per_token:>11.4f} "
                         f"{p.ppl:>10.2f} {f'{p.context}/{p.stride}':>11}")
    if rep.instruct:
        lines.append(f"instructions ({rep.instruct['items']} items, {rep.instruct['shots']}-shot):")
        lines.append(f"{'lang':<8} {'n':>5} {'ROUGE-L':>8} {'BLEU':>7} {'exact':>7}")
        for lang, s in rep.instruct["by_language"].items():
            lines.append(f"{lang:<8} {s['n']:>5} {s['rougeL']:>8.4f} {s['bleu']:>7.2f} {s['exact_match']:>7.3f}")
    return "\n".join(lines)


def _named(values: list[str]) -> dict[str, str]:
    """NAME=PATH or PATH (named by its file name)."""
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or "/" in name:
            name, path = os.path.basename(v.rstrip("/")) or v, v
        out[name] = path
    return out


def cmd_eval(a) -> int:
    if not (a.text or a.tokens or a.instruct):
        print("lmrefinery eval: give --text, --tokens or --instruct", file=sys.stderr)
        return 2
    rep = evaluate(a.model, _named(a.text), _named(a.tokens), a.instruct, a.split, a.shots, a.context,
                   a.stride, a.max_docs, a.text_field, a.max_new_tokens, a.limit)
    print(format_table(rep))
    if a.out:
        from ..core import storage

        storage.write_bytes(a.out, json.dumps(rep.to_dict(), indent=1, ensure_ascii=False).encode())
        print(f"wrote {a.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("eval", help="perplexity of an HF causal LM on text or token splits; ROUGE-L/BLEU/exact "
                                    "match on an instruction split")
    add_eval_arguments(p)
    p.set_defaults(fn=cmd_eval)


def add_eval_arguments(p) -> None:
    p.add_argument("model", help="HF causal-LM directory (local or s3://), e.g. a train run's model/")
    p.add_argument("--text", action="append", default=[], metavar="[NAME=]PATH",
                   help="JSONL/Parquet file, folder or glob of documents (field --text-field)")
    p.add_argument("--tokens", action="append", default=[], metavar="[NAME=]DATASET[:SPLIT]",
                   help="a tokenize-stage output (dataset.json or its folder) and split (default valid)")
    p.add_argument("--instruct", help="instruction dataset version (dir, PREFIX@VERSION) or JSONL to score")
    p.add_argument("--split", default="test", help="split of --instruct (default test)")
    p.add_argument("--shots", type=int, default=0, help="few-shot examples from the train split (default 0)")
    p.add_argument("--limit", type=int, help="score at most this many instruction items")
    p.add_argument("--max-new-tokens", type=int, default=64, help="generation length (default 64)")
    p.add_argument("--context", type=int, help="window length in tokens (default min(1024, model maximum))")
    p.add_argument("--stride", type=int, help="window step in tokens (default: the context length)")
    p.add_argument("--max-docs", type=int, help="score at most this many documents per data set")
    p.add_argument("--text-field", default="text", help="field of the text in --text files (default text)")
    p.add_argument("--out", help="write the report as JSON here (local or s3://)")
