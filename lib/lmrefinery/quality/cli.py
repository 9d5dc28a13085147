"""`lmrefinery quality-model train|score`: train a fastText quality classifier
and print its held-out precision/recall; score a few texts with it."""
from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("quality-model", help="train or try a fastText quality classifier")
    s = p.add_subparsers(dest="action", required=True)
    t = s.add_parser("train", help="train on reference (positive) vs web (negative) text")
    t.add_argument("--positive", action="append", required=True,
                   help="source PATH[::FIELD[+FIELD]] (jsonl/json/parquet/warc/txt, globs, s3://); repeatable")
    t.add_argument("--negative", action="append", required=True, help="same, for negative text; repeatable")
    t.add_argument("--out", required=True, help="model file to write (.bin, or .ftz with --quantize)")
    t.add_argument("--holdout", type=float, default=0.2, help="fraction held out for precision/recall (default 0.2)")
    t.add_argument("--seed", type=int, default=0, help="seed of the split and of fastText (default 0)")
    t.add_argument("--epoch", type=int, default=20, help="fastText epochs (default 20)")
    t.add_argument("--dim", type=int, default=64, help="fastText vector size (default 64)")
    t.add_argument("--word-ngrams", type=int, default=2, help="fastText word n-gram length (default 2)")
    t.add_argument("--lr", type=float, default=0.5, help="fastText learning rate (default 0.5)")
    t.add_argument("--minn", type=int, default=0, help="fastText min character n-gram (0 = none)")
    t.add_argument("--maxn", type=int, default=0, help="fastText max character n-gram (0 = none)")
    t.add_argument("--bucket", type=int, default=200_000,
                   help="hash buckets for word n-grams (model size ~ bucket x dim x 4 bytes)")
    t.add_argument("--max-docs-per-class", type=int, default=20_000, help="cap per class (default 20000)")
    t.add_argument("--chunk-chars", type=int, default=2000, help="plain-text files are cut into chunks this long")
    t.add_argument("--min-chars", type=int, default=100, help="skip shorter documents (default 100)")
    t.add_argument("--quantize", action="store_true", help="write a quantized .ftz model")
    t.add_argument("--no-balance", action="store_true", help="keep class sizes as they are")
    t.set_defaults(fn=_train)

    sc = s.add_parser("score", help="print P(hq) for texts read from stdin, one per line")
    sc.add_argument("--model", required=True, help="the classifier (.bin or .ftz) to score with")
    sc.set_defaults(fn=_score)


def _train(a) -> int:
    from .model import train

    rep = train(a.positive, a.negative, a.out, holdout=a.holdout, seed=a.seed, epoch=a.epoch, dim=a.dim,
                word_ngrams=a.word_ngrams, lr=a.lr, minn=a.minn, maxn=a.maxn, bucket=a.bucket,
                max_docs_per_class=a.max_docs_per_class, chunk_chars=a.chunk_chars, min_chars=a.min_chars,
                quantize=a.quantize, balance=not a.no_balance)
    c, h = rep["counts"], rep["heldout"]
    print(f"model: {rep['model']}  (report: {rep['model']}.json)")
    print(f"train: {c['positive_train']} positive, {c['negative_train']} negative; "
          f"held out: {c['positive_heldout']} + {c['negative_heldout']}")
    if h:
        print(f"held-out precision {h['precision']:.3f}  recall {h['recall']:.3f}  f1 {h['f1']:.3f}  "
              f"auc {h['auc']:.3f}  (threshold {h['threshold']})")
    return 0


def _score(a) -> int:
    import fasttext

    from ..models import resolve
    from .model import ft_line, positive_scores

    fasttext.FastText.eprint = lambda *x, **k: None
    m = fasttext.load_model(resolve(a.model, "quality.bin"))
    lines = [ln.rstrip("\n") for ln in sys.stdin if ln.strip()]
    for ln, s in zip(lines, positive_scores(m, [ft_line(x) for x in lines])):
        print(json.dumps({"score": round(float(s), 4), "text": ln[:80]}, ensure_ascii=False))
    return 0
