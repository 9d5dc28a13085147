"""English words the way spaCy's blank English tokenizer cuts them (DataTrove's word
tokenizer for the Gopher, C4 and FineWeb rules), so a rule's threshold means the same
number here as in the papers' and DataTrove's runs.

The procedure, for every whitespace-free chunk of the text:

1. a chunk that is a *special case* (an abbreviation such as ``Mr.``, a contraction
   such as ``don't`` -> ``do n't``, an emoticon) becomes its fixed tokens;
2. otherwise punctuation is peeled off the front (*prefixes*: brackets, quotes,
   currency, ``#`` ...) and the back (*suffixes*: the same, ``'s``, a period after a
   lower-case letter or a digit, a unit after a number as in ``20ft``), looking for a
   special case after every step;
3. what is left is cut at *infixes* only (``--`` or a hyphen between letters, a
   period between a lower- and an upper-case letter, ``,``/``/``/``:`` between
   letters, an operator between digits); any other inner punctuation stays in the
   word (``1914)The``, ``IL-2``, ``amazon.co.uk``).

The lists below are facts about English text (abbreviations, clitics, units); the
tests compare the result with spaCy on the shared corpora.
"""
from __future__ import annotations

import re
import sys
import unicodedata

# --------------------------------------------------------------- special cases
_ABBREVIATIONS = (
    "Mr. Mrs. Ms. Messrs. Dr. Prof. Rev. Gen. Gov. Sen. Rep. Adm. St. Mt. Jr. Bros. Co. co. Corp. Inc. Ltd. "
    "Jan. Feb. Mar. Apr. Jun. Jul. Aug. Sep. Sept. Oct. Nov. Dec. "
    "Ala. Ariz. Ark. Calif. Colo. Conn. Del. Fla. Ga. Ia. Id. Ill. Ind. Kan. Kans. Ky. La. Mass. Md. Mich. Minn. "
    "Miss. Mo. Mont. Neb. Nebr. Nev. Okla. Ore. Pa. Tenn. Va. Wash. Wis. "
    "D.C. N.C. N.D. N.H. N.J. N.M. N.Y. S.C. Ph.D. e.g. E.g. E.G. i.e. I.e. I.E. a.m. p.m. vs. v.s. ._."
).split()
_NT_STEMS = ("ai are ca could dare did does do had has have is may might must need ought sha should was were wo "
             "would").split()  # + n't: ain't ... won't
_WH = "there these those what when where who why how".split()
_CLITIC_HOSTS = {  # which words take which clitic ('s after any word is a suffix, below)
    "d": ["i", "you", "he", "she", "it", "we", "they", "that", "this", *_WH],
    "ll": ["i", "you", "he", "she", "it", "we", "they", "that", "this", *_WH],
    "ve": ["i", "you", "we", "they", "would", "could", "should", "might", "must", *_WH],
    "re": ["you", "we", "they", *_WH],
    "s": ["he", "she", "it", "that", "this", *_WH],
    "m": ["i"], "ma": ["i"],
}
# clitic forms written without the apostrophe that are words of their own, so never cut
_REAL_WORDS = frozenset("hell shell shed its well were ill whore theses thiss".split())
_FIXED = {
    "cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"), "ima": ("i", "ma"),
    "yall": ("y", "all"), "c'mon": ("c'm", "on"), "y'all": ("y'", "all"), "let's": ("let", "'s"),
    "and/or": ("and/or",), "w/o": ("w/o",),
    "C++": ("C++",), "US$": ("US$",), "C$": ("C$",), "A$": ("A$",), "''": ("''",),
}
_ELIDED = ("'s 'S ’s ’S 'em 'bout 'cause 'cos 'coz 'cuz 'nuff ma'am o'clock ol' ol’ doin' goin' havin' "
           "lovin' nothin' nuthin' somethin'").split()
_EMOTICONS = (":) :)) :))) :( :(( :((( :-) :-)) :-( :-(( ;) ;-) :D :-D ;D :P :-P :p :-p :O :o :-O :-o :/ :-/ "
              ":| :-| :* :-* :] :} :> :3 :x :X :0 =) =( =/ =D =] =[ =| <3 <33 </3 (: ): (; (= )-: (-: "
              "8) 8-) 8D ^_^ ^^ -_- o.O O.o o_O O_o >.< <.< >.> ._. v.v @_@ xD XD").split()


