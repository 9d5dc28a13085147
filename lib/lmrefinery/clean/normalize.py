"""The `clean` stage: Unicode and whitespace repair.

NFC normalisation, mojibake repair with ftfy (e.g. "CafÃ©" -> "Café"), control
characters removed (tab and newline kept), trailing spaces stripped, runs of
spaces collapsed and at most `max_blank_lines` blank lines in a row. Documents
that are empty afterwards are rejected as `empty_after_clean` (the reject keeps the text
as it came in).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Literal, cast

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


# ---------------------------------------------------------------- ftfy only where it can act
# ftfy.fix_text cuts the text into segments (after each "\n", at most max_decode_length
# characters) and fixes each on its own; the one state carried over is that HTML
# unescaping stops for good at the first segment holding "<". In a segment, with the
# options used here, it can change only: mojibake (found by ftfy.badness.BADNESS_RE,
# each of whose alternatives needs a character of MOJIBAKE_ANCHORS: checked against the
# installed ftfy by tests/test_clean_fast.py), HTML entities (&), C1 and other control
# characters, terminal escapes (\x1b), surrogates, line breaks (\r, \u2028, \u2029)
# and the Unicode normal form. A segment with none of these is left as it is, which is
# what ftfy returns for it; "\r" (which this stage turns into "\n" right after) counts
# only at the end of a segment cut by length.
_ANCHOR_CATEGORIES = ("c1", "bad", "upper_accented", "lower_accented", "currency", "numeric", "law", "box")
_ANCHOR_LITERALS = "ŒœÂÃÎÐ×ØÙà√≈‚вГВРСβΒΓΞΟā"
_ftfy_trigger = None
NormalForm = Literal["NFC", "NFD", "NFKC", "NFKD"]


def _expand(chars: str) -> set[str]:
    out: set[str] = set()
    i = 0
    while i < len(chars):
        if i + 2 < len(chars) and chars[i + 1] == "-":
            out.update(map(chr, range(ord(chars[i]), ord(chars[i + 2]) + 1)))
            i += 3
        else:
            out.add(chars[i])
            i += 1
    return out


def mojibake_anchors() -> set[str]:
    from ftfy.badness import MOJIBAKE_CATEGORIES

    return set().union(*(_expand(MOJIBAKE_CATEGORIES[c]) for c in _ANCHOR_CATEGORIES), _ANCHOR_LITERALS)


def _trigger():
    global _ftfy_trigger
    if _ftfy_trigger is None:
        from ftfy.chardata import CONTROL_CHARS

        chars = mojibake_anchors() | set(map(chr, CONTROL_CHARS)) | set("&\x1b\u2028\u2029\x85")
        cls = "".join(f"\\U{ord(c):08x}" for c in sorted(chars))
        _ftfy_trigger = re.compile(f"[{cls}\\ud800-\\udfff]")
    return _ftfy_trigger


def fix_text_where_needed(t: str, normalization: str) -> str:
    """``ftfy.fix_text(t, normalization=..., uncurl_quotes=False, fix_latin_ligatures=False,
    fix_character_width=False)``, running ftfy only on the segments it could change."""
    import ftfy

    form = cast(NormalForm, normalization)
    limit = ftfy.TextFixerConfig().max_decode_length
    find = _trigger().search
    if len(t) <= limit and not find(t) and unicodedata.is_normalized(form, t):
        return t
    out: list[str] = []
    html: str | bool = "auto"
    pos = 0
    while pos < len(t):
        end = t.find("\n", pos) + 1 or len(t)
        end = min(end, pos + limit)
        seg = t[pos:end]
        if "<" in seg:
            html = False
        if find(seg) or not unicodedata.is_normalized(form, seg) or (seg[-1] == "\r" and end < len(t)):
            seg = ftfy.fix_text(seg, unescape_html=html, normalization=form, uncurl_quotes=False,
                                fix_latin_ligatures=False, fix_character_width=False)
        out.append(seg)
        pos = end
    return "".join(out)


def clean_text(t: str, p: CleanParams) -> str:
    if p.fix_mojibake:
        t = fix_text_where_needed(t, "NFC" if p.normalization == "none" else p.normalization)
    elif p.normalization != "none":
        t = unicodedata.normalize(cast(NormalForm, p.normalization), t)
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
    changes_text = True
    params: CleanParams
    description = "NFC + ftfy mojibake repair, control characters, whitespace; rejects empty results."

    def process(self, batch: pa.Table) -> BatchResult:
        texts = batch.column("text").to_pylist()
        out, reasons = [], []
        for t in texts:
            c = clean_text(t or "", self.params)
            out.append(c)
            reasons.append(None if c else "empty_after_clean")
        cleaned = batch.set_column(batch.column_names.index("text"), "text", pa.array(out, pa.string()))
        return BatchResult.rewritten(batch, cleaned, self.name, reasons)
