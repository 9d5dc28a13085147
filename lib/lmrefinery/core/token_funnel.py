"""Tokens through the funnel: how many tokens of the run's own tokenizer every stage
received, kept and rejected, written into each stage's row of stats.json as ``tokens``
next to ``chars``.

Counted after the run, once the tokenize stage has its tokenizer, on the engine, one
task per file. Every stage's rejects are encoded; a stage's kept rows are encoded only
where they cannot be derived. A filter hands on exactly the rows it received, minus its
rejects (the stage contract, checked by tests/test_stage_contract.py), so the tokens kept
by the stage before a filter are the filter's kept plus its rejected tokens. Walking back
from the last stage before tokenize, kept parts are encoded only for that stage and for
the stage before each transform (a stage that may change text, or whose row or character
counts do not balance). Each document is then encoded about once per transform instead
of once per stage (issue 20: on the mini pipeline the funnel encoded 8x the corpus, as
much as the tokenize stage itself and then some). File counts are cached beside each
stage's manifest under the tokenizer's sha256 and the stage's fingerprint, so a re-run
that skips a stage does not count it again.

The numbers follow ``chars``: ``in`` is what the stage before kept (the first stage:
kept + rejected), and ``removed_from_kept`` is what a transform cut out of the rows it
kept (0 for a filter). The tokenize stage's own row also keeps its ``train``/``valid``
counts: the tokens written to the shards (mixing copies and end-of-document tokens
included)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from . import manifest as mf
from . import storage

CACHE_FILE = "_token_funnel.json"
BATCH = 1024


@dataclass(frozen=True)
class CountTask:
    path: str        # one Parquet file: a stage's kept part or its rejects
    tokenizer: str   # tokenizer.json, local path or s3:// URI


@lru_cache(maxsize=4)
def _tokenizer(uri: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_str(storage.read_bytes(uri).decode("utf-8"))


def count_file_tokens(task: CountTask) -> int | None:
    """Tokens of the ``text`` column of one Parquet file (None: the file has no text)."""
    if "text" not in storage.parquet_schema(task.path).names:
        return None
    tok = _tokenizer(task.tokenizer)
    texts = [t or "" for t in storage.read_parquet(task.path, columns=["text"]).column("text").to_pylist()]
    total = 0
    for i in range(0, len(texts), BATCH):
        total += sum(len(e.ids) for e in tok.encode_batch_fast(texts[i:i + BATCH], add_special_tokens=False))
    return total


Mapper = Callable[[Callable[[CountTask], int | None], list[CountTask]], list[int | None]]


def _stage_dir(out: str, row: dict[str, Any]) -> str:
    return storage.join(out, "stages", f"{row['index']:02d}-{row['stage']}")


def _manifests(out: str, rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Each stage's manifest, read once ({} where a stage has none)."""
    return {row["index"]: mf.read_manifest(_stage_dir(out, row)) or {} for row in rows}


def run_tokenizer(out: str, rows: list[dict[str, Any]],
                  manifests: dict[int, dict[str, Any]] | None = None) -> tuple[str, str] | None:
    """(tokenizer.json URI, its sha256) of the run's tokenize stage, if one committed."""
    manifests = manifests if manifests is not None else _manifests(out, rows)
    for row in reversed(rows):
        arts = manifests[row["index"]].get("artifacts") or [{}]
        if "tokenizer" in arts[0] and "dataset" in arts[0]:
            sdir = _stage_dir(out, row)
            ds = mf.read_json(storage.join(sdir, arts[0]["dataset"])) or {}
            sha = ds.get("tokenizer", {}).get("sha256")
            uri = storage.join(sdir, arts[0]["tokenizer"], "tokenizer.json")
            if sha and storage.exists(uri):
                return uri, sha
    return None


def _is_filter(row: dict[str, Any]) -> bool:
    """The stage keeps or rejects the rows it received, text unchanged, and its counts say so."""
    from .stage import get_stage

    try:
        cls = get_stage(row["stage"])
    except (KeyError, ValueError):
        return False
    chars = row.get("chars") or {}
    rows_balance = row.get("in") == row.get("kept", 0) + sum((row.get("rejected") or {}).values())
    return (cls.kind != "read" and not cls.changes_text and rows_balance
            and chars.get("removed_from_kept", 1) == 0)


