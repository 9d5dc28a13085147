"""`lmrefinery instruct ...` commands.

  serve MODEL_DIR --port P          OpenAI-compatible server over a local HF model
  construct --table T --task K      task table -> instruction pairs (templates)
  self-instruct --seeds S           Self-Instruct rounds through a backend
  evol --input R                    Evol-Instruct generations through a backend
  augment --input R --kind K        paraphrase | expand | back_translation | synonyms
  score --input R --ifd-model M     IFD (local causal LM) and/or --judge (backend) scores as columns
  filter --input R                  pair filters, rejects with reasons
  build --input R --prefix P        filter, prompt dedup, balance, split, export -> a new version
  diff A B                          what changed between two versions
Records files are JSONL document rows (``{"id","text","source","lang","meta":{"messages":[...]}}``)
or the Parquet parts a recipe stage wrote.
"""
from __future__ import annotations

import json
import os
import sys


def _guarded(fn):
    """An unreadable input file is exit 2 with its name, not a traceback or an empty success."""
    import functools

    @functools.wraps(fn)
    def run(a) -> int:
        from .common import UnreadableInput

        try:
            return fn(a)
        except UnreadableInput as e:
            import sys

            print(f"lmrefinery: error: {e}", file=sys.stderr)
            return 2
    return run


def _format_arg(q) -> None:
    q.add_argument("--format", default="auto", help="input format: auto (sniffed from the first record), rows, "
                   "alpaca, alpaca_bilingual, belle, dolly, self_instruct, sharegpt, openai_messages")


def _backend_args(p) -> None:
    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=["openai", "transformers", "ray", "vllm"], default=None,
                   help="default: openai when --base-url is given, else transformers; ray = Ray Data "
                        "actors running the transformers engine, vllm = Ray Data actors running vLLM")
    g.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model", help="model name sent to the server")
    g.add_argument("--model-dir", help="local HF model directory (transformers / ray / vllm)")
    g.add_argument("--actors", type=int, default=1, help="ray / vllm: model-holding actors")
    g.add_argument("--gpus-per-actor", type=float, default=None, help="ray / vllm: default 1 for vllm, 0 otherwise")
    g.add_argument("--batch-size", type=int, default=64, help="ray / vllm: prompts per actor call")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    g.add_argument("--concurrency", type=int, default=8, help="parallel requests to the server")
    g.add_argument("--rpm", type=float, default=None, help="max requests per minute")
    g.add_argument("--max-retries", type=int, default=5, help="attempts per prompt on a server error or time-out")
    g.add_argument("--cache", help="response cache (SQLite); default <out>.cache.sqlite")
    g.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the command's own)")
    g.add_argument("--max-tokens", type=int, default=None,
                   help="longest generated reply in tokens (default: the command's own)")


def make_backend_from_args(a, out: str):
    from .backends import make_backend

    kind = a.backend or ("openai" if a.base_url else "transformers")
    if kind == "openai":
        if not a.base_url or not a.model:
            raise SystemExit("lmrefinery: error: --base-url and --model are needed for the openai backend")
        spec = dict(type="openai", base_url=a.base_url, model=a.model, api_key_env=a.api_key_env,
                    concurrency=a.concurrency, requests_per_minute=a.rpm, max_retries=a.max_retries)
    else:
        if not a.model_dir:
            raise SystemExit(f"lmrefinery: error: --model-dir is needed for the {kind} backend")
        spec = dict(type=kind, model_dir=a.model_dir)
        if kind in ("ray", "vllm"):
            spec.update(engine="vllm" if kind == "vllm" else "transformers", concurrency=a.actors,
                        num_gpus_per_actor=a.gpus_per_actor, batch_size=a.batch_size)
    cache = a.cache or (out + ".cache.sqlite")
    return make_backend(spec, cache_path=cache)


def _gen_params(a, defaults: dict) -> dict:
    d = dict(defaults)
    if a.temperature is not None:
        d["temperature"] = a.temperature
    if a.max_tokens is not None:
        d["max_tokens"] = a.max_tokens
    return d


