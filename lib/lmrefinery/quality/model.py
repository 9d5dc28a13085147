"""fastText quality classifier: training with a held-out report, and scoring.

Positives are reference text (Wikipedia, books, curated instruction answers),
negatives random web text; both are lists of sources (see `sources.py`).
Classes are balanced by seeded down-sampling, a stratified held-out split is
kept aside, and the report gives precision/recall/F1 of the positive label on
it. Training runs on one thread with a fixed seed, so the same inputs give the
same model.
"""
from __future__ import annotations

import json
import os
import random
import re
import tempfile
import time

import numpy as np

from ..core import storage

POS, NEG = "hq", "lq"
_WS = re.compile(r"\s+")
_CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af])")


def ft_line(text: str, max_chars: int = 10_000) -> str:
    """The one preprocessing used for training and scoring: first max_chars,
    lower case, CJK characters spaced out (fastText splits on spaces), one line."""
    t = (text or "")[:max_chars].lower()
    t = _CJK.sub(r" \1 ", t)
    return _WS.sub(" ", t).strip()


def _load(specs: list[str], chunk_chars: int, min_chars: int) -> list[str]:
    from .sources import iter_texts

    out: list[str] = []
    for s in specs:
        out.extend(t for t in iter_texts(s, chunk_chars) if len(t.strip()) >= min_chars)
    return out


def _metrics(y_true: np.ndarray, score: np.ndarray, thr: float = 0.5) -> dict:
    pred = score >= thr
    tp = int(np.sum(pred & y_true))
    fp = int(np.sum(pred & ~y_true))
    fn = int(np.sum(~pred & y_true))
    tn = int(np.sum(~pred & ~y_true))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    # rank AUC (probability a positive scores above a negative)
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    npos, nneg = int(y_true.sum()), int((~y_true).sum())
    auc = float((ranks[y_true].sum() - npos * (npos + 1) / 2) / (npos * nneg)) if npos and nneg else float("nan")
    return {"threshold": thr, "precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4),
            "accuracy": round((tp + tn) / max(1, len(score)), 4), "auc": round(auc, 4),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def positive_scores(model, lines: list[str]) -> np.ndarray:
    """P(hq) for each preprocessed line, in one batched call."""
    if not lines:
        return np.zeros(0)
    labels, probs = model.predict(lines, k=2)
    out = np.empty(len(lines))
    for i, (ls, ps) in enumerate(zip(labels, probs)):
        d = dict(zip(ls, ps))
        out[i] = float(d.get(f"__label__{POS}", 1.0 - float(d.get(f"__label__{NEG}", 0.0))))
    return np.clip(out, 0.0, 1.0)


def train(positive: list[str], negative: list[str], out: str, *, holdout: float = 0.2, seed: int = 0,
          epoch: int = 20, dim: int = 64, word_ngrams: int = 2, lr: float = 0.5, minn: int = 0, maxn: int = 0,
          bucket: int = 200_000,
          max_docs_per_class: int = 20_000, chunk_chars: int = 2000, min_chars: int = 100,
          max_chars: int = 10_000, quantize: bool = False, balance: bool = True) -> dict:
    import fasttext

    t0 = time.time()
    pos = _load(positive, chunk_chars, min_chars)
    neg = _load(negative, chunk_chars, min_chars)
    if not pos or not neg:
        raise ValueError(f"need texts of both classes (got {len(pos)} positive, {len(neg)} negative)")
    rng = random.Random(seed)
    rng.shuffle(pos)
    rng.shuffle(neg)
    n_pos, n_neg = min(len(pos), max_docs_per_class), min(len(neg), max_docs_per_class)
    if balance:
        n_pos = n_neg = min(n_pos, n_neg)
    pos, neg = pos[:n_pos], neg[:n_neg]

    def split(xs):
        k = max(1, int(round(len(xs) * holdout))) if holdout > 0 and len(xs) > 1 else 0
        return xs[k:], xs[:k]

    pos_tr, pos_te = split(pos)
    neg_tr, neg_te = split(neg)
    train_rows = [(POS, t) for t in pos_tr] + [(NEG, t) for t in neg_tr]
    rng.shuffle(train_rows)
    with tempfile.TemporaryDirectory() as tmp:
        f = os.path.join(tmp, "train.txt")
        with open(f, "w", encoding="utf-8") as fh:
            for lab, t in train_rows:
                fh.write(f"__label__{lab} {ft_line(t, max_chars)}\n")
        fasttext.FastText.eprint = lambda *a, **k: None
        local = os.path.join(tmp, "model.ftz" if quantize else "model.bin")
        # Training runs in a fresh process: fastText's trainer has shown different
        # results (even NaN divergence) after other fastText work in the same process,
        # and a clean process makes the result depend on the inputs and seed alone.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as ex:
            lr = ex.submit(_fit, f, local, dict(epoch=epoch, dim=dim, wordNgrams=word_ngrams, lr=lr, minn=minn,
                                                maxn=maxn, bucket=bucket, thread=1, seed=seed, verbose=0,
                                                loss="softmax"), quantize).result()
        model = fasttext.load_model(local)
        with open(local, "rb") as trained:
            storage.write_bytes(out, trained.read())
    te = [ft_line(t, max_chars) for t in pos_te + neg_te]
    y = np.array([True] * len(pos_te) + [False] * len(neg_te))
    report = {"model": out, "seed": seed, "sources": {"positive": positive, "negative": negative},
              "counts": {"positive_train": len(pos_tr), "negative_train": len(neg_tr),
                         "positive_heldout": len(pos_te), "negative_heldout": len(neg_te)},
              "params": {"epoch": epoch, "dim": dim, "word_ngrams": word_ngrams, "lr": lr, "minn": minn,
                         "maxn": maxn, "bucket": bucket, "chunk_chars": chunk_chars, "min_chars": min_chars,
                         "max_chars": max_chars, "quantize": quantize, "holdout": holdout},
              "heldout": _metrics(y, positive_scores(model, te)) if len(te) else None,
              "seconds": round(time.time() - t0, 2)}
    storage.write_bytes(out + ".json", json.dumps(report, indent=1, ensure_ascii=False).encode())
    return report


def _fit(train_file: str, out_local: str, kw: dict, quantize: bool) -> float:
    """Train and save a supervised fastText model; returns the learning rate used.
    fastText can diverge to NaN with a high rate on small or repetitive data, so a
    NaN retries with half the rate (the report records the rate that worked)."""
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    for attempt in range(5):
        try:
            model = fasttext.train_supervised(input=train_file, **kw)
            break
        except RuntimeError as e:
            if "NaN" not in str(e) or attempt == 4:
                raise
            kw = dict(kw, lr=kw["lr"] / 2)
    if quantize:
        model.quantize(input=train_file, retrain=False, qnorm=True, cutoff=100_000)
    model.save_model(out_local)
    return kw["lr"]
