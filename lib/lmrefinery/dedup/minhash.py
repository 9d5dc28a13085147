"""Shingles, MinHash signatures and LSH band keys, vectorised with numpy.

Signatures are bit-for-bit those of ``datasketch.MinHash`` (2.x) for the same
``num_perm``, ``seed``, permutation ``scheme`` and token hash function:

* ``scheme="affine32"`` (datasketch's default since 2.0): the 32-bit token hash
  is pre-mixed with the MurmurHash3 finaliser, then ``a*h + b mod 2^32``;
* ``scheme="legacy"``: ``((a*h + b) mod 2^64) mod (2^61-1)`` truncated to 32 bits,
  with numpy's uint64 wrap-around exactly as datasketch computes it.

Token hashes: ``hash="sha1"`` is datasketch's default ``sha1_hash32`` of the
UTF-8 shingle (one Python call per shingle); ``hash="xxh3"`` hashes each word
once with xxh3-64 (or takes each character's code point) and combines the n
elements of a shingle in numpy, so there is no per-shingle Python work.
``token_hash_xxh3(shingle, mode)`` is the same function applied to a single
shingle string, which is what a datasketch ``hashfunc`` needs for comparison.

Tokenisation modes (``script``): ``words`` (normalised words), ``chars`` (every
non-space character: CJK), ``auto`` (one of the two per text: chars when ``lang``
is zh/ja or the text is > 30% CJK), and ``mixed`` (the default of the dedup
stages): one stream in which every CJK character is a token and every run of
other word characters is a word token (``我用python写代码`` -> 我 用 python 写 代
码). A shingle starting at a word token spans ``ngram`` tokens, one starting at a
CJK character ``char_ngram``. A text without CJK characters is tokenised exactly
as ``words``, a text without any non-CJK letter exactly as ``chars``, so their
shingles and signatures are those of ``auto`` for such texts; only texts that mix
the two scripts change — a Latin code question copied into a Chinese document
now shares its word n-grams with the question, and Latin words inside a Chinese
text no longer become letter windows (``inganddancing``) that match spuriously.
"""
from __future__ import annotations

import hashlib
import re
import struct
from functools import lru_cache

import numpy as np
import xxhash

from .exact import normalise_for_hash

MAX32 = np.uint32(0xFFFFFFFF)
MERSENNE = np.uint64((1 << 61) - 1)
MAX_HASH_LEGACY = np.uint64((1 << 32) - 1)
_P64 = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
CJK_LANGS = ("zh", "ja")
_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_CLASS}]")
_SPACE = re.compile(r"\s+")
_MIXED_TOKEN = re.compile(f"[{_CJK_CLASS}]|[^\\s{_CJK_CLASS}]+")
_NON_CJK_LETTER = re.compile(f"[^\\W\\d_{_CJK_CLASS}]")
WORDS, CHARS, MIXED = "words", "chars", "mixed"


# ---------------------------------------------------------------- text -> tokens
def is_cjk(text: str | None, lang: str | None = None, script: str = "auto") -> bool:
    """Character shingles for Chinese and Japanese (by the lang column when
    set, else by the share of CJK characters), word shingles otherwise."""
    if script == "words":
        return False
    if script == "chars":
        return True
    if lang:
        return lang.split("-")[0].split("_")[0].lower() in CJK_LANGS
    head = (text or "")[:2000]
    if not head:
        return False
    return len(_CJK.findall(head)) > 0.3 * len(head.replace(" ", ""))


def token_mode(text: str | None, lang: str | None = None, script: str = MIXED) -> str:
    """``words``, ``chars`` or ``mixed`` for this text under the ``script`` setting."""
    if script != MIXED:
        return CHARS if is_cjk(text, lang, script) else WORDS
    t = text or ""
    if not _CJK.search(t):
        return WORDS
    if not _NON_CJK_LETTER.search(t):
        return CHARS
    return MIXED


def _mode(cjk: bool | str) -> str:
    if isinstance(cjk, str):
        return cjk
    return CHARS if cjk else WORDS


