"""`lmrefinery instruct build | diff`: filter, dedup, balance, split and export a new
immutable dataset version (``build`` is also the in-process API), and compare two."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

from .common import format_arg, guarded


def register(s: argparse._SubParsersAction) -> None:
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
    format_arg(q)
    q.set_defaults(fn=guarded(cmd_build))

    q = s.add_parser("diff", help="what changed between two versions (dirs, PREFIX@VERSION or PREFIX for LATEST)")
    q.add_argument("a", help="first version (folder, PREFIX@VERSION or PREFIX for LATEST)")
    q.add_argument("b", help="second version")
    q.add_argument("--json", action="store_true", help="print the differences as JSON")
    q.add_argument("--allow-moves", action="store_true", help="exit 0 even when rows moved between train and "
                                                              "test/validation")
    q.set_defaults(fn=cmd_diff)


def build(rows: list[dict], prefix: str, *, filter_pairs: bool = True, dedup: bool = True,
          balance_by: list[str] | None = None, temperature: float = 1.0, caps: dict | None = None,
          floors: dict | None = None, upsample: bool = False, fractions: dict | None = None,
          stratify: str = "category", formats: tuple[str, ...] = ("alpaca", "messages", "parquet"),
          sep: str = "<sep>", seed: int = 0, sources: list[str] | None = None, parent: str | None = None,
          check_lang: bool = True, near_dedup: bool = False, near_threshold: float = 0.7,
          pin_splits: bool = True, normalize: bool = True) -> dict:
    """The in-process build (small and medium data; recipes do the same at scale)."""
    from ...dedup.exact import normalise_for_hash
    from ..balance import balance
    from ..filters import PairFilter
    from ..split import assign_splits, prompt_text
    from ..versioning import build_version, latest, version_dir, version_splits

    reports: dict = {"input": len(rows)}
    if normalize:
        rows, reports["normalize"] = _normalize_raw(rows)
    if filter_pairs:
        f = PairFilter(check_lang=check_lang)
        reasons: Counter[str] = Counter()
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
        from ..split import near_dup_clusters

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
    from ..normalize import LangID, load_taxonomy, normalise_row

    todo = [r for r in rows if not any("lang" in m for m in r["meta"].get("messages") or [])]
    if not todo:
        return rows, {"normalised": 0}
    lid, tax = LangID(), load_taxonomy()
    dropped: Counter[str] = Counter()
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


def cmd_build(a: argparse.Namespace) -> int:
    from ..common import load_records

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


def cmd_diff(a: argparse.Namespace) -> int:
    from ..versioning import diff, format_diff

    d = diff(a.a, a.b)
    print(json.dumps(d, indent=1, ensure_ascii=False) if a.json else format_diff(d))
    if d["leaking_moves"] and not a.allow_moves:
        print(f"lmrefinery: error: {d['leaking_moves']} rows moved between train and test/validation "
              "(--allow-moves to accept)", file=sys.stderr)
        return 1
    return 0
