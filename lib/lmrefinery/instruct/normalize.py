"""Normalisation: one conversation schema for every source.

For each conversation row: turns are stripped of surrounding whitespace and
empty system turns dropped; each turn gets ``lang`` (fastText lid.176 on the
turn with code blocks removed; a CJK-ratio fallback for very short turns);
the row's ``lang`` is that of its first user turn; the source's category label
is mapped to the shared taxonomy (packaged ``instruct/data/taxonomy.yaml``) and the
original kept as ``orig_category``; provenance (``source``, ``orig_id``,
``licence``, ``origin``) is filled in.
"""
from __future__ import annotations

import re
from functools import lru_cache

import yaml

from ..core.schema import render_messages
from .common import cjk_ratio, conf_file, messages, split_code


@lru_cache(maxsize=4)
def load_taxonomy(path: str | None = None) -> dict:
    if path:
        with open(path, encoding="utf-8") as f:
            tax = yaml.safe_load(f)
    else:
        tax = yaml.safe_load(conf_file("taxonomy.yaml").read_text(encoding="utf-8"))
    tax["_patterns"] = [(re.compile(p), c) for p, c in tax.get("name_patterns", [])]
    return tax


def _norm_label(s: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(s).strip().lower())


def map_category(meta: dict, taxonomy: dict, default: str = "uncategorized") -> tuple[str, str | None]:
    """(category, original label) from whatever the source carried: an exact
    taxonomy name, a source-specific map (Dolly, BELLE, our task types; the
    record's ``format`` picks the map first), ``is_classification``, or - for
    snake_case task names (Self-Instruct / BELLE seeds) - the name patterns."""
    cats = set(taxonomy["categories"])
    maps = taxonomy["maps"]
    fmt = str(meta.get("format") or "")
    if meta.get("is_classification") is True:
        return "classification", meta.get("category") or meta.get("name") or "is_classification"
    for key in ("category", "task_type", "task", "name"):
        v = meta.get(key)
        if not v or not isinstance(v, str):
            continue
        lab = _norm_label(v)
        if lab in cats:
            return lab, v
        fams = ([fmt] if fmt in maps else []) + (["task"] if key in ("task", "task_type") else []) + list(maps)
        for fam in fams:
            m = maps.get(fam, {})
            if lab in m:
                return m[lab], v
            if v.strip() in m:
                return m[v.strip()], v
        if fmt in ("self_instruct",) or key == "name" or "_" in lab:
            for rx, c in taxonomy["_patterns"]:
                if rx.search(lab):
                    return c, v
        return "other", v
    return default, None


_KANA = re.compile(r"[\u3040-\u30ff]")


class LangID:
    """fastText lid.176 per text; loaded once per process."""

    def __init__(self, model_path: str | None = None):
        self.model_path = model_path
        self._model = None

    def _load(self):
        if self._model is None:
            import fasttext

            from ..models import lid_model_path

            fasttext.FastText.eprint = lambda *a, **k: None
            self._model = fasttext.load_model(lid_model_path(self.model_path))
        return self._model

    def __call__(self, text: str) -> tuple[str | None, float]:
        prose = " ".join(c for is_code, c in split_code(text or "") if not is_code)
        prose = " ".join(prose.split())
        if not prose:
            return None, 0.0
        labels, probs = self._load().predict(prose[:2000], k=1)
        lang, score = labels[0].replace("__label__", ""), float(probs[0])
        # lid.176 often calls short Chinese "ja" (or wuu/yue): Han without kana is Chinese
        if lang in ("ja", "wuu", "yue", "gan", "lzh") and cjk_ratio(prose) > 0.3 and not _KANA.search(prose):
            lang = "zh"
        # lid.176 is unreliable on a handful of characters: fall back on script
        if len(prose) < 12:
            r = cjk_ratio(prose)
            if r > 0.5 and lang not in ("zh", "ja", "ko", "wuu", "yue"):
                return "zh", 0.5
            if r == 0 and re.fullmatch(r"[\x00-\x7f]+", prose) and score < 0.5:
                return "en", 0.5
        return lang, score


def normalise_row(row: dict, lid: LangID, taxonomy: dict, licence: str | None = None,
                  default_category: str = "uncategorized") -> str | None:
    """Normalise in place; returns a reject reason or None."""
    meta = row["meta"]
    msgs = []
    for m in messages(row):
        content = (m.get("content") or "").strip()
        if m.get("role") == "system" and not content:
            continue
        mm = dict(m, content=content)
        lang, score = lid(content) if content else (None, 0.0)
        mm["lang"], mm["lang_score"] = lang, round(score, 3)
        msgs.append(mm)
    if not msgs:
        return "no_messages"
    meta["messages"] = msgs
    meta["kind"] = "conversation"
    row["text"] = render_messages(msgs)
    first_user = next((m for m in msgs if m["role"] == "user" and m["content"]), None)
    row["lang"] = (first_user or msgs[0]).get("lang")
    cat, orig = map_category(meta, taxonomy, default_category)
    meta["category"] = cat
    if orig is not None:
        meta["orig_category"] = orig
    meta.setdefault("orig_id", meta.get("source_id") or meta.get("id") or meta.get("pos"))
    if licence and not meta.get("licence"):
        meta["licence"] = licence
    meta.setdefault("origin", "source")
    meta["n_turns"] = sum(1 for m in msgs if m["role"] in ("user", "assistant"))
    return None