def token_stream(text: str | None, cjk: bool | str) -> tuple[list[str], np.ndarray]:
    """(normalised tokens, which of them are character tokens). Words mode: words
    (case, width, punctuation folded); chars: every character with whitespace and
    punctuation removed; mixed: CJK characters and the words between them in one
    stream, a digit run touching a CJK character split into digits (as chars mode
    writes ``2023年``), a digit run between spaces one word (as words mode)."""
    norm = normalise_for_hash(text or "")
    mode = _mode(cjk)
    if mode == CHARS:
        toks = list(_SPACE.sub("", norm))
        return toks, np.ones(len(toks), dtype=bool)
    if mode == WORDS:
        toks = norm.split()
        return toks, np.zeros(len(toks), dtype=bool)
    toks, flags = [], []
    for m in _MIXED_TOKEN.finditer(norm):
        t = m.group()
        if len(t) == 1 and _CJK.match(t):
            toks.append(t)
            flags.append(True)
        elif t.isdigit() and (_CJK.match(norm, m.start() - 1) if m.start() else False
                              or _CJK.match(norm, m.end()) is not None):
            toks.extend(t)
            flags.extend([True] * len(t))
        else:
            toks.append(t)
            flags.append(False)
    return toks, np.array(flags, dtype=bool)


def tokens(text: str | None, cjk: bool | str) -> list[str]:
    """The normalised tokens of ``token_stream``."""
    return token_stream(text, cjk)[0]


def _window_starts(is_c: np.ndarray, n_word: int, n_char: int) -> list[tuple[int, np.ndarray]]:
    """(n, starts) of the mixed stream's shingles: a shingle starting at a word spans
    n_word tokens, one starting at a CJK character n_char; it must fit in the stream."""
    m = len(is_c)
    if n_word == n_char:
        return [(n_word, np.arange(max(m - n_word + 1, 0)))]
    out = []
    for n, want in ((n_word, False), (n_char, True)):
        if m >= n:
            out.append((n, np.flatnonzero(is_c[:m - n + 1] == want)))
    return out


def shingle_strings(toks: list[str], n: int, cjk: bool | str, n_char: int | None = None,
                    is_c: np.ndarray | None = None) -> list[str]:
    """The shingles as strings (what datasketch would be fed). A text with
    fewer than n tokens is one shingle of all of them; an empty one has none.
    ``mixed`` (give ``is_c``, the character-token flags of ``token_stream``): n
    for shingles starting at a word, n_char (default n) at a character token;
    tokens are joined with a space unless both sides are character tokens."""
    if not toks:
        return []
    mode = _mode(cjk)
    if mode != MIXED:
        sep = "" if mode == CHARS else " "
        if len(toks) < n:
            return [sep.join(toks)]
        return [sep.join(toks[i:i + n]) for i in range(len(toks) - n + 1)]
    if is_c is None:
        raise ValueError("mixed shingles need the character-token flags of token_stream")

    def join(a: int, b: int) -> str:
        return "".join(t if i == a or (is_c[i] and is_c[i - 1]) else " " + t
                       for i, t in zip(range(a, b), toks[a:b]))
    spans = sorted((int(i), int(i) + n_) for n_, starts in _window_starts(is_c, n, n_char or n) for i in starts)
    return [join(a, b) for a, b in spans] or [join(0, len(toks))]


def sha1_hash32(data: bytes) -> int:
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _S33)
    h = h * _M1
    h = h ^ (h >> _S33)
    h = h * _M2
    return h ^ (h >> _S33)