def _count_files(out: str, row: dict[str, Any], m: dict[str, Any], tok: tuple[str, str], run: Mapper,
                 kept_needed: bool) -> dict[str, int | None] | None:
    """{"rejected", "kept"} tokens of one committed stage's files ("kept" only when
    needed, else None), cached; None when its files have no text."""
    sdir = _stage_dir(out, row)
    cache_uri = storage.join(sdir, CACHE_FILE)
    cached = mf.read_json(cache_uri)
    counts: dict[str, int | None] = {}
    if cached and cached.get("tokenizer_sha256") == tok[1] and cached.get("fingerprint") == row["fingerprint"]:
        if cached.get("counts") is None:
            return None
        counts = dict(cached["counts"])
    todo = {"rejected": [o["path"] for o in m.get("rejects", []) if o.get("path", "").endswith(".parquet")],
            "kept": [o["path"] for o in m.get("outputs", []) if o.get("path", "").endswith(".parquet")]}
    for what, files in todo.items():
        if (what in counts and counts[what] is not None) or (what == "kept" and not kept_needed):
            continue
        got = run(count_file_tokens, [CountTask(storage.join(sdir, f), tok[0]) for f in files])
        if any(g is None for g in got):
            mf.write_json(cache_uri, {"tokenizer_sha256": tok[1], "fingerprint": row["fingerprint"], "counts": None})
            return None
        counts[what] = sum(g or 0 for g in got)
    counts.setdefault("kept", None)
    mf.write_json(cache_uri, {"tokenizer_sha256": tok[1], "fingerprint": row["fingerprint"], "counts": counts})
    return counts


def _stage_counts(out: str, rows: list[dict[str, Any]], manifests: dict[int, dict[str, Any]],
                  tok: tuple[str, str], run: Mapper) -> list[dict[str, int] | None]:
    """{"kept", "rejected"} per row, walking back from the end: a stage's kept tokens are
    the next stage's kept + rejected when that stage is a filter, else encoded."""
    found: list[dict[str, int] | None] = [None] * len(rows)
    after: dict[str, int] | None = None   # counts of the row after, when it is a filter
    for k in range(len(rows) - 1, -1, -1):
        row = rows[k]
        m = manifests[row["index"]]
        tokenize = "artifacts" in m
        files = _count_files(out, row, m, tok, run, kept_needed=after is None and not tokenize)
        if files is None or files["rejected"] is None:
            after = None
            continue
        if tokenize:   # its kept rows are the shards: kept = in - rejected, set going forward
            kept = -1
        elif after is not None:
            kept = after["kept"] + after["rejected"]
        else:
            kept = int(files["kept"] or 0)
        found[k] = {"kept": kept, "rejected": int(files["rejected"])}
        after = found[k] if not tokenize and _is_filter(row) else None
    return found


def add_token_funnel(out: str, rows: list[dict[str, Any]], run: Mapper) -> bool:
    """Give every stage row of a run that has a tokenizer its ``tokens`` funnel (in place).
    False when the run has no tokenize stage (nothing to count with)."""
    manifests = _manifests(out, rows)
    tok = run_tokenizer(out, rows, manifests)
    if tok is None:
        return False
    prev_kept: int | None = None
    for row, counts in zip(rows, _stage_counts(out, rows, manifests, tok, run)):
        if counts is None:
            prev_kept = None
            continue
        tokens = dict(row.get("tokens") or {})
        if counts["kept"] < 0:
            # tokenize: keeps every row it does not reject, text unchanged
            n_in = prev_kept if prev_kept is not None else counts["rejected"]
            counts = {"kept": n_in - counts["rejected"], "rejected": counts["rejected"]}
        n_in = prev_kept if prev_kept is not None else counts["kept"] + counts["rejected"]
        tokens.update(counts, **{"in": n_in, "removed_from_kept": n_in - counts["kept"] - counts["rejected"]})
        row["tokens"] = dict(sorted(tokens.items()))
        prev_kept = counts["kept"]
    return True


__all__ = ["add_token_funnel", "count_file_tokens", "CountTask", "run_tokenizer"]
