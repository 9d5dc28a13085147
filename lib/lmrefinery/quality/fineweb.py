"""FineWeb's rules (line-end punctuation, short lines, duplicated line characters,
newlines per word) and our CJK punctuation-density rule for Chinese and Japanese.
"""
from __future__ import annotations

import math

from .gopher import dup_counts

# the set DataTrove and FineWeb call TERMINAL_PUNCTUATION (sentence-final marks in many scripts)
TERMINAL = tuple(sorted(set(
    "!.?։؝؞؟۔܀܁܂߹࠷࠹࠽࠾।॥၊။።፧፨᙮᜵᜶។៕៖៙៚᠃᠉᥄᥅᪨᪩᪪᪫᭚᭛᭞᭟᭽᭾᰻᰼᱾᱿‼‽⁇⁈⁉⸮⸼⹓⹔。꓿꘎꘏꛳꛷꡶꡷꣎꣏꤯꧈꧉꩝꩞꩟꫰꫱꯫﹒﹖﹗！．？｡"
    "𐩖𐩗𐽕𐽖𐽗𐽘𐽙𐾆𐾇𐾈𐾉𑁇𑁈𑂾𑂿𑃀𑃁𑅁𑅂𑅃𑇅𑇆𑇍𑇞𑇟𑈸𑈹𑈻𑈼𑊩𑑋𑑌𑗂𑗃𑗉𑗊𑗋𑗌𑗍𑗎𑗏𑗐𑗑𑗒𑗓𑗔𑗕𑗖𑗗𑙁𑙂𑜼𑜽𑜾𑥄𑥆𑩂𑩃𑪛𑪜𑱁𑱂𑻷𑻸\U00011f43\U00011f44𖩮𖩯𖫵𖬷𖬸𖭄𖺘𛲟𝪈")))
CJK_PUNCT = "，。、；：？！「」『』（）《》〈〉…—·,.;:?!"


def fineweb(text: str, n_words: int, t: dict) -> dict:
    lines = [ln for ln in text.split("\n") if ln.strip() != ""]
    sig = {"n_lines": float(len(lines))}
    if not lines:
        sig.update(line_punct_ratio=0.0, short_line_ratio=0.0, char_dup_ratio=0.0, newline_ratio=0.0)
        return sig
    ends = TERMINAL + tuple(t.get("line_end_extra") or "")
    sig["line_punct_ratio"] = sum(1 for ln in lines if ln.endswith(ends)) / len(lines)
    sl = t["short_line_length"]
    sig["short_line_ratio"] = sum(1 for ln in lines if len(ln) <= sl) / len(lines)
    denom = len(text) - text.count("\n")
    sig["char_dup_ratio"] = dup_counts(lines)[1] / denom if denom else 0.0
    sig["newline_ratio"] = text.count("\n") / n_words if n_words else math.inf
    return sig


def cjk(text: str, t: dict) -> dict:
    chars = len(text) - text.count(" ") - text.count("\n")
    if not chars:
        return {"punct_per_100_chars": 0.0}
    p = sum(text.count(c) for c in CJK_PUNCT)
    return {"punct_per_100_chars": 100.0 * p / chars}
