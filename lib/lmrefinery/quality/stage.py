"""The `quality` stage: Gopher repetition, Gopher quality, C4 and FineWeb rules
(+ a CJK punctuation-density rule), per language.

Every signal is kept as a column (`q_<rule>_<signal>`, float) so thresholds can
be re-tuned on the output without recomputing; `q_reasons` lists every check
that fired (`gopher_quality:mean_word_length`, `c4:too_few_sentences`, ...) and
the first one is the rejection reason. The stage decides, it never changes `text`
(C4's line removal is the separate `c4_lines` stage, in `clean/lines.py`). Language settings come from
`quality/languages/<lang>.yaml` (package data; tokenizer, stop words, thresholds), chosen by the
row's `lang` (set by the `lid` stage); rows without one use `default_lang`.
"""
from __future__ import annotations

import math

import pyarrow as pa
from pydantic import Field, field_validator

from ..core.stage import BatchResult, Stage, StageParams, register
from .rules import DEFAULTS, RULE_ORDER, SIGNALS, LangConf, evaluate, load_lang_confs, signal_column


def _code_and_conf_hash(base: str) -> str:
    import hashlib

    from ..core.resources import fingerprint_files
    from . import rules

    h = hashlib.sha256(base.encode())
    h.update(fingerprint_files(rules.conf_folder(), (".yaml", ".yml")))
    return h.hexdigest()[:16]


class QualityParams(StageParams):
    rules: list[str] = Field(default_factory=lambda: ["gopher_repetition", "gopher_quality", "c4", "fineweb", "cjk"],
                             description="rule sets to run, in this order of precedence")
    conf_dir: str | None = Field(None, description="directory of <lang>.yaml files; None = the packaged "
                                                   "quality/languages (or $LMR_QUALITY_CONF)")
    thresholds: dict[str, dict] = Field(default_factory=dict,
                                        description="threshold overrides for all languages: {rule: {key: value}}")
    languages: dict[str, dict] = Field(default_factory=dict,
                                       description="per-language overrides: {lang: {tokenizer, stop_words, rules}}")
    default_lang: str = Field("en", description="language for rows with no `lang`")
    all_signals: bool = Field(True, description="compute every rule's signals even after one fired")

    @field_validator("conf_dir")
    @classmethod
    def _exists(cls, v):
        if v is not None:
            from .rules import conf_folder

            try:
                conf_folder(v)
            except FileNotFoundError as e:
                raise ValueError(str(e)) from None
        return v

    @field_validator("rules")
    @classmethod
    def _known(cls, v):
        bad = [r for r in v if r not in RULE_ORDER]
        if bad:
            raise ValueError(f"unknown rules {bad}; known: {RULE_ORDER}")
        return v

    @field_validator("thresholds")
    @classmethod
    def _known_keys(cls, v):
        for r, vals in v.items():
            if r not in DEFAULTS:
                raise ValueError(f"unknown rule {r!r}; known: {RULE_ORDER}")
            for k in vals:
                if k not in DEFAULTS[r]:
                    raise ValueError(f"unknown threshold {r}.{k}; known: {sorted(DEFAULTS[r])}")
        return v


@register
class QualityStage(Stage):
    name = "quality"
    Params = QualityParams
    params: QualityParams
    description = "Gopher quality/repetition, C4, FineWeb rules per language; signals as q_* columns, reasons."
    code_outside = ("lmrefinery.segment",)   # the Chinese word segmenter

    @classmethod
    def code_hash(cls) -> str:
        """Also the default per-language conf files: editing
        quality/languages/zh.yaml (or the $LMR_QUALITY_CONF folder) re-runs the stage. (A custom conf_dir is not hashed:
        change a parameter to force a re-run.)"""
        return _code_and_conf_hash(super().code_hash())

    def setup(self) -> None:
        p = self.params
        self.confs = load_lang_confs(p.conf_dir, p.thresholds, p.languages)

    def conf_for(self, lang: str | None) -> LangConf:
        lang = lang or self.params.default_lang
        return self.confs.get(lang) or self.confs.get(lang.split("_")[0].split("-")[0]) or self.confs["default"]

    def process(self, batch: pa.Table) -> BatchResult:
        p = self.params
        texts = batch.column("text").to_pylist()
        langs = batch.column("lang").to_pylist()
        cols: dict[str, list[float]] = {signal_column(r, s): [] for r in p.rules for s in SIGNALS[r]}
        reasons, all_reasons = [], []
        for text, lang in zip(texts, langs):
            v = evaluate(text or "", self.conf_for(lang), p.rules, p.all_signals)
            for r in p.rules:
                sig = v.signals.get(r, {})
                for s in SIGNALS[r]:
                    x = sig.get(s)
                    cols[signal_column(r, s)].append(math.nan if x is None else float(x))
            reasons.append(v.reasons[0] if v.reasons else None)
            all_reasons.append(",".join(v.reasons))
        for name, vals in cols.items():
            arr = pa.array(vals, pa.float64())
            if name in batch.column_names:
                batch = batch.set_column(batch.column_names.index(name), name, arr)
            else:
                batch = batch.append_column(name, arr)
        arr = pa.array(all_reasons, pa.string())
        if "q_reasons" in batch.column_names:
            batch = batch.set_column(batch.column_names.index("q_reasons"), "q_reasons", arr)
        else:
            batch = batch.append_column("q_reasons", arr)
        return BatchResult.split(batch, self.name, reasons)
