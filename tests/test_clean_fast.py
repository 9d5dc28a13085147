"""The clean stage runs ftfy only on the segments ftfy could change, and its
output equals running ftfy on everything: on the real texts of the shared corpora
(English, Chinese and Japanese) as they are and with damage put into them
(mojibake lines, HTML entities and tags, CRLF, control characters, terminal
escapes, decomposed accents, a line longer than ftfy's segment length)."""
from __future__ import annotations

import bz2
import json
import os
import random
import re
import unicodedata

import ftfy
from ftfy.badness import BADNESS_RE

from lmrefinery.clean import normalize
from lmrefinery.clean.normalize import CleanParams, clean_text
from lmrefinery.quality.sources import chunk_text, warc_texts


def test_every_mojibake_pattern_needs_an_anchor_character():
    """What makes skipping sound: each alternative of ftfy's BADNESS_RE has an
    element that only matches characters of mojibake_anchors(), so a text without
    them is never 'bad' and ftfy's encoding fix leaves it alone."""
    from re import _parser

    anchors = {ord(c) for c in normalize.mojibake_anchors()}
    tree = _parser.parse(BADNESS_RE.pattern, re.VERBOSE)
    [(op, (_, alternatives))] = tree.data
    assert str(op) == "BRANCH" and len(alternatives) > 30

    def only_anchors(el) -> bool:
        kind, arg = el
        if str(kind) == "LITERAL":
            return arg in anchors
        if str(kind) != "IN":
            return False
        chars = set()
        for k, a in arg:
            if str(k) == "LITERAL":
                chars.add(a)
            elif str(k) == "RANGE":
                chars.update(range(a[0], a[1] + 1))
            else:  # NEGATE, CATEGORY (\w, \s): can match anything
                return False
        return chars <= anchors

    for alt in alternatives:
        assert any(only_anchors(el) for el in alt.data), alt.data


def _texts(root: str) -> list[str]:
    out = [json.loads(ln)["text"] for ln in open(os.path.join(root, "web", "c4_demo.jsonl"), encoding="utf-8")]
    for n in ("0091", "0174"):
        out += [json.loads(ln)["text"] for ln in open(os.path.join(root, "web", f"ccnet-cc_en_head-{n}.jsonl"),
                                                       encoding="utf-8")]
    gold = json.load(open(os.path.join(root, "web", "html_article_extraction", "ground-truth.json"), encoding="utf-8"))
    out += [g["articleBody"] for g in gold.values()]
    out += [r["text"] for r in warc_texts(os.path.join(root, "web", "cc-main-2020-34-resiliparse-sample.warc.gz"),
                                          min_chars=1)]
    with open(os.path.join(root, "wiki", "wiki_demo_en_plaintext.txt"), encoding="utf-8") as f:
        out += [ln for ln in f if ln.strip()][:8]
    with bz2.open(os.path.join(root, "wiki", "jawiki-20230501-first120pages.xml.bz2"), "rt", encoding="utf-8") as f:
        out += chunk_text(f.read(150_000), 4000)  # raw XML: entities, tags, Japanese
    for name in ("pg1342_pride_and_prejudice_en_with_pg_header.txt", "pg11_alice_in_wonderland_en.txt",
                 "pg23950_sanguo_yanyi_zh-Hant.txt"):
        with open(os.path.join(root, "books", name), encoding="utf-8", newline="") as f:
            out += [t for i, t in enumerate(f.read().split("\r\n\r\n" if "pg1342" in name else "\n\n")) if i % 20 == 0]
    with open(os.path.join(root, "instructions", "belle_open_source_1k.jsonl"), encoding="utf-8") as f:
        out += [ln for i, ln in enumerate(f) if i % 15 == 0]
    return [t for t in out if t]


def _damaged(t: str, rng: random.Random) -> str:
    lines = t.split("\n")
    i = rng.randrange(len(lines))
    kind = rng.randrange(7)
    if kind == 0:  # UTF-8 read as Windows-1252 / Latin-1
        enc = rng.choice(["cp1252", "latin-1"])
        lines[i] = lines[i].encode("utf-8").decode(enc, errors="replace")
    elif kind == 1:
        lines[i] += rng.choice([" &amp; Co", " &eacute;t&eacute;", " <b>bold</b> &lt;x&gt;", " AT&T"])
    elif kind == 2:
        return "\r\n".join(lines)
    elif kind == 3:
        lines[i] += rng.choice(["\x00", "\x07bell", "\x0cpage", "\x85next", "\u2028sep", "\ufeffbom", "\x9d"])
    elif kind == 4:
        lines[i] = "\x1b[31m" + lines[i] + "\x1b[0m"
    elif kind == 5:
        lines[i] = unicodedata.normalize("NFD", lines[i] + " café Ångström")
    else:
        lines[i] += " Ã©tÃ© â€™quoteâ€\x9d"
    return "\n".join(lines)


def _reference(t: str, p: CleanParams, monkeypatch) -> str:
    with monkeypatch.context() as m:
        m.setattr(normalize, "fix_text_where_needed", lambda s, form: ftfy.fix_text(
            s, normalization=form, uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False))
        return clean_text(t, p)


def test_clean_equals_ftfy_on_everything(shared_corpora, monkeypatch):
    rng = random.Random(7)
    texts = _texts(shared_corpora)
    texts += [_damaged(t, rng) for t in texts]
    skipped = 0
    for i, t in enumerate(texts):
        for p in [CleanParams()] + ([CleanParams(normalization="NFKC")] if i % 3 == 0 else []):
            assert clean_text(t, p) == _reference(t, p, monkeypatch)
        skipped += normalize.fix_text_where_needed(t, "NFC") is t
    assert len(texts) > 800 and 0.2 * len(texts) < skipped < 0.8 * len(texts)  # both paths ran


def test_segments_longer_than_ftfys_limit(monkeypatch):
    p = CleanParams()
    limit = ftfy.TextFixerConfig().max_decode_length
    cases = ["a" * (limit - 1) + "\r\nb", "x" * (limit + 5) + "\r\n&amp;\n<i>\n&amp;",
             "<p>\n" + "y" * (limit - 3) + "\r\r\n&lt;", "é" * (limit + 1)]
    for t in cases:
        assert clean_text(t, p) == _reference(t, p, monkeypatch)
