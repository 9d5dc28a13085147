"""A version's held-out split as evaluation items, and per-language scores.

This is the hook for ``lmrefinery eval`` (issue #14 owns that command):
``heldout_items(version_ref, "test")`` gives deduplicated prompts with their
references and languages; a model's answers go to ``score_by_language``,
which reports ROUGE-L F1, corpus BLEU (``train.evaluate.score``: characters /
sacrebleu's ``zh`` tokenizer for Chinese) and exact match per language and
overall. Upsampled copies (``repeat_of`` / origin ``upsample``) never count,
and prompts that repeat after normalisation count once (the smallest id).
"""
from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field

from .common import messages


@dataclass
class HeldOutItem:
    id: str
    lang: str
    prompt: list[dict]                 # the turns before the last assistant turn
    reference: str                     # the last assistant turn
    category: str | None = None
    tools: list = field(default_factory=list)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text or "").casefold()).strip()


def heldout_items(version_ref: str, split: str = "test") -> tuple[list[HeldOutItem], dict]:
    """(items, report) for ``split`` of a version (dir, PREFIX@VERSION or PREFIX)."""
    from .versioning import version_rows

    rows = [r for r in version_rows(version_ref) if r["meta"].get("split", "train") == split]
    items, seen = [], set()
    report = {"rows": len(rows), "repeats_dropped": 0, "duplicate_prompts_dropped": 0, "no_reference": 0}
    for r in sorted(rows, key=lambda r: r["id"]):
        meta = r["meta"]
        if meta.get("repeat_of") or meta.get("origin") == "upsample":
            report["repeats_dropped"] += 1
            continue
        msgs = messages(r)
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None or not (msgs[last].get("content") or "").strip():
            report["no_reference"] += 1
            continue
        prompt = msgs[:last]
        key = _norm("\n".join(f"{m['role']}:{m.get('content') or ''}" for m in prompt))
        if key in seen:
            report["duplicate_prompts_dropped"] += 1
            continue
        seen.add(key)
        items.append(HeldOutItem(r["id"], r.get("lang") or "unknown", prompt, msgs[last]["content"],
                                 meta.get("category"), meta.get("tools") or []))
    report["items"] = len(items)
    return items, report


def score_by_language(items: list[HeldOutItem], predictions: list[str]) -> dict:
    """{lang: {rougeL, bleu, exact_match, n}} plus ``all``."""
    from ..train.evaluate import score

    if len(items) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(items)} items")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        groups[it.lang].append(i)
    groups["all"] = list(range(len(items)))
    out = {}
    for lang, idx in sorted(groups.items()):
        hyps, refs = [predictions[i] for i in idx], [items[i].reference for i in idx]
        s = score(hyps, refs)
        s["exact_match"] = sum(_norm(h) == _norm(r) for h, r in zip(hyps, refs)) / len(idx) if idx else None
        out[lang] = s
    return out
