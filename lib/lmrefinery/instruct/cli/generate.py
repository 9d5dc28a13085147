"""`lmrefinery instruct construct | self-instruct | evol`: new instruction data from
task tables (templates) or through a generation backend."""
from __future__ import annotations

import argparse

from .common import backend_args, format_arg, gen_params, guarded, make_backend_from_args, write_outputs


def register(s: argparse._SubParsersAction) -> None:
    q = s.add_parser("construct", help="task table -> instruction pairs through Jinja templates")
    q.add_argument("--table", required=True, help="JSONL rows with the task's columns, or records")
    q.add_argument("--task", required=True,
                   help="shipped template set: classification, dialogue, extractive_qa, nli, "
                        "summarization, translation")
    q.add_argument("--lang", default="en", help="template language: en or zh")
    q.add_argument("--column", action="append", default=[], metavar="TASKCOL=FIELD",
                   help="map a task column to a field of the table")
    q.add_argument("--labels", help="comma-separated label set (classification/NLI)")
    q.add_argument("--templates", action="append", default=[], help="extra template folder")
    q.add_argument("--source", default="tasks", help="provenance recorded in each row's meta.source")
    q.add_argument("--seed", type=int, default=0, help="seed for template choice and label shuffling")
    q.add_argument("--out", required=True, help="output JSON Lines of instruction records")
    format_arg(q)
    q.set_defaults(fn=guarded(cmd_construct))

    q = s.add_parser("self-instruct", help="Self-Instruct rounds from seed tasks")
    q.add_argument("--seeds", required=True, help="seed tasks JSONL (Self-Instruct / BELLE format)")
    q.add_argument("--lang", default="en", choices=["en", "zh"], help="language of the generation prompts")
    q.add_argument("--rounds", type=int, default=1,
                   help="generation rounds; each round also samples from the tasks made before")
    q.add_argument("--prompts", type=int, default=8, help="prompts per round")
    q.add_argument("--seed", type=int, default=0, help="seed for sampling the in-context examples")
    q.add_argument("--source", default="self_instruct", help="provenance recorded in each row's meta.source")
    q.add_argument("--out", required=True, help="output JSON Lines of generated records")
    backend_args(q)
    q.set_defaults(fn=guarded(cmd_self_instruct))

    q = s.add_parser("evol", help="Evol-Instruct in-depth / in-breadth evolution")
    q.add_argument("--input", required=True,
                   help="instruction records to evolve (JSONL, Parquet or a raw dataset file)")
    q.add_argument("--depth", type=int, default=1, help="evolution steps per record")
    q.add_argument("--judge", action="store_true", help="ask the model whether parent and child are equal")
    q.add_argument("--limit", type=int, help="evolve at most this many records")
    q.add_argument("--seed", type=int, default=0, help="seed for choosing the evolution operation")
    q.add_argument("--out", required=True, help="output JSON Lines of parents and evolved children")
    backend_args(q)
    format_arg(q)
    q.set_defaults(fn=guarded(cmd_evol))


def cmd_construct(a: argparse.Namespace) -> int:
    from ..common import load_records, read_jsonl
    from ..templates import construct

    path = a.table
    if path.endswith(".jsonl"):
        rows = [{"id": str(r.get("id", i)), "source": a.source, "meta": r} for i, r in enumerate(read_jsonl(path))]
    else:
        rows = load_records(path, a.format)
    cols = dict(kv.split("=", 1) for kv in a.column)
    labels = a.labels.split(",") if a.labels else None
    recs, rej = construct(rows, a.task, a.lang, seed=a.seed, columns=cols, label_set=labels,
                          template_dirs=tuple(a.templates), source=a.source)
    rejects = [{"id": r.get("id"), "reason": why} for r, why in rej]
    write_outputs(a.out, recs, rejects, {"constructed": len(recs), "rejected": len(rejects)})
    return 0


def cmd_self_instruct(a: argparse.Namespace) -> int:
    from ..self_instruct import SelfInstructConfig, load_seed_tasks, run_self_instruct

    seeds = load_seed_tasks(a.seeds)
    cfg = SelfInstructConfig(lang=a.lang, rounds=a.rounds, num_prompts=a.prompts, seed=a.seed, source=a.source)
    cfg.gen_params = gen_params(a, cfg.gen_params)
    backend = make_backend_from_args(a, a.out)
    try:
        res = run_self_instruct(seeds, backend, cfg)
    finally:
        stats = getattr(backend, "stats", {})
        backend.close()
    write_outputs(a.out, res.records, res.rejects, {**res.stats, "backend": stats})
    return 0


def cmd_evol(a: argparse.Namespace) -> int:
    from ..common import load_records
    from ..evol import EvolConfig, evolve

    rows = load_records(a.input, a.format)[: a.limit or None]
    cfg = EvolConfig(depth=a.depth, judge=a.judge, seed=a.seed)
    cfg.evolve_params = gen_params(a, cfg.evolve_params)
    backend = make_backend_from_args(a, a.out)
    try:
        kept, rejects, stats = evolve(rows, backend, cfg)
    finally:
        bstats = getattr(backend, "stats", {})
        backend.close()
    write_outputs(a.out, kept, rejects, {**stats, "backend": bstats})
    return 0
