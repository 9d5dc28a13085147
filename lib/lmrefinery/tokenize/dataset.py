"""The end of tokenize: `dataset.json`, the manifest a trainer reads first (format,
tokenizer, splits with their shards and per-source counts, mixing, document counts),
and the artifacts entry of the stage's manifest."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ..core import storage
from .encode import EncodeSummary
from .plan import SPLITS, Plan
from .reader import DATASET_MANIFEST
from .work import TokenizeRun
from .write import WrittenShard


@dataclass(frozen=True)
class TokenizerInfo:
    """The tokenizer the shards were written with: where it came from and its ids."""

    source: str                      # "trained", or the path it was copied from
    encoder: Any                     # its ChatEncoder (ids of the special tokens)
    trained_on: dict[str, Any] | None

    def entry(self, run: TokenizeRun) -> dict[str, Any]:
        from .tokenizer import file_sha256, tokenizer_json_of

        tok_dir = run.tok_dir
        tj = tokenizer_json_of(tok_dir) if not storage.is_s3(tok_dir) else storage.join(tok_dir, "tokenizer.json")
        enc = self.encoder
        return {"path": "tokenizer", "source": self.source, "sha256": file_sha256(tj),
                "vocab_size": enc.vocab_size, "eos_id": enc.eos_id, "bos_id": enc.bos_id,
                "pad_id": enc.pad_id, "eot_id": enc.eot_id, "add_bos": run.params.add_bos,
                "trained_on": self.trained_on}


def split_entries(shards: list[WrittenShard]) -> dict[str, dict[str, Any]]:
    """Per split: documents, tokens, per-source counts and the shards with documents."""
    splits = {}
    for sp in SPLITS:
        got = [s for s in shards if s.split == sp and s.documents > 0]
        by_src: dict[str, dict[str, int]] = defaultdict(lambda: {"documents": 0, "tokens": 0})
        for s in got:
            for k, v in s.by_source.items():
                by_src[k]["documents"] += v["documents"]
                by_src[k]["tokens"] += v["tokens"]
        splits[sp] = {"documents": sum(s.documents for s in got), "tokens": sum(s.tokens for s in got),
                      "by_source": dict(sorted(by_src.items())), "shards": [s.entry() for s in got]}
    return splits


def tokens_per_char(summaries: list[EncodeSummary]) -> dict[str, float]:
    acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in summaries:
        for lg, (nt, nc) in r.tpc.items():
            acc[lg][0] += nt
            acc[lg][1] += nc
    return {lg: round(nt / nc, 4) for lg, (nt, nc) in sorted(acc.items()) if nc}


def _mixing_entry(mixing: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in mixing.items() if k != "plan"}
    out["factors"] = {s: p["factor"] for s, p in sorted(mixing["plan"].items())}
    return out


def _document_counts(parts: list[dict[str, Any]]) -> dict[str, int]:
    return {"in": sum(p["in"] for p in parts),
            "empty": sum(p["rejected"].get("tokenize:empty", 0) for p in parts),
            "downsampled": sum(p["rejected"].get("mix:downsampled", 0) for p in parts),
            "upsampled_copies": sum(p.get("counters", {}).get("tokenize:upsampled_copies", 0) for p in parts)}


def dataset_manifest(run: TokenizeRun, run_name: str | None, dtype: str, with_mask: bool, tok: TokenizerInfo,
                     encoded: list[EncodeSummary], plan: Plan, splits: dict[str, dict[str, Any]],
                     parts: list[dict[str, Any]]) -> dict[str, Any]:
    p = run.params
    return {
        "format": "megatron-mmidx", "version": 1, "seed": run.seed, "run": run_name,
        "dtype": dtype, "has_loss_mask": with_mask, "shard_tokens": p.shard_tokens,
        "valid_fraction": p.valid_fraction,
        "tokenizer": tok.entry(run),
        "tokens_per_char": tokens_per_char(encoded),
        "splits": splits, "mixing": _mixing_entry(plan.mixing),
        "documents": _document_counts(parts),
    }


def artifacts(splits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the stage's manifest names as its outputs (on its first part)."""
    return {"dataset": DATASET_MANIFEST, "tokenizer": "tokenizer",
            "shards": {sp: [s["prefix"] for s in splits[sp]["shards"]] for sp in splits},
            "tokens": {sp: splits[sp]["tokens"] for sp in splits}}
