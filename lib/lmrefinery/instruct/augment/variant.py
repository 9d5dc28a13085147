"""One variant to generate from an instruction: the instruction's text with its code
blocks swapped for ``[[CODE<n>]]`` placeholders (``protect``), which must all come
back from the model so the code can be put back verbatim (``restore``)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..common import has_cjk, split_code

_PH = re.compile(r"\[\[CODE(\d+)\]\]")


def protect(text: str) -> tuple[str, list[str]]:
    codes: list[str] = []
    out: list[str] = []
    for is_code, chunk in split_code(text):
        if is_code:
            out.append(f"[[CODE{len(codes)}]]")
            codes.append(chunk)
        else:
            out.append(chunk)
    return "".join(out), codes


def restore(text: str, codes: list[str]) -> str | None:
    found = [int(x) for x in _PH.findall(text or "")]
    if sorted(found) != list(range(len(codes))):
        return None
    return _PH.sub(lambda m: codes[int(m.group(1))], text)


@dataclass(frozen=True)
class VariantRequest:
    """Variant number ``variant`` of ``row``'s instruction, as sent to the model."""
    row: dict
    instruction: str      # the row's instruction as it is
    text: str             # the instruction with placeholders for its code blocks
    codes: list[str]      # the code blocks, in placeholder order
    lang: str             # "zh" when the instruction has CJK characters, else "en"
    variant: int

    @classmethod
    def of(cls, row: dict, instruction: str, variant: int) -> VariantRequest:
        text, codes = protect(instruction)
        return cls(row, instruction, text, codes, "zh" if has_cjk(instruction) else "en", variant)
