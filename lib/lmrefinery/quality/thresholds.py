"""The quality rule sets' thresholds and per-language settings.

``DEFAULTS`` holds each rule set's published thresholds (following DataTrove's
``datatrove.pipeline.filters``), ``CHECKS`` which signal each check compares with
which threshold, and ``load_lang_confs`` merges them with the per-language files
(``quality/languages/<lang>.yaml``: tokenizer, stop words, threshold overrides) and
a recipe's overrides into one ``LangConf`` per language.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources.abc import Traversable

from .tokens import DEFAULT_TOKENIZER, TOKENIZERS

DEFAULTS: dict[str, dict] = {
    "gopher_repetition": {
        "enabled": True,
        "dup_para_frac": 0.3, "dup_para_char_frac": 0.2,
        "dup_line_frac": 0.3, "dup_line_char_frac": 0.2,
        "top_2_gram": 0.2, "top_3_gram": 0.18, "top_4_gram": 0.16,
        "dup_5_gram": 0.15, "dup_6_gram": 0.14, "dup_7_gram": 0.13,
        "dup_8_gram": 0.12, "dup_9_gram": 0.11, "dup_10_gram": 0.10,
    },
    "gopher_quality": {
        "enabled": True,
        "min_doc_words": 50, "max_doc_words": 100_000,
        "min_avg_word_length": 3.0, "max_avg_word_length": 10.0,
        "max_symbol_word_ratio": 0.1,
        "max_bullet_lines_ratio": 0.9, "max_ellipsis_lines_ratio": 0.3,
        "min_alpha_words_ratio": 0.8, "min_stop_words": 2,
    },
    "c4": {
        "enabled": True,
        "min_num_sentences": 5, "min_words_per_line": 3, "max_word_length": 1000,
        "remove_citations": True, "filter_no_terminal_punct": True, "filter_lorem_ipsum": True,
        "filter_javascript": True, "filter_curly_bracket": True, "filter_policy": True,
    },
    "fineweb": {
        "enabled": True,
        "line_punct_thr": 0.12, "line_punct_exclude_zero": False, "short_line_thr": 0.67,
        "short_line_length": 30, "char_duplicates_ratio": 0.01, "new_line_ratio": 0.3,
        "line_end_extra": "",   # more characters that end a line (e.g. "，、；：" for hard-wrapped CJK)
    },
    "cjk": {
        "enabled": True,
        "min_punct_per_100_chars": None,   # set per language (zh, ja)
    },
}
RULE_ORDER = ["gopher_repetition", "gopher_quality", "c4", "fineweb", "cjk"]

# (check name, signal, "min"|"max", threshold key). "max": fires when signal > thr;
# "min": fires when signal < thr. A threshold of None disables the check.
CHECKS: dict[str, list[tuple[str, str, str, str]]] = {
    "gopher_repetition": [
        ("dup_para_frac", "dup_para_frac", "max", "dup_para_frac"),
        ("dup_para_char_frac", "dup_para_char_frac", "max", "dup_para_char_frac"),
        ("dup_line_frac", "dup_line_frac", "max", "dup_line_frac"),
        ("dup_line_char_frac", "dup_line_char_frac", "max", "dup_line_char_frac"),
        *[(f"top_{n}_gram", f"top_{n}_gram", "max", f"top_{n}_gram") for n in (2, 3, 4)],
        *[(f"dup_{n}_gram", f"dup_{n}_gram", "max", f"dup_{n}_gram") for n in range(5, 11)],
    ],
    "gopher_quality": [
        ("short_doc", "n_words", "min", "min_doc_words"),
        ("long_doc", "n_words", "max", "max_doc_words"),
        ("mean_word_length", "mean_word_length", "min", "min_avg_word_length"),
        ("mean_word_length", "mean_word_length", "max", "max_avg_word_length"),
        ("hash_ratio", "hash_ratio", "max", "max_symbol_word_ratio"),
        ("ellipsis_ratio", "ellipsis_ratio", "max", "max_symbol_word_ratio"),
        ("bullet_lines", "bullet_lines_ratio", "max", "max_bullet_lines_ratio"),
        ("end_ellipsis_lines", "end_ellipsis_lines_ratio", "max", "max_ellipsis_lines_ratio"),
        ("alpha_words", "alpha_words_ratio", "min", "min_alpha_words_ratio"),
        ("stop_words", "stop_words", "min", "min_stop_words"),
    ],
    "c4": [
        ("lorem_ipsum", "lorem_ipsum", "max", "_flag"),
        ("curly_bracket", "curly_bracket", "max", "_flag"),
        ("too_few_sentences", "n_sentences", "min", "min_num_sentences"),
    ],
    "fineweb": [
        ("empty", "n_lines", "min", "_one"),
        ("line_punct_ratio", "line_punct_ratio", "min", "line_punct_thr"),
        ("short_line_ratio", "short_line_ratio", "max", "short_line_thr"),
        ("char_dup_ratio", "char_dup_ratio", "max", "char_duplicates_ratio"),
        ("newline_ratio", "newline_ratio", "max", "new_line_ratio"),
    ],
    "cjk": [
        ("punct_density", "punct_per_100_chars", "min", "min_punct_per_100_chars"),
    ],
}
SIGNALS: dict[str, list[str]] = {r: list(dict.fromkeys(c[1] for c in cs)) for r, cs in CHECKS.items()}
SIGNALS["c4"].append("lines_removed_frac")


def signal_column(rule: str, signal: str) -> str:
    return f"q_{rule}_{signal}"


def conf_folder(conf_dir: str | None = None) -> Traversable:
    """The per-language rule sets: ``conf_dir`` if given, else ``$LMR_QUALITY_CONF``,
    else the package's ``quality/languages``. A missing folder is an error."""
    from ..core.resources import config_folder

    return config_folder(conf_dir, "LMR_QUALITY_CONF", __package__, "languages")


