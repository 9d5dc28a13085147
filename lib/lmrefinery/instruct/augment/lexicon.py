"""Synonym swaps from the shipped lexicons (``instruct/lexicons.py``): WordNet for
English, 同义词词林 for Chinese, with part-of-speech and script guards and nothing
changed in code, numbers or names."""
from __future__ import annotations

import random

from ..common import make_record, messages
from ..lexicons import swap_text


def lexicon_augment(rows: list[dict], rate: float = 0.15, seed: int = 0, n_variants: int = 1,
                    source: str | None = None, fields: tuple[str, ...] = ("user",)) -> tuple[list[dict], list[dict]]:
    """Synonym swaps from the shipped lexicons (``lexicons.py``: WordNet for English, 同义词词林
    for Chinese, POS and script guards, nothing in code/numbers/names). ``n_variants`` differently
    seeded children per row; each records its swaps in ``meta.swaps`` as [word, synonym, pos]."""
    out, rejects = [], []
    for r in rows:
        seen = set()
        for k in range(max(1, n_variants)):
            rng = random.Random(f"{seed}:{k}:{r['id']}")
            msgs = [dict(m) for m in messages(r)]
            swaps: list = []
            for m in msgs:
                m.pop("lang", None)
                if m["role"] in fields:
                    m["content"], s = swap_text(m["content"], rate, rng)
                    swaps += s
                    m.pop("input", None)
            key = tuple(m["content"] for m in msgs)
            if not swaps or key in seen:
                rejects.append({"parent_id": r["id"], "origin": "synonyms", "variant": k,
                                "reason": "no_substitution" if not swaps else "duplicate_variant"})
                continue
            seen.add(key)
            meta = r.get("meta") or {}
            out.append(make_record(msgs, source or r.get("source") or "augment", origin="synonyms",
                                   parent_id=r["id"], id_parts=("synonyms", seed, k), lang=r.get("lang"),
                                   category=meta.get("category", "uncategorized"), substitutions=len(swaps),
                                   swaps=[list(x) for x in swaps], variant=k))
    return out, rejects
