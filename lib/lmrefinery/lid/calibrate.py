"""Per-language minimum scores for the `lid` stage, calibrated on sentences of
known language.

A single `min_score` (0.65, DataTrove's default) rejects some short, clean,
correctly labelled texts: fastText's top-1 probability on one sentence is often
well below its probability on a page. For each language, `calibrate` looks at
the sentences of that language that lid.176 labels correctly and picks the
highest threshold (at most `min_score`, at least `floor`) that rejects no more
than `target_rejection` of them; it also counts the sentences of *other*
languages that the lowered threshold would accept under that label (the price).
The result is a `min_scores` mapping for the stage.

    lmrefinery lid calibrate --input sentences.jsonl [--target-rejection 0.01] [--out min_scores.json]
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass


@dataclass
class LangCalibration:
    lang: str
    sentences: int                 # sentences of this language
    correct: int                   # labelled as this language by the model
    rejected_at_default: float     # share of the correct ones below min_score
    threshold: float               # calibrated minimum score
    rejected_at_threshold: float   # share of the correct ones below the threshold
    false_accepts_at_default: int  # other-language sentences labelled `lang` with score >= min_score
    false_accepts_at_threshold: int


def _floor2(x: float) -> float:
    return math.floor(x * 100) / 100


def calibrate(model, sentences: list[tuple[str, str]], target_rejection: float = 0.01,
              min_score: float = 0.65, floor: float = 0.3, min_sentences: int = 200) -> list[LangCalibration]:
    """One calibration per language present in `sentences` ((text, lang) pairs). A language
    with fewer than `min_sentences` correctly labelled sentences keeps `min_score`."""
    from .stage import predict

    labels, scores = predict(model, [t for t, _ in sentences], 1)
    pred = [(lab[0], float(s[0])) for lab, s in zip(labels, scores)]
    out = []
    for lang in sorted({g for _, g in sentences}):
        mine = [sc for (lab, sc), (_, g) in zip(pred, sentences) if g == lang and lab == lang]
        others = [sc for (lab, sc), (_, g) in zip(pred, sentences) if g != lang and lab == lang]
        n = sum(1 for _, g in sentences if g == lang)
        if not mine:
            out.append(LangCalibration(lang, n, 0, 0.0, min_score, 0.0, sum(s >= min_score for s in others),
                                       sum(s >= min_score for s in others)))
            continue
        mine.sort()
        k = int(math.floor(target_rejection * len(mine)))   # at most k correct sentences may fall below
        thr = min(min_score, max(floor, _floor2(mine[k]))) if len(mine) >= min_sentences else min_score
        out.append(LangCalibration(
            lang, n, len(mine), round(sum(s < min_score for s in mine) / len(mine), 4), thr,
            round(sum(s < thr for s in mine) / len(mine), 4), sum(s >= min_score for s in others),
            sum(s >= thr for s in others)))
    return out


def min_scores(cal: list[LangCalibration], min_score: float = 0.65) -> dict[str, float]:
    """The `min_scores` parameter: languages whose calibrated threshold differs from min_score."""
    return {c.lang: c.threshold for c in cal if c.correct and c.threshold != min_score}


def read_sentences(path: str, text_field: str = "text", lang_field: str = "lang") -> list[tuple[str, str]]:
    """(text, lang) pairs from JSON Lines; a line without both fields is an error naming it."""
    from ..core import storage

    out = []
    with storage.open_read(path) as f:
        for i, line in enumerate(f.read().decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                text, lang = rec[text_field], rec[lang_field]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path} line {i}: expected a JSON object with {text_field!r} and "
                                 f"{lang_field!r} ({type(e).__name__}: {e})") from None
            out.append((str(text), str(lang)))
    return out


def format_table(cal: list[LangCalibration], min_score: float) -> str:
    rows = [f"lang  sentences  correct  rejected@{min_score}  threshold  rejected@thr  "
            f"false accepts @{min_score} -> @thr"]
    for c in cal:
        rows.append(f"{c.lang:5s} {c.sentences:9d} {c.correct:8d} {c.rejected_at_default:14.2%} "
                    f"{c.threshold:10.2f} {c.rejected_at_threshold:12.2%}  "
                    f"{c.false_accepts_at_default} -> {c.false_accepts_at_threshold}")
    return "\n".join(rows)


def register(sub) -> None:
    p = sub.add_parser("lid", help="language-ID tools")
    s = p.add_subparsers(dest="action", required=True)
    c = s.add_parser("calibrate", help="per-language min_scores from sentences of known language")
    c.add_argument("--input", required=True, help="JSON Lines with the sentence and its language")
    c.add_argument("--text-field", default="text", help="field holding the sentence")
    c.add_argument("--lang-field", default="lang", help="field holding its ISO 639 language code")
    c.add_argument("--model", help="lid.176 model (default: the cache)")
    c.add_argument("--target-rejection", type=float, default=0.01,
                   help="largest share of correctly labelled sentences a threshold may reject")
    c.add_argument("--min-score", type=float, default=0.65, help="the stage's min_score (thresholds never exceed it)")
    c.add_argument("--floor", type=float, default=0.3, help="thresholds never go below this")
    c.add_argument("--min-sentences", type=int, default=200,
                   help="languages with fewer correctly labelled sentences keep --min-score")
    c.add_argument("--out", help="write {min_scores: {...}, calibration: [...]} as JSON here")
    c.set_defaults(fn=_calibrate_cmd)


def _calibrate_cmd(a) -> int:
    import fasttext

    from ..models import lid_model_path

    fasttext.FastText.eprint = lambda *x, **k: None
    try:
        sentences = read_sentences(a.input, a.text_field, a.lang_field)
    except ValueError as e:
        print(f"lmrefinery: error: {e}", file=sys.stderr)
        return 2
    model = fasttext.load_model(lid_model_path(a.model))
    cal = calibrate(model, sentences, a.target_rejection, a.min_score, a.floor, a.min_sentences)
    print(format_table(cal, a.min_score))
    scores = min_scores(cal, a.min_score)
    print("min_scores: " + json.dumps(scores))
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump({"min_scores": scores, "min_score": a.min_score, "target_rejection": a.target_rejection,
                       "calibration": [asdict(c) for c in cal]}, f, indent=1)
    return 0