def _special_cases() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {a: (a,) for a in _ABBREVIATIONS}
    out.update({f"{c}.": (f"{c}.",) for c in "abcdefghijklmnopqrstuvwxyzäöü"})
    out.update({e: (e,) for e in _EMOTICONS})
    for h in range(1, 13):
        for period in ("am", "pm", "a.m.", "p.m."):
            out[f"{h}{period}"] = (str(h), period)
    forms: dict[str, tuple[str, ...]] = dict(_FIXED)
    for stem in _NT_STEMS:
        for ap in ("'", "’"):
            forms[f"{stem}n{ap}t"] = (stem, f"n{ap}t")
        forms[f"{stem}nt"] = (stem, "nt")
    forms.update({e: (e,) for e in _ELIDED})
    for cl, hosts in _CLITIC_HOSTS.items():
        for host in hosts:
            for ap in ("'", "’"):
                forms[f"{host}{ap}{cl}"] = (host, f"{ap}{cl}")
            if f"{host}{cl}" not in _REAL_WORDS and (host, cl) != ("it", "s"):
                forms[f"{host}{cl}"] = (host, cl)
    for form, toks in forms.items():  # lower case and Title case, as written in running text
        out[form] = toks
        title = form[:1].upper() + form[1:]
        out.setdefault(title, (toks[0][:1].upper() + toks[0][1:],) + toks[1:])
    return out


SPECIAL = _special_cases()

# --------------------------------------------------------------- affixes
_QUOTES = "'\"”“`‘´’‚„»«「」『』（）〔〕【】《》〈〉⟦⟧"
_CURRENCY = "$£€¥฿₽₴₹₩₪₫₱₿¢₦₺₸₼₾"
_PUNCT = ",:;!?¿¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪"
_ICONS = "".join(chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "So")


def _char_class(chars: str) -> str:
    """``chars`` as a regex class of ranges (a class of thousands of single characters is slow)."""
    cps = sorted(map(ord, chars))
    runs, lo = [], cps[0]
    for a, b in zip(cps, cps[1:] + [-1]):
        if b != a + 1:
            runs.append(re.escape(chr(lo)) + ("-" + re.escape(chr(a)) if a > lo else ""))
            lo = b
    return "[" + "".join(runs) + "]"


_PREFIX_CHARS = frozenset(_PUNCT + _QUOTES + _CURRENCY + _ICONS + "§%=—–")
_SUFFIX_CHARS = frozenset(_PUNCT + _QUOTES + _ICONS + "—–")
_UNITS = ("km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s km/h kmh "
          "mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K %").split()
_AFTER_NUMBER = re.compile(r"(?<=[0-9])(?:" + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
                           + r"|[" + re.escape(_CURRENCY) + r"]|\+)$")
_PERIOD_AFTER = frozenset("0123456789%²-+…" + _PUNCT + _QUOTES)


def _lower(ch: str) -> bool:
    """A lower-case letter, or a letter of a script without case (Hangul, Devanagari...)."""
    return ch.islower() or (ch.isalpha() and not ch.isupper())


def _upper(ch: str) -> bool:
    return ch.isupper() or (ch.isalpha() and not ch.islower())


def _prefix_len(s: str) -> int:
    c = s[0]
    if c == "." or c == "…":
        n = len(s) - len(s.lstrip(c))
        return n if c == "…" or n >= 2 else 0
    if c in _PREFIX_CHARS:
        return 1
    if c == "+" and not s[1:2].isdigit():
        return 1
    if s.startswith(("US$", "C$", "A$")):
        return s.index("$") + 1
    return 0


def _suffix_len(s: str) -> int:
    c = s[-1]
    if c == "." or c == "…":
        n = len(s) - len(s.rstrip(c))
        if c == "…" or n >= 2:
            return n
        p = s[-2:-1]
        if p and (_lower(p) or p in _PERIOD_AFTER or (_upper(p) and len(s) > 2 and _upper(s[-3]))):
            return 1
        if len(s) > 2 and s[-2] in "FfCcKk" and s[-3] == "°":
            return 1
        return 0
    if len(s) > 2 and s[-2] in "'’" and c in "sS":
        return 2
    if c in _SUFFIX_CHARS:
        return 1
    m = _AFTER_NUMBER.search(s) if any(ch.isdigit() for ch in s[-5:]) else None
    if m and m.start() > 0:
        return len(s) - m.start()
    return 0


_A = r"[^\W\d_]"
_INFIX = re.compile(
    r"\.\.+|…|" + _char_class(_ICONS) + r"|(?<=[0-9])[+\-*^](?=[0-9-])"
    r"|(?<=[^\W\d]|[" + _QUOTES + r"])\.(?=[^\W\d]|[" + _QUOTES + r"])"
    r"|(?<=" + _A + r"),(?=" + _A + r")"
    r"|(?<=[^\W_])(?:---|--|——|-|–|—|~)(?=" + _A + r")"
    r"|(?<=[^\W_])[:<>=/](?=" + _A + r")")
_URL = re.compile(r"(?:(?:https?|ftp)://|www\.)\S+$|(?:[\w-]+\.)+(?:com|org|net|edu|gov|io|co|uk|de)(?:/\S*)?$",
                  re.IGNORECASE)


