"""The `clean` stage: Unicode and whitespace repair.

NFC normalisation, mojibake repair with ftfy (e.g. "CafÃ©" -> "Café"), control
characters removed (tab and newline kept), trailing spaces stripped, runs of
spaces collapsed and at most `max_blank_lines` blank lines in a row. Documents
that are empty afterwards are rejected as `empty_after_clean`.
"""
from __future__ import annotations

import re
import unicodedata

import pyarrow as pa
from pydantic import Field

from ..core.stage import BatchResult, Stage, StageParams, register

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff\ufffe]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f]+")  # not the ideographic space U+3000
_TRAIL = re.compile(r"[ \t]+\n")


class CleanParams(StageParams):
    fix_mojibake: bool = True
    normalization: str = Field("NFC", pattern="^(NFC|NFKC|none)$")
    collapse_spaces: bool = True
    max_blank_lines: int = Field(1, ge=0)


def clean_text(t: str, p: CleanParams) -> str:
    if p.fix_mojibake:
        import ftfy

        t = ftfy.fix_text(t, normalization="NFC" if p.normalization == "none" else p.normalization,
                          uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False)
    elif p.normalization != "none":
        t = unicodedata.normalize(p.normalization, t)
    t = t.replace("\r\n", "\n").replace("\r", "\n")
    t = _CTRL.sub("", t)
    if p.collapse_spaces:
        t = _SPACES.sub(" ", t)
    t = _TRAIL.sub("\n", t)
    blank = "\n" * (p.max_blank_lines + 2)
    t = re.sub(rf"\n{{{p.max_blank_lines + 2},}}", blank[:-1], t)
    return t.strip()


@register
class CleanStage(Stage):
    name = "clean"
    Params = CleanParams
    params: CleanParams
    description = "NFC + ftfy mojibake repair, control characters, whitespace; rejects empty results."

    def process(self, batch: pa.Table) -> BatchResult:
        texts = batch.column("text").to_pylist()
        out, reasons = [], []
        for t in texts:
            c = clean_text(t or "", self.params)
            out.append(c)
            reasons.append(None if c else "empty_after_clean")
        batch = batch.set_column(batch.column_names.index("text"), "text", pa.array(out, pa.string()))
        return BatchResult.split(batch, self.name, reasons)