def _write_outputs(out: str, records: list[dict], rejects: list[dict], stats: dict) -> None:
    from .common import write_jsonl

    write_jsonl(out, records)
    write_jsonl(out + ".rejects.jsonl", rejects)
    with open(out + ".stats.json", "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1, sort_keys=True, ensure_ascii=False)
    print(json.dumps(stats, ensure_ascii=False, sort_keys=True))


def cmd_serve(a) -> int:
    from .server import ServeError, serve

    try:
        serve(a.model_dir, host=a.host, port=a.port, model_name=a.model_name, api_key_env=a.api_key_env,
              ready_file=a.ready_file)
    except ServeError as e:
        print(f"lmrefinery: error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_construct(a) -> int:
    from .common import load_records, read_jsonl
    from .templates import construct

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
    _write_outputs(a.out, recs, rejects, {"constructed": len(recs), "rejected": len(rejects)})
    return 0


def cmd_self_instruct(a) -> int:
    from .self_instruct import SelfInstructConfig, load_seed_tasks, run_self_instruct

    seeds = load_seed_tasks(a.seeds)
    cfg = SelfInstructConfig(lang=a.lang, rounds=a.rounds, num_prompts=a.prompts, seed=a.seed, source=a.source)
    cfg.gen_params = _gen_params(a, cfg.gen_params)
    backend = make_backend_from_args(a, a.out)
    try:
        res = run_self_instruct(seeds, backend, cfg)
    finally:
        stats = getattr(backend, "stats", {})
        backend.close()
    _write_outputs(a.out, res.records, res.rejects, {**res.stats, "backend": stats})
    return 0


def cmd_evol(a) -> int:
    from .common import load_records
    from .evol import EvolConfig, evolve

    rows = load_records(a.input, a.format)[: a.limit or None]
    cfg = EvolConfig(depth=a.depth, judge=a.judge, seed=a.seed)
    cfg.evolve_params = _gen_params(a, cfg.evolve_params)
    backend = make_backend_from_args(a, a.out)
    try:
        kept, rejects, stats = evolve(rows, backend, cfg)
    finally:
        bstats = getattr(backend, "stats", {})
        backend.close()
    _write_outputs(a.out, kept, rejects, {**stats, "backend": bstats})
    return 0


def cmd_augment(a) -> int:
    from .augment import Seq2SeqTranslator, SynonymModel, lexicon_augment, llm_augment, synonym_augment
    from .common import load_records, messages

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
        if a.translator:
            if a.kind != "back_translation":
                raise SystemExit("lmrefinery: error: --translator is for --kind back_translation")
            backend = Seq2SeqTranslator(dict(x.split("=", 1) for x in a.translator))
        else:
            backend = make_backend_from_args(a, a.out)
        try:
            recs, rej = llm_augment(rows, backend, a.kind, _gen_params(a, {"temperature": 0.7, "max_tokens": 256}),
                                    n_variants=a.variants, seed=a.seed)
        finally:
            stats = getattr(backend, "stats", {})
            backend.close()
    from collections import Counter

    _write_outputs(a.out, recs, rej, {"augmented": len(recs), "rejected": len(rej),
                                      "reasons": dict(Counter(x["reason"] for x in rej)), "backend": stats})
    return 0


def cmd_score(a) -> int:
    from collections import Counter

    from .common import load_records
    from .scoring import IFDScorer, judge_scores, with_scores

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
            rows = with_scores(rows, judge_scores(rows, backend, _gen_params(a, {"temperature": 0.0,
                                                                                  "max_tokens": 8})))
        finally:
            stats["backend"] = getattr(backend, "stats", {})
            backend.close()
        stats["judge_score"] = dict(Counter(str(r["meta"].get("judge_score")) for r in rows))
    if not (a.ifd_model or a.judge):
        raise SystemExit("lmrefinery: error: give --ifd-model DIR and/or --judge (with a backend)")
    _write_outputs(a.out, rows, [], stats)
    return 0


def cmd_filter(a) -> int:
    from .common import load_records
    from .filters import PairFilter

    rows = load_records(a.input, a.format)
    f = PairFilter(check_lang=not a.no_lang, max_ifd=a.max_ifd, min_judge_score=a.min_judge_score)
    kept, rejects = [], []
    for r in rows:
        why = f(r)
        if why:
            rejects.append({**r, "reject_reason": why})
        else:
            kept.append(r)
    from collections import Counter

    _write_outputs(a.out, kept, rejects, {"kept": len(kept), "rejected": dict(Counter(x["reject_reason"]
                                                                                     for x in rejects))})
    return 0


def build(rows: list[dict], prefix: str, *, filter_pairs: bool = True, dedup: bool = True,
          balance_by: list[str] | None = None, temperature: float = 1.0, caps: dict | None = None,
          floors: dict | None = None, upsample: bool = False, fractions: dict | None = None,
          stratify: str = "category", formats: tuple[str, ...] = ("alpaca", "messages", "parquet"),
          sep: str = "<sep>", seed: int = 0, sources: list[str] | None = None, parent: str | None = None,
          check_lang: bool = True, near_dedup: bool = False, near_threshold: float = 0.7,
          pin_splits: bool = True, normalize: bool = True) -> dict:
    """The in-process build (small and medium data; recipes do the same at scale)."""
    from collections import Counter

    from ..dedup.exact import normalise_for_hash
    from .balance import balance
    from .filters import PairFilter
    from .split import assign_splits, prompt_text
    from .versioning import build_version, latest, version_dir, version_splits

    reports: dict = {"input": len(rows)}
    if normalize:
        rows, reports["normalize"] = _normalize_raw(rows)
    if filter_pairs:
        f = PairFilter(check_lang=check_lang)
        reasons = Counter()
        kept = []
        for r in rows:
            why = f(r)
            if why:
                reasons[why] += 1
            else:
                kept.append(r)
        rows = kept
        reports["filter"] = dict(reasons)
    if dedup:
        seen, kept, dups = set(), [], 0
        for r in sorted(rows, key=lambda r: r["id"]):
            k = normalise_for_hash(prompt_text(r))
            if k in seen:
                dups += 1
                continue
            seen.add(k)
            kept.append(r)
        rows = kept
        reports["dedup"] = {"exact_prompt_duplicates": dups}
    else:
        reports["dedup"] = {}
    if near_dedup:
        from .split import near_dup_clusters

        ordered = sorted(rows, key=lambda r: r["id"])
        cl = near_dup_clusters([prompt_text(r) for r in ordered], near_threshold)
        rows = [r for i, r in enumerate(ordered) if cl[i] == i]
        reports["dedup"]["near_duplicates"] = len(ordered) - len(rows)
    if balance_by:
        rows, reports["balance"] = balance(rows, balance_by, temperature, caps, floors, None, upsample, seed)
    previous = None
    pin_to = parent or latest(prefix)
    if pin_splits and pin_to:
        previous = version_splits(version_dir(prefix, pin_to))
    rows, reports["split"] = assign_splits(rows, fractions, stratify, seed, previous=previous)
    params = {"filter": filter_pairs, "dedup": dedup, "balance_by": balance_by, "temperature": temperature,
              "caps": caps, "floors": floors, "upsample": upsample, "fractions": fractions, "stratify": stratify,
              "seed": seed, "check_lang": check_lang, "near_dedup": near_dedup, "near_threshold": near_threshold,
              "normalize": normalize}
    return build_version(rows, prefix, recipe=params, sources=sources, parent=parent, formats=formats, sep=sep,
                         reports=reports)


def _normalize_raw(rows: list[dict]) -> tuple[list[dict], dict]:
    """Rows read from raw files get what instruct_normalize gives in a recipe (language per
    turn, taxonomy category, provenance); rows already normalised are left alone."""
    from collections import Counter

    from .normalize import LangID, load_taxonomy, normalise_row

    todo = [r for r in rows if not any("lang" in m for m in r["meta"].get("messages") or [])]
    if not todo:
        return rows, {"normalised": 0}
    lid, tax = LangID(), load_taxonomy()
    dropped = Counter()
    keep_ids = set()
    for r in todo:
        why = normalise_row(r, lid, tax)
        if why:
            dropped[why] += 1
        else:
            keep_ids.add(r["id"])
    todo_ids = {r["id"] for r in todo}
    out = [r for r in rows if r["id"] not in todo_ids or r["id"] in keep_ids]
    return out, {"normalised": len(keep_ids), "rejected": dict(dropped)}


def _kv_ints(items: list[str]) -> dict:
    return {k: int(v) for k, v in (x.split("=", 1) for x in items)}


def cmd_build(a) -> int:
    from .common import load_records

    rows = []
    for p in a.input:
        rows.extend(load_records(p, a.format))
    fractions = None
    if a.fractions:
        fractions = {k: float(v) for k, v in (x.split("=", 1) for x in a.fractions.split(","))}
    m = build(rows, a.prefix, filter_pairs=not a.no_filter, dedup=not a.no_dedup,
              balance_by=a.balance_by.split(",") if a.balance_by else None, temperature=a.temperature,
              caps=_kv_ints(a.cap), floors=_kv_ints(a.floor), upsample=a.upsample, fractions=fractions,
              formats=tuple(a.formats.split(",")), sep=a.sep, seed=a.seed, sources=a.input, check_lang=not a.no_lang,
              near_dedup=a.near_dedup, pin_splits=not a.no_pin)
    print(json.dumps({k: m[k] for k in ("version", "parent", "records", "counts")}, ensure_ascii=False, indent=1))
    reused = " (unchanged, reused)" if m.get("reused") else ""
    print(f"version: {os.path.join(a.prefix, 'versions', m['version'])}{reused}")
    return 0


def cmd_diff(a) -> int:
    from .versioning import diff, format_diff

    d = diff(a.a, a.b)
    print(json.dumps(d, indent=1, ensure_ascii=False) if a.json else format_diff(d))
    if d["leaking_moves"] and not a.allow_moves:
        print(f"lmrefinery: error: {d['leaking_moves']} rows moved between train and test/validation "
              "(--allow-moves to accept)", file=__import__("sys").stderr)
        return 1
    return 0


def register(sub) -> None:
    p = sub.add_parser("instruct", help="instruction data: construct, generate, augment, filter, build versions")
    s = p.add_subparsers(dest="instruct_cmd", required=True)

    q = s.add_parser("serve", help="OpenAI-compatible chat-completions server over a local HF model")
    q.add_argument("model_dir", help="a local Hugging Face causal-LM folder")
    q.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    q.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    q.add_argument("--model-name", help="model id reported by /v1/models (default: the folder name)")
    q.add_argument("--api-key-env", help="require this env var's value as the bearer token")
    q.add_argument("--ready-file", help="write the bound port here once listening")
    q.set_defaults(fn=cmd_serve)

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
    _format_arg(q)
    q.set_defaults(fn=_guarded(cmd_construct))

    q = s.add_parser("self-instruct", help="Self-Instruct rounds from seed tasks")
    q.add_argument("--seeds", required=True, help="seed tasks JSONL (Self-Instruct / BELLE format)")
    q.add_argument("--lang", default="en", choices=["en", "zh"], help="language of the generation prompts")
    q.add_argument("--rounds", type=int, default=1,
                   help="generation rounds; each round also samples from the tasks made before")
    q.add_argument("--prompts", type=int, default=8, help="prompts per round")
    q.add_argument("--seed", type=int, default=0, help="seed for sampling the in-context examples")
    q.add_argument("--source", default="self_instruct", help="provenance recorded in each row's meta.source")
    q.add_argument("--out", required=True, help="output JSON Lines of generated records")
    _backend_args(q)
    q.set_defaults(fn=_guarded(cmd_self_instruct))

    q = s.add_parser("evol", help="Evol-Instruct in-depth / in-breadth evolution")
    q.add_argument("--input", required=True,
                   help="instruction records to evolve (JSONL, Parquet or a raw dataset file)")
    q.add_argument("--depth", type=int, default=1, help="evolution steps per record")
    q.add_argument("--judge", action="store_true", help="ask the model whether parent and child are equal")
    q.add_argument("--limit", type=int, help="evolve at most this many records")
    q.add_argument("--seed", type=int, default=0, help="seed for choosing the evolution operation")
    q.add_argument("--out", required=True, help="output JSON Lines of parents and evolved children")
    _backend_args(q)
    _format_arg(q)
    q.set_defaults(fn=_guarded(cmd_evol))

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
    _backend_args(q)
    _format_arg(q)
    q.set_defaults(fn=_guarded(cmd_augment))

    q = s.add_parser("score", help="instruction-quality scores: IFD with a local causal LM, an LLM judge")
    q.add_argument("--input", required=True, help="instruction records to score")
    q.add_argument("--ifd-model", help="local HF causal LM directory for Instruction-Following Difficulty")
    q.add_argument("--max-len", type=int, default=1024,
                   help="IFD: longest tokenised prompt + response; longer pairs are cut from the left")
    q.add_argument("--judge", action="store_true", help="rate each pair 1-5 through the backend")
    q.add_argument("--limit", type=int, help="score at most this many records")
    q.add_argument("--out", required=True, help="output JSON Lines with the scores in meta")
    _backend_args(q)
    _format_arg(q)
    q.set_defaults(fn=_guarded(cmd_score))

    q = s.add_parser("filter", help="pair filters with reasons")
    q.add_argument("--input", required=True, help="instruction records to filter")
    q.add_argument("--no-lang", action="store_true",
                   help="skip the language-consistency check between prompt and response")
    q.add_argument("--max-ifd", type=float, help="reject rows with meta.ifd >= this (see instruct score)")
    q.add_argument("--min-judge-score", type=float, help="reject rows with meta.judge_score below this")
    q.add_argument("--out", required=True,
                   help="output JSON Lines of kept records (rejects go next to it with their reasons)")
    _format_arg(q)
    q.set_defaults(fn=_guarded(cmd_filter))

    q = s.add_parser("build", help="filter, dedup, balance, split and write a new immutable version")
    q.add_argument("--input", nargs="+", required=True, help="instruction files (JSONL, Parquet, or raw dataset files)")
    q.add_argument("--prefix", required=True,
                   help="dataset prefix (local path or s3://); versions go under PREFIX/versions/")
    q.add_argument("--no-filter", action="store_true", help="do not run the pair filters")
    q.add_argument("--no-dedup", action="store_true", help="do not drop exact duplicate prompts")
    q.add_argument("--no-lang", action="store_true", help="skip the language-consistency check")
    q.add_argument("--near-dedup", action="store_true", help="also drop MinHash near duplicates of prompts")
    q.add_argument("--balance-by", help="e.g. category or category,lang")
    q.add_argument("--temperature", type=float, default=1.0,
                   help="balance temperature: group share ~ n^(1/T); 1 keeps the mix, larger flattens it")
    q.add_argument("--cap", action="append", default=[], metavar="GROUP=N", help="'*=N' for every group")
    q.add_argument("--floor", action="append", default=[], metavar="GROUP=N",
                   help="minimum rows per group (see --upsample)")
    q.add_argument("--upsample", action="store_true", help="meet floors by repeating rows")
    q.add_argument("--fractions", help="e.g. train=0.9,validation=0.05,test=0.05")
    q.add_argument("--formats", default="alpaca,messages,parquet",
                   help="comma-separated exports: alpaca, messages, parquet, json, csv, txt")
    q.add_argument("--sep", default="<sep>", help="separator between prompt and response in txt exports")
    q.add_argument("--seed", type=int, default=0, help="seed for balancing (splits use a stable hash, not this seed)")
    q.add_argument("--no-pin", action="store_true", help="do not keep the splits of rows already in LATEST")
    _format_arg(q)
    q.set_defaults(fn=_guarded(cmd_build))

    q = s.add_parser("diff", help="what changed between two versions (dirs, PREFIX@VERSION or PREFIX for LATEST)")
    q.add_argument("a", help="first version (folder, PREFIX@VERSION or PREFIX for LATEST)")
    q.add_argument("b", help="second version")
    q.add_argument("--json", action="store_true", help="print the differences as JSON")
    q.add_argument("--allow-moves", action="store_true", help="exit 0 even when rows moved between train and "
                                                              "test/validation")
    q.set_defaults(fn=cmd_diff)
