"""Tokens through the funnel: how many tokens of the run's own tokenizer every stage
received, kept and rejected, written into each stage's row of stats.json as ``tokens``
next to ``chars``.

Counted after the run, once the tokenize stage has its tokenizer: every stage's kept
parts and rejects are encoded (no special tokens) on the engine, one task per file. The
counts are cached beside each stage's manifest under the tokenizer's sha256 and the
stage's fingerprint, so a re-run that skips a stage does not count it again.

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
        total += sum(len(e.ids) for e in tok.encode_batch(texts[i:i + BATCH], add_special_tokens=False))
    return total


Mapper = Callable[[Callable[[CountTask], int | None], list[CountTask]], list[int | None]]


def _stage_dir(out: str, row: dict[str, Any]) -> str:
    return storage.join(out, "stages", f"{row['index']:02d}-{row['stage']}")


def run_tokenizer(out: str, rows: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(tokenizer.json URI, its sha256) of the run's tokenize stage, if one committed."""
    for row in reversed(rows):
        m = mf.read_manifest(_stage_dir(out, row))
        arts = (m or {}).get("artifacts") or [{}]
        if "tokenizer" in arts[0] and "dataset" in arts[0]:
            sdir = _stage_dir(out, row)
            ds = mf.read_json(storage.join(sdir, arts[0]["dataset"])) or {}
            sha = ds.get("tokenizer", {}).get("sha256")
            uri = storage.join(sdir, arts[0]["tokenizer"], "tokenizer.json")
            if sha and storage.exists(uri):
                return uri, sha
    return None


def _count_stage(out: str, row: dict[str, Any], tok: tuple[str, str], run: Mapper) -> dict[str, int] | None:
    """{"kept", "rejected"} tokens of one committed stage (cached), None without text."""
    sdir = _stage_dir(out, row)
    cache_uri = storage.join(sdir, CACHE_FILE)
    cached = mf.read_json(cache_uri)
    if cached and cached.get("tokenizer_sha256") == tok[1] and cached.get("fingerprint") == row["fingerprint"]:
        return cached.get("counts")
    m = mf.read_manifest(sdir) or {}
    kept_files = [storage.join(sdir, o["path"]) for o in m.get("outputs", []) if o.get("path", "").endswith(".parquet")]
    rej_files = [storage.join(sdir, o["path"]) for o in m.get("rejects", []) if o.get("path", "").endswith(".parquet")]
    counts: dict[str, int] | None = None
    if m.get("artifacts"):   # the tokenize stage: its kept rows are the shards; count what it rejected
        kept_files = []
    got = run(count_file_tokens, [CountTask(p, tok[0]) for p in kept_files + rej_files])
    if all(g is not None for g in got) and (kept_files or rej_files):
        counts = {"kept": sum(g or 0 for g in got[:len(kept_files)]),
                  "rejected": sum(g or 0 for g in got[len(kept_files):])}
    mf.write_json(cache_uri, {"tokenizer_sha256": tok[1], "fingerprint": row["fingerprint"], "counts": counts})
    return counts


def add_token_funnel(out: str, rows: list[dict[str, Any]], run: Mapper) -> bool:
    """Give every stage row of a run that has a tokenizer its ``tokens`` funnel (in place).
    False when the run has no tokenize stage (nothing to count with)."""
    tok = run_tokenizer(out, rows)
    if tok is None:
        return False
    prev_kept: int | None = None
    for row in rows:
        counts = _count_stage(out, row, tok, run)
        if counts is None:
            prev_kept = None
            continue
        tokens = dict(row.get("tokens") or {})
        if "artifacts" in (mf.read_manifest(_stage_dir(out, row)) or {}):
            # tokenize: keeps every row it does not reject, text unchanged
            n_in = prev_kept if prev_kept is not None else counts["rejected"]
            counts = {"kept": n_in - counts["rejected"], "rejected": counts["rejected"]}
        n_in = prev_kept if prev_kept is not None else counts["kept"] + counts["rejected"]
        tokens.update(counts, **{"in": n_in, "removed_from_kept": n_in - counts["kept"] - counts["rejected"]})
        row["tokens"] = dict(sorted(tokens.items()))
        prev_kept = counts["kept"]
    return True


__all__ = ["add_token_funnel", "count_file_tokens", "CountTask", "run_tokenizer"]
