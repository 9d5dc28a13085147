"""`lmrefinery instruct augment | score | filter`: variants of existing instruction
data, quality scores as columns, and the pair filters with their reasons."""
from __future__ import annotations

import argparse
from collections import Counter

from ..backends import Backend
from .common import backend_args, format_arg, gen_params, guarded, make_backend_from_args, write_outputs


def register(s: argparse._SubParsersAction) -> None:
    q = s.add_parser("augment", help="paraphrase / expand / back-translate / synonym substitution")
    q.add_argument("--input", required=True, help="instruction records to augment")
    q.add_argument("--kind", required=True, choices=["paraphrase", "expand", "back_translation", "synonyms"],
                   help="augmentation kind")
    q.add_argument("--dictionary", help="synonyms: word<TAB>syn1,syn2 file instead of the shipped lexicons")
    q.add_argument("--vectors", action="store_true", help="synonyms: fastText neighbours trained on the input "
                   "(the old behaviour; spelling neighbours, not synonyms - prefer the shipped lexicons)")
    q.add_argument("--variants", type=int, default=1, help="variants per row (different seeds)")
    q.add_argument("--translator", action="append", default=[], metavar="en-zh=DIR",
                   help="back_translation through local seq2seq models instead of a chat backend")
    q.add_argument("--rate", type=float, default=0.15, help="synonyms: share of eligible words swapped")
    q.add_argument("--limit", type=int, help="augment at most this many records")
    q.add_argument("--seed", type=int, default=0, help="seed for word choice and generation")
    q.add_argument("--out", required=True,
                   help="output JSON Lines with the new variants (gated, each linked to its parent)")
    backend_args(q)
    format_arg(q)
    q.set_defaults(fn=guarded(cmd_augment))

    q = s.add_parser("score", help="instruction-quality scores: IFD with a local causal LM, an LLM judge")
    q.add_argument("--input", required=True, help="instruction records to score")
    q.add_argument("--ifd-model", help="local HF causal LM directory for Instruction-Following Difficulty")
    q.add_argument("--max-len", type=int, default=1024,
                   help="IFD: longest tokenised prompt + response; longer pairs are cut from the left")
    q.add_argument("--judge", action="store_true", help="rate each pair 1-5 through the backend")
    q.add_argument("--limit", type=int, help="score at most this many records")
    q.add_argument("--out", required=True, help="output JSON Lines with the scores in meta")
    backend_args(q)
    format_arg(q)
    q.set_defaults(fn=guarded(cmd_score))

    q = s.add_parser("filter", help="pair filters with reasons")
    q.add_argument("--input", required=True, help="instruction records to filter")
    q.add_argument("--no-lang", action="store_true",
                   help="skip the language-consistency check between prompt and response")
    q.add_argument("--max-ifd", type=float, help="reject rows with meta.ifd >= this (see instruct score)")
    q.add_argument("--min-judge-score", type=float, help="reject rows with meta.judge_score below this")
    q.add_argument("--out", required=True,
                   help="output JSON Lines of kept records (rejects go next to it with their reasons)")
    format_arg(q)
    q.set_defaults(fn=guarded(cmd_filter))


def cmd_augment(a: argparse.Namespace) -> int:
    from ..augment import Seq2SeqTranslator, SynonymModel, lexicon_augment, llm_augment, synonym_augment
    from ..common import load_records, messages

    rows = load_records(a.input, a.format)[: a.limit or None]
    stats: dict = {}
    if a.kind == "synonyms" and not (a.dictionary or a.vectors):
        recs, rej = lexicon_augment(rows, rate=a.rate, seed=a.seed, n_variants=a.variants)
    elif a.kind == "synonyms":
        if a.dictionary:
            model = SynonymModel.from_dictionary(a.dictionary)
        else:
            texts = [m.get("content") or "" for r in rows for m in messages(r)]
            model = SynonymModel.train(texts)
        recs, rej = synonym_augment(rows, model, rate=a.rate, seed=a.seed)
    else:
        backend: Backend | Seq2SeqTranslator
        if a.translator:
            if a.kind != "back_translation":
                raise SystemExit("lmrefinery: error: --translator is for --kind back_translation")
            backend = Seq2SeqTranslator(dict(x.split("=", 1) for x in a.translator))
        else:
            backend = make_backend_from_args(a, a.out)
        try:
            recs, rej = llm_augment(rows, backend, a.kind, gen_params(a, {"temperature": 0.7, "max_tokens": 256}),
                                    n_variants=a.variants, seed=a.seed)
        finally:
            stats = getattr(backend, "stats", {})
            backend.close()

    write_outputs(a.out, recs, rej, {"augmented": len(recs), "rejected": len(rej),
                                      "reasons": dict(Counter(x["reason"] for x in rej)), "backend": stats})
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from ..common import load_records
    from ..scoring import IFDScorer, judge_scores, with_scores

    rows = load_records(a.input, a.format)[: a.limit or None]
    stats: dict = {"rows": len(rows)}
    if a.ifd_model:
        rows = with_scores(rows, IFDScorer(a.ifd_model, a.max_len).score(rows))
        got = [r["meta"]["ifd"] for r in rows if r["meta"].get("ifd") is not None]
        stats["ifd"] = {"scored": len(got), "median": sorted(got)[len(got) // 2] if got else None,
                        "at_least_1": sum(1 for x in got if x >= 1.0)}
    if a.judge:
        backend = make_backend_from_args(a, a.out)
        try:
            rows = with_scores(rows, judge_scores(rows, backend, gen_params(a, {"temperature": 0.0,
                                                                                  "max_tokens": 8})))
        finally:
            stats["backend"] = getattr(backend, "stats", {})
            backend.close()
        stats["judge_score"] = dict(Counter(str(r["meta"].get("judge_score")) for r in rows))
    if not (a.ifd_model or a.judge):
        raise SystemExit("lmrefinery: error: give --ifd-model DIR and/or --judge (with a backend)")
    write_outputs(a.out, rows, [], stats)
    return 0


def cmd_filter(a: argparse.Namespace) -> int:
    from ..common import load_records
    from ..filters import PairFilter

    rows = load_records(a.input, a.format)
    f = PairFilter(check_lang=not a.no_lang, max_ifd=a.max_ifd, min_judge_score=a.min_judge_score)
    kept, rejects = [], []
    for r in rows:
        why = f(r)
        if why:
            rejects.append({**r, "reject_reason": why})
        else:
            kept.append(r)

    write_outputs(a.out, kept, rejects, {"kept": len(kept), "rejected": dict(Counter(x["reject_reason"]
                                                                                     for x in rejects))})
    return 0
