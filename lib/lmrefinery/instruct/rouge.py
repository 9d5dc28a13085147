"""ROUGE-L against a growing pool, without scoring every pair in Python.

Self-Instruct rejects a new instruction whose ROUGE-L F1 with any instruction
already in the pool is >= 0.7. F1 = 2*LCS/(m+n), and LCS can be no longer than
the bag-of-words overlap of the two token lists, so each candidate is first
scored against the whole pool at once with a sparse count matrix (an upper
bound, vectorised); only pool entries whose bound reaches the threshold get
the exact LCS. Tokens: lower-cased words for English, jieba words for Chinese
(``common.tokens``)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .common import tokens


def lcs_len(a: list[int], b: list[int]) -> int:
    if not a or not b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    prev = np.zeros(len(b) + 1, dtype=np.int32)
    bb = np.asarray(b)
    for x in a:
        eq = (bb == x)
        cur = np.zeros_like(prev)
        # cur[j+1] = prev[j]+1 if eq else max(prev[j+1], cur[j]); the max over cur needs a scan
        diag = np.where(eq, prev[:-1] + 1, 0)
        base = np.maximum(prev[1:], diag)
        cur[1:] = np.maximum.accumulate(base)
        prev = cur
    return int(prev[-1])


def rouge_l(a: list[int], b: list[int]) -> float:
    if not a or not b:
        return 0.0
    return 2.0 * lcs_len(a, b) / (len(a) + len(b))


class RougePool:
    def __init__(self, threshold: float = 0.7):
        self.threshold = threshold
        self.vocab: dict[str, int] = {}
        self.seqs: list[list[int]] = []
        self.texts: list[str] = []
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._mat: sp.csc_matrix | None = None
        self._lens = np.zeros(0, dtype=np.int32)
        self.exact_checks = 0

    def _ids(self, text: str, add: bool) -> list[int]:
        out = []
        for t in tokens(text):
            i = self.vocab.get(t)
            if i is None:
                if not add:
                    i = -1
                else:
                    i = self.vocab[t] = len(self.vocab)
            out.append(i)
        return out

    def add(self, text: str) -> None:
        ids = self._ids(text, add=True)
        r = len(self.seqs)
        self.seqs.append(ids)
        self.texts.append(text)
        u, c = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True) if ids else (np.zeros(0, np.int64),) * 2
        self._rows.append(np.full(len(u), r, dtype=np.int64))
        self._cols.append(u)
        self._vals.append(c.astype(np.int32))
        self._mat = None

    def _matrix(self) -> sp.csc_matrix:
        if self._mat is None:
            n = len(self.seqs)
            rows = np.concatenate(self._rows) if self._rows else np.zeros(0, np.int64)
            cols = np.concatenate(self._cols) if self._cols else np.zeros(0, np.int64)
            vals = np.concatenate(self._vals) if self._vals else np.zeros(0, np.int32)
            self._mat = sp.csc_matrix((vals, (rows, cols)), shape=(n, max(len(self.vocab), 1)))
            self._lens = np.array([len(s) for s in self.seqs], dtype=np.int64)
        return self._mat

    def max_score(self, text: str) -> tuple[float, int | None]:
        """Highest ROUGE-L F1 against the pool and the index of that entry, exact
        whenever it reaches the threshold; (0.0, None) means "below the threshold"
        (entries whose bound cannot reach it are never scored exactly)."""
        if not self.seqs:
            return 0.0, None
        ids = self._ids(text, add=False)
        if not ids:
            return 0.0, None
        m = self._matrix()
        known = np.asarray([i for i in ids if i >= 0], dtype=np.int64)
        if len(known) == 0:
            return 0.0, None
        u, c = np.unique(known, return_counts=True)
        sub = m[:, u].toarray()                               # pool x distinct candidate tokens
        overlap = np.minimum(sub, c[None, :]).sum(axis=1)     # bag-of-words overlap >= LCS
        bound = 2.0 * overlap / (self._lens + len(ids))
        cand = np.flatnonzero(bound >= min(self.threshold, 1.0) - 1e-9)
        best, arg = 0.0, None
        for j in cand[np.argsort(-bound[cand])]:
            if bound[j] <= best:
                break
            self.exact_checks += 1
            s = rouge_l(ids, self.seqs[j])
            if s > best:
                best, arg = s, int(j)
        return best, arg

    def too_similar(self, text: str) -> tuple[bool, float, str | None]:
        s, j = self.max_score(text)
        return s >= self.threshold, s, (self.texts[j] if j is not None else None)