@dataclass
class LangConf:
    lang: str
    tokenizer: str = DEFAULT_TOKENIZER
    stop_words: frozenset = frozenset()
    rules: dict[str, dict] = field(default_factory=dict)


def load_lang_confs(conf_dir: str | None, overrides: dict[str, dict] | None = None,
                    lang_overrides: dict[str, dict] | None = None) -> dict[str, LangConf]:
    """Per-language settings: defaults <- quality/languages/<lang>.yaml <- stage
    `thresholds` (all languages) <- stage `languages.<lang>`. Key "default" is
    used for languages without a file (English thresholds, no stop-word list)."""
    import yaml

    from ..core.resources import files_in

    raw: dict[str, dict] = {}
    for f in files_in(conf_folder(conf_dir), (".yaml", ".yml")):
        raw[f.name.rsplit(".", 1)[0]] = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
    for lang, extra in (lang_overrides or {}).items():
        base = raw.setdefault(lang, {})
        for k, v in extra.items():
            if k == "rules":
                for r, vals in v.items():
                    base.setdefault("rules", {}).setdefault(r, {}).update(vals)
            else:
                base[k] = v
    raw.setdefault("default", {})
    out = {}
    for lang, c in raw.items():
        rules = {}
        for r in RULE_ORDER:
            vals = dict(DEFAULTS[r])
            for k, v in ((overrides or {}).get(r) or {}).items():
                _check_key(r, k)
                vals[k] = v
            for k, v in ((c.get("rules") or {}).get(r) or {}).items():
                _check_key(r, k)
                vals[k] = v
            rules[r] = vals
        for r in (c.get("rules") or {}):
            if r not in DEFAULTS:
                raise ValueError(f"quality conf {lang}: unknown rule {r!r}; known: {RULE_ORDER}")
        tok = c.get("tokenizer", DEFAULT_TOKENIZER)
        if tok not in TOKENIZERS:
            raise ValueError(f"quality conf {lang}: unknown tokenizer {tok!r}; known: {list(TOKENIZERS)}")
        out[lang] = LangConf(lang, tok, frozenset(c.get("stop_words") or []), rules)
    return out


def _check_key(rule: str, key: str) -> None:
    if rule not in DEFAULTS:
        raise ValueError(f"unknown quality rule {rule!r}; known: {RULE_ORDER}")
    if rule == "c4" and key == "rewrite":
        raise ValueError("c4.rewrite was removed: the quality stage never changes text; to drop the lines "
                         "C4 would drop, add the `c4_lines` stage before `quality`")
    if key not in DEFAULTS[rule]:
        raise ValueError(f"unknown threshold {rule}.{key}; known: {sorted(DEFAULTS[rule])}")