def _infix_split(s: str, out: list[str]) -> None:
    if _URL.match(s):
        out.append(s)
        return
    start = 0
    for m in _INFIX.finditer(s):
        i = m.start()
        if m.group() == "." and not ((_lower(s[i - 1]) or s[i - 1] in _QUOTES)
                                     and (_upper(s[i + 1]) or s[i + 1] in _QUOTES)):
            continue  # a period splits only between a lower- and an upper-case letter
        if i > start:
            out.append(s[start:i])
        out.append(m.group())
        start = m.end()
    if start < len(s):
        out.append(s[start:])


def _merge_specials(toks: list[str], first: int) -> None:
    """Adjacent tokens of one chunk that together spell a special case of one token
    (an emoticon such as ``):`` after ``(Greece):``) become that token."""
    i = first
    while i < len(toks) - 1:
        for k in (3, 2):
            joined = "".join(toks[i:i + k])
            if len(toks) - i >= k and SPECIAL.get(joined) == (joined,):
                toks[i:i + k] = [joined]
                break
        i += 1


def split_chunk(s: str, out: list[str]) -> None:
    """The tokens of one whitespace-free chunk, appended to ``out``."""
    special = SPECIAL.get(s)
    if special is not None:
        out.extend(special)
        return
    suffixes: list[str] = []
    start = len(out)
    while s:
        pre = _prefix_len(s)
        if pre and pre < len(s) and s[pre:] in SPECIAL:
            out.append(s[:pre])
            s = s[pre:]
            break
        rest = s[pre:]
        suf = _suffix_len(rest) if rest else 0
        if suf and suf < len(s) and s[:len(s) - suf] in SPECIAL:
            suffixes.append(s[len(s) - suf:])
            s = s[:len(s) - suf]
            break
        if not pre and not suf:
            break
        if pre:
            out.append(s[:pre])
        if suf and pre + suf <= len(s):
            suffixes.append(s[len(s) - suf:])
            s = s[pre:len(s) - suf]
        else:
            s = s[pre:]
        if s in SPECIAL:
            break
    if s:
        special = SPECIAL.get(s)
        if special is not None:
            out.extend(special)
        else:
            _infix_split(s, out)
    out.extend(reversed(suffixes))
    if len(out) - start > 1:
        _merge_specials(out, start)


def english_words(text: str) -> list[str]:
    """spaCy-style English tokens of ``text`` (see the module docstring). The common
    chunks - letters only, or letters and one closing mark (``word,`` ``end.``), not a
    special case - are cut here without the general procedure."""
    out: list[str] = []
    add, extend, special = out.append, out.extend, SPECIAL.get
    for c in text.split():
        sp = special(c)
        if sp is not None:
            extend(sp)
        elif c.isalpha() or c.isdigit():
            add(c)
        elif len(c) == 1:
            add(c)
        else:
            head, last = c[:-1], c[-1]
            first, tail = c[0], c[1:]
            if first in _PREFIX_CHARS and tail.isalpha() and special(tail) is None:
                add(first)
                add(tail)
                continue
            if head.isalpha() and special(head) is None:
                if last in _SUFFIX_CHARS:
                    add(head)
                    add(last)
                    continue
                if last == ".":
                    if _lower(head[-1]) or (len(head) > 1 and _upper(head[-2])):
                        add(head)
                        add(last)
                    else:
                        add(c)  # "A.": one capital and its period
                    continue
            cached = _CACHE.get(c)
            if cached is None:
                if len(_CACHE) >= _CACHE_SIZE:
                    _CACHE.clear()
                fresh: list[str] = []
                split_chunk(c, fresh)
                _CACHE[c] = cached = tuple(fresh)
            extend(cached)
    return out


_CACHE: dict[str, tuple[str, ...]] = {}  # chunks that took the general procedure: they repeat
_CACHE_SIZE = 200_000


# --------------------------------------------------------------- sentences
SENTENCE_ENDS = frozenset("!.?‼‽⁇⁈⁉！．？｡。।॥։؟۔")
_HAS_END = re.compile("[" + re.escape("".join(sorted(SENTENCE_ENDS))) + "]")


def _all_punct(s: str) -> bool:
    return all(unicodedata.category(ch)[0] == "P" for ch in s)


def sentence_count(line: str) -> int:
    """Sentences in ``line`` as spaCy's rule-based sentencizer counts them over these
    words (DataTrove's C4 filter counts with it): a sentence ends at a token that is
    one of SENTENCE_ENDS, and the next one starts at the first later token that is
    not punctuation. ``Mr.``, ``U.S.`` and ``...`` are words, not ends; ``etc. and``
    ends one. At least 1 (an empty line is one sentence, as C4 counts it)."""
    if not _HAS_END.search(line):
        return 1
    n, seen = 1, False
    for c in line.split():
        if not _HAS_END.search(c):
            if seen and not _all_punct(c):
                n, seen = n + 1, False
            continue
        for tok in english_words(c):
            if tok in SENTENCE_ENDS:
                seen = True
            elif seen and not _all_punct(tok):
                n, seen = n + 1, False
    return n


__all__ = ["SENTENCE_ENDS", "SPECIAL", "english_words", "sentence_count", "split_chunk"]