def _element_hashes(toks: list[str], cjk: bool | str, is_c: np.ndarray | None = None) -> np.ndarray:
    mode = _mode(cjk)
    if mode == CHARS:
        return np.frombuffer("".join(toks).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    f = xxhash.xxh3_64_intdigest
    if mode == MIXED:  # a character token is its code point, as in chars mode; a word its xxh3, as in words mode
        assert is_c is not None, "mixed mode needs the CJK mask of the tokens"
        return np.fromiter((ord(w) if c else f(w.encode("utf-8", "surrogatepass")) for w, c in zip(toks, is_c)),
                           dtype=np.uint64, count=len(toks))
    return np.fromiter((f(w.encode("utf-8", "surrogatepass")) for w in toks), dtype=np.uint64, count=len(toks))


def _combine(el: np.ndarray, n: int) -> np.ndarray:
    """xxh3 shingle hashes: fold n consecutive element hashes, mix, keep 32 bits."""
    m = len(el)
    if m == 0:
        return np.empty(0, dtype=np.uint32)
    k = min(n, m)
    cnt = m - k + 1
    h = np.full(cnt, np.uint64(k), dtype=np.uint64)
    for j in range(k):
        h = (h ^ el[j:j + cnt]) * _P64
    return (_fmix64(h) >> np.uint64(32)).astype(np.uint32)


def ngram_hashes64(el: np.ndarray, n: int, whole_if_short: bool = True) -> np.ndarray:
    """64-bit hashes of every n-gram of element hashes (for exact n-gram
    matching, where 32 bits would collide across large evaluation sets)."""
    m = len(el)
    if m == 0 or (m < n and not whole_if_short):
        return np.empty(0, dtype=np.uint64)
    k = min(n, m)
    cnt = m - k + 1
    h = np.full(cnt, np.uint64(k), dtype=np.uint64)
    for j in range(k):
        h = (h ^ el[j:j + cnt]) * _P64
    return _fmix64(h)


def element_hashes(text: str | None, cjk: bool | str) -> np.ndarray:
    """One 64-bit value per normalised token (word hash, or CJK code point)."""
    toks, is_c = token_stream(text, cjk)
    return _element_hashes(toks, cjk, is_c)


def mixed_ngram_hashes(el: np.ndarray, is_c: np.ndarray, n_word: int, n_char: int, fold,
                       whole_if_short: bool = True) -> np.ndarray:
    """Hashes of the shingles of a mixed stream (see ``_window_starts``); ``fold(el, n)``
    hashes the windows of n elements at every start (``_combine`` or ``ngram_hashes64``)."""
    parts = [fold(el, n)[starts] for n, starts in _window_starts(is_c, n_word, n_char) if len(starts)]
    if parts:
        return np.concatenate(parts)
    if whole_if_short and len(el):
        return fold(el, len(el))
    return fold(el[:0], 1)


def token_hashes(text: str | None, n: int, cjk: bool | str, hash: str = "xxh3",
                 n_char: int | None = None) -> np.ndarray:
    """32-bit hashes of every shingle of the text (with repeats), uint32. For
    ``mixed`` text, n applies to shingles starting at a word, n_char (default n)
    to those starting at a CJK character."""
    toks, is_c = token_stream(text, cjk)
    if hash == "sha1":
        return np.fromiter((sha1_hash32(s.encode("utf-8")) for s in shingle_strings(toks, n, cjk, n_char, is_c)),
                           dtype=np.uint32)
    el = _element_hashes(toks, cjk, is_c)
    if _mode(cjk) == MIXED:
        return mixed_ngram_hashes(el, is_c, n, n_char or n, _combine)
    return _combine(el, n)


def text_shingle_hashes(text: str | None, lang: str | None, script: str, ngram: int, char_ngram: int,
                        hash: str = "xxh3") -> np.ndarray:
    """Shingle hashes of a document under a ``script`` setting (what the near-dup stage signs)."""
    mode = token_mode(text, lang, script)
    return token_hashes(text, char_ngram if mode == CHARS else ngram, mode, hash, char_ngram)


def token_hash_xxh3(shingle: bytes | str, cjk: bool = False) -> int:
    """The xxh3 token hash of one shingle string (for datasketch's ``hashfunc``)."""
    s = shingle.decode("utf-8") if isinstance(shingle, bytes) else shingle
    toks = list(s) if cjk else s.split(" ")
    el = _element_hashes(toks, cjk)
    return int(_combine(el, len(el))[0])


# ---------------------------------------------------------------- MinHash
@lru_cache(maxsize=16)
def permutations(num_perm: int, seed: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) permutation parameters, drawn exactly as datasketch draws them."""
    gen = np.random.RandomState(seed)
    if scheme == "legacy":
        ab = np.array([(gen.randint(1, MERSENNE, dtype=np.uint64), gen.randint(0, MERSENNE, dtype=np.uint64))
                       for _ in range(num_perm)], dtype=np.uint64).T
        return ab[0].copy(), ab[1].copy()
    if scheme != "affine32":
        raise ValueError(f"unknown MinHash scheme {scheme!r}: expected affine32 or legacy")
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _permute(hv: np.ndarray, a: np.ndarray, b: np.ndarray, scheme: str) -> np.ndarray:
    if scheme == "legacy":
        x = hv.astype(np.uint64)[:, None]
        return np.bitwise_and((x * a[None, :] + b[None, :]) % MERSENNE, MAX_HASH_LEGACY).astype(np.uint32)
    x = _fmix32(hv)[:, None]
    return x * a[None, :] + b[None, :]


def signatures(hash_lists: list[np.ndarray], num_perm: int, seed: int = 1, scheme: str = "affine32",
               chunk: int = 16384) -> np.ndarray:
    """MinHash signatures (docs x num_perm, uint32) of many documents at once.

    Token hashes of all documents are concatenated and permuted in blocks of
    ``chunk`` rows; each document's minimum is taken with ``minimum.reduceat``.
    A document without shingles keeps the empty value 2^32-1 everywhere (as
    an empty datasketch MinHash does)."""
    a, b = permutations(num_perm, seed, scheme)
    n = len(hash_lists)
    sig = np.full((n, num_perm), MAX32, dtype=np.uint32)
    lens = np.fromiter((len(h) for h in hash_lists), dtype=np.int64, count=n)
    if n == 0 or lens.sum() == 0:
        return sig
    allh = np.concatenate([h for h in hash_lists if len(h)]).astype(np.uint32, copy=False)
    owner = np.repeat(np.arange(n), lens)
    for s in range(0, len(allh), chunk):
        e = min(s + chunk, len(allh))
        ph = _permute(allh[s:e], a, b, scheme)
        own = owner[s:e]
        starts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])
        mins = np.minimum.reduceat(ph, starts, axis=0)
        docs = own[starts]
        sig[docs] = np.minimum(sig[docs], mins)
    return sig


# ---------------------------------------------------------------- LSH
def band_keys(sig: np.ndarray, bands: int, rows: int, seed: int = 1) -> np.ndarray:
    """One 64-bit key per (document, band): docs x bands, uint64. Keys of
    different bands never compare equal by construction (band index is mixed in)."""
    n = sig.shape[0]
    out = np.empty((n, bands), dtype=np.uint64)
    s64 = sig.astype(np.uint64)
    for i in range(bands):
        h = np.full(n, np.uint64((seed * 1_000_003 + i + 1) & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
        for j in range(i * rows, (i + 1) * rows):
            h = (h ^ s64[:, j]) * _P64
        out[:, i] = _fmix64(h)
    return out


def lsh_threshold(bands: int, rows: int) -> float:
    """The similarity where the S-curve 1-(1-s^r)^b rises through ~1/2: (1/b)^(1/r)."""
    return (1.0 / bands) ** (1.0 / rows)


def optimal_bands_rows(threshold: float, num_perm: int, fp_weight: float = 0.5,
                       fn_weight: float = 0.5) -> tuple[int, int]:
    """Bands and rows (b*r <= num_perm) that minimise the weighted areas of false
    positives below and false negatives above the threshold (datasketch's rule)."""
    from scipy.integrate import quad

    best, opt = float("inf"), (1, 1)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = quad(lambda s, r=r, b=b: 1 - (1 - s ** r) ** b, 0.0, threshold)[0]
            fn = quad(lambda s, r=r, b=b: (1 - s ** r) ** b, threshold, 1.0)[0]
            err = fp * fp_weight + fn * fn_weight
            if err < best:
                best, opt = err, (b, r)
    return opt


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard of two sorted unique hash arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def shingle_set(text: str | None, n: int, cjk: bool, hash: str = "xxh3") -> np.ndarray:
    return np.unique(token_hashes(text, n, cjk, hash))


__all__ = ["is_cjk", "token_mode", "tokens", "token_stream", "text_shingle_hashes", "mixed_ngram_hashes",
           "shingle_strings", "token_hashes", "token_hash_xxh3", "sha1_hash32",
           "permutations", "signatures", "band_keys", "lsh_threshold", "optimal_bands_rows",
           "exact_jaccard", "shingle_set"]
