"""The fast quality rules give exactly what the straightforward versions give, on
the real texts of the shared corpora (English web, Wikipedia and books; Chinese
book, web pages and instructions; Japanese Wikipedia).

The reference versions live here only: the regex tokenizer's reference is its own
regex (``_TOKEN.findall``), the English tokenizer's is its general procedure on every
chunk (and that procedure is held against spaCy, the tokenizer DataTrove counts with,
below), Chinese words come from jieba itself, and the n-gram
repetition and Gopher quality signals are the earlier implementations, kept
verbatim below. The quality stage is run twice on the same table, once with the
references patched in, and every ``q_*`` column must be equal."""
from __future__ import annotations

import json
import math
import os
import random
import re

import numpy as np
import pyarrow as pa
import pytest

from lmrefinery import segment
from lmrefinery.core.schema import docs_to_table
from lmrefinery.core.stage import StageContext, get_stage
from lmrefinery.quality import english_words, gopher, rules, tokens
from lmrefinery.quality.sources import chunk_text, warc_texts


# ------------------------------------------------------------------ references (earlier code)
def ref_ngram_repetition(words, total_chars, sig):
    n_w = len(words)
    for n in (2, 3, 4):
        sig[f"top_{n}_gram"] = 0.0
    for n in range(5, 11):
        sig[f"dup_{n}_gram"] = 0.0
    if n_w < 2 or total_chars == 0:
        return
    with np.errstate(over="ignore"):
        wh = np.fromiter(map(hash, words), dtype=np.int64, count=n_w).view(np.uint64)
        lens = np.fromiter(map(len, words), dtype=np.int64, count=n_w)
        cl = np.concatenate(([0], np.cumsum(lens)))
        h = wh.copy()
        cand = np.arange(n_w - 1)
        for n in range(2, 11):
            m = n_w - n + 1
            if m <= 0:
                break
            h = h[:m] * gopher._P + wh[n - 1:n - 1 + m]
            cand = cand[cand < m]
            if n <= 4:
                top, j = 1, 0
            if len(cand):
                _, first, inv, counts = np.unique(h[cand], return_index=True, return_inverse=True,
                                                  return_counts=True)
                first_pos = cand[first]
                if n <= 4 and counts.max() > 1:
                    top = int(counts.max())
                    j = int(first_pos[counts == top].min())
                if n >= 5:
                    dup_pos = cand[first_pos[inv] != cand]
                    rep, nxt = 0, 0
                    for i in dup_pos.tolist():
                        if i >= nxt:
                            rep += int(cl[i + n] - cl[i])
                            nxt = i + n
                    sig[f"dup_{n}_gram"] = rep / total_chars
                cand = cand[counts[inv] > 1]
            if n <= 4:
                sig[f"top_{n}_gram"] = float((cl[j + n] - cl[j] + n - 1) * top) / total_chars


_NONWORD_TOKEN = re.compile(r"^(?:[^\w\n]|_)+$", re.M)
_NONALPHA_TOKEN = re.compile(r"^(?:[^\w\n]|[\d_])+$", re.M)


def ref_gopher_quality(text, words, t, stop_words):
    n_all = len(words)
    joined = "\n".join(words)
    sym = [w for w in _NONWORD_TOKEN.findall(joined) if all(map(gopher.PUNCT.__contains__, w))]
    n = n_all - len(sym)
    sig = {"n_words": float(n)}
    sig["mean_word_length"] = ((sum(map(len, words)) - sum(map(len, sym))) / n) if n else 0.0
    sig["hash_ratio"] = text.count("#") / n_all if n_all else 0.0
    sig["ellipsis_ratio"] = (text.count("...") + text.count("…")) / n_all if n_all else 0.0
    lines = text.splitlines() or [""]
    sig["bullet_lines_ratio"] = sum(1 for s in lines if s.lstrip().startswith(("•", "-"))) / len(lines)
    sig["end_ellipsis_lines_ratio"] = sum(1 for s in lines if s.rstrip().endswith(("...", "…"))) / len(lines)
    sig["alpha_words_ratio"] = (n_all - len(_NONALPHA_TOKEN.findall(joined))) / n_all if n_all else 0.0
    sig["stop_words"] = float(sum(map(stop_words.__contains__, words))) if stop_words else math.nan
    return sig


def ref_tok_regex(text):
    return tokens._TOKEN.findall(text)


def ref_tok_english(text):
    """Every chunk through the general procedure, none through the fast paths."""
    out: list[str] = []
    for c in text.split():
        english_words.split_chunk(c, out)
    return out


def ref_tok_jieba(text):
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [w for w in (t.strip() for t in jieba.lcut(text, HMM=False)) if w]


# ------------------------------------------------------------------ real texts
def _json_records(path: str, n: int) -> list[str]:
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    try:
        recs = json.loads(raw)
    except json.JSONDecodeError:
        recs = [json.loads(ln) for ln in raw.splitlines() if ln.strip()]
    return [" ".join(str(v) for v in r.values()) if isinstance(r, dict) else str(r) for r in recs[:n]]


@pytest.fixture(scope="module")
def english(shared_corpora) -> list[str]:
    web = os.path.join(shared_corpora, "web")
    docs = [json.loads(ln)["text"] for ln in open(os.path.join(web, "c4_demo.jsonl"), encoding="utf-8")]
    for n in ("0091", "0174"):
        docs += [json.loads(ln)["text"] for ln in open(os.path.join(web, f"ccnet-cc_en_head-{n}.jsonl"),
                                                        encoding="utf-8")]
    with open(os.path.join(shared_corpora, "wiki", "wiki_demo_en_plaintext.txt"), encoding="utf-8") as f:
        docs += [ln.rstrip("\n") for ln in f if ln.strip()][:10]
    with open(os.path.join(shared_corpora, "books", "pg1342_pride_and_prejudice_en_with_pg_header.txt"),
              encoding="utf-8") as f:
        docs += chunk_text(f.read(), 3000)[::3]
    docs += _json_records(os.path.join(shared_corpora, "instructions", "alpaca_data_5k_subset.json"), 200)
    return docs


@pytest.fixture(scope="module")
def chinese(shared_corpora) -> list[str]:
    with open(os.path.join(shared_corpora, "books", "pg23950_sanguo_yanyi_zh-Hant.txt"), encoding="utf-8") as f:
        docs = chunk_text(f.read(), 2000)[::4]
    docs += [r["text"] for r in warc_texts(os.path.join(shared_corpora, "web",
                                                         "cc-main-2020-34-resiliparse-sample.warc.gz"), min_chars=1)]
    ins = os.path.join(shared_corpora, "instructions")
    docs += _json_records(os.path.join(ins, "belle_open_source_1k.jsonl"), 200)
    docs += _json_records(os.path.join(ins, "alpaca_chinese_bilingual_part_0.json"), 200)
    docs += _json_records(os.path.join(ins, "sharegpt_zh_1k.jsonl"), 40)
    return [d for d in docs if sum("\u4e00" <= c <= "\u9fff" for c in d) > 0.1 * len(d)]


def _repeated(docs: list[str], seed: int) -> list[str]:
    """Real texts with repeats spliced in (a paragraph again, the opening words again
    several times), so the duplicate n-gram signals are not all zero."""
    rng = random.Random(seed)
    out = []
    for d in docs:
        w = d.split(" ")
        k = rng.randrange(1, max(2, len(w)))
        out.append(" ".join(w + w[:k] + w[k // 2:k] * rng.randrange(1, 4)))
    return out


# ------------------------------------------------------------------ tokens
def test_chinese_tokens_of_rjieba_equal_jieba(chinese):
    assert len(chinese) > 150 and sum(map(len, chinese)) > 400_000
    segment.reset()  # the fallback warns when rjieba is missing: it must not be
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = [rules.tok_jieba(d) for d in chinese]
    for i, d in enumerate(chinese):
        want = ref_tok_jieba(d)
        if got[i] != want:
            k = next((j for j, (a, b) in enumerate(zip(got[i], want)) if a != b), min(len(got[i]), len(want)))
            pytest.fail(f"rjieba and jieba differ on Chinese text {i} at token {k}: "
                        f"{got[i][k - 2:k + 3]} vs {want[k - 2:k + 3]}")


def test_english_tokens_equal_the_regex(english):
    for d in english:
        assert rules.tok_regex(d) == ref_tok_regex(d)
    # edge cases: every chunk shape the fast paths choose between, in seeded random strings
    rng = random.Random(0)
    pieces = list("aZ5_ .,'’-:/@&+\"\n\tS") + ["www.", "http://", "..", "--", "é", "٣", "中", "\u00a0", "1,2", "e.g."]
    for _ in range(20_000):
        t = "".join(rng.choice(pieces) for _ in range(rng.randrange(12)))
        assert rules.tok_regex(t) == ref_tok_regex(t), repr(t)


def test_english_fast_paths_equal_the_general_procedure(english):
    for d in english + _repeated(english, 4):
        assert english_words.english_words(d) == ref_tok_english(d)
    rng = random.Random(1)
    pieces = list("aZ5_ .,'’-:/@&+\"()\n\tS$%#") + ["Mr.", "don't", "cannot", "A.", "..", "--", "é", "中", "™",
                                                  ":)", "20", "ft", "e.g.", "it’s", "US$"]
    for _ in range(20_000):
        t = "".join(rng.choice(pieces) for _ in range(rng.randrange(12)))
        assert english_words.english_words(t) == ref_tok_english(t), repr(t)


@pytest.fixture(scope="module")
def spacy_en():
    import spacy

    nlp = spacy.blank("en")  # no model: the rule-based tokenizer, as DataTrove loads it
    nlp.add_pipe("sentencizer")
    return nlp


def _spacy_words(nlp, text: str) -> list[str]:
    return [w for w in (t.text.strip() for t in nlp(text)) if w]  # DataTrove drops whitespace tokens


@pytest.mark.parametrize("text", [
    "Mr. and Mrs. Bennet (Mr. Darcy's aunt), Dr. Who, U.S. troops, e.g. this; i.e. that, vs. them.",
    "I don't, can't, won't; Don't! It's theirs, you're right, we'll see, I'd go, cannot, dont, im, gonna.",
    "_emphasis_ and __init__ and snake_case, 'quoted' \"twice\" (brackets) [x] {y}",
    "20ft 100m 5G 2GB 1.5kg 10am 3pm 9/11 3:30pm 5,000 1/2 $5 US$1 5% #1 @user C++ and/or",
    "(Greece): the end.The start, 1914)The; post-war 11-12 IL-2 e-mail ask-- word... x… 'The cats' o'clock",
    "http://example.com/a?b=1 www.example.org amazon.co.uk A. B. Smith ABC. end. 37°N gamma™ :) ;-) <3",
])
def test_english_words_are_spacy_words(spacy_en, text):
    assert english_words.english_words(text) == _spacy_words(spacy_en, text)


def test_english_words_match_spacy_on_real_text(english, spacy_en):
    import difflib

    same = matched = total = 0
    for d in english:
        ours, theirs = english_words.english_words(d), _spacy_words(spacy_en, d)
        same += ours == theirs
        total += len(theirs)
        matched += sum(b.size for b in difflib.SequenceMatcher(None, ours, theirs, autojunk=False).get_matching_blocks())
    assert same / len(english) >= 0.98, (same, len(english))
    assert matched / total > 0.999, (matched, total)


def test_sentences_are_spacy_sentences(english, spacy_en):
    """C4's sentence count (on the lines C4 keeps) equals the spaCy sentencizer's."""
    from lmrefinery.quality.c4 import C4LineRules, c4_line

    lines = [ln for d in english for raw in d.splitlines() if (ln := c4_line(raw, C4LineRules()))]
    assert len(lines) > 2000
    same = sum(english_words.sentence_count(ln) == len(list(spacy_en(ln).sents)) for ln in lines)
    assert same / len(lines) >= 0.995, (same, len(lines))


# ------------------------------------------------------------------ signals
def _tokenised(english, chinese):
    zh = [(d, ref_tok_jieba(d)) for d in chinese[::3]]
    en = [(d, ref_tok_regex(d)) for d in english + _repeated(english, 1)]
    return en + zh + [(d, ref_tok_jieba(d)) for d in _repeated([d for d, _ in zh], 2)]


def test_ngram_and_gopher_quality_signals_equal_the_reference(english, chinese):
    confs = rules.load_lang_confs(None)
    n_dup = 0
    for text, words in _tokenised(english, chinese) + [("", []), ("a", ["a"]), ("a a", ["a", "a"])]:
        want, got = {}, {}
        ref_ngram_repetition(words, len(text), want)
        gopher._ngram_repetition(words, len(text), got)
        assert got == want
        n_dup += want["dup_5_gram"] > 0
        for lang in ("en", "zh"):
            c = confs[lang]
            want = ref_gopher_quality(text, words, c.rules["gopher_quality"], c.stop_words)
            got = rules.gopher_quality(text, words, c.rules["gopher_quality"], c.stop_words)
            assert json.dumps(got) == json.dumps(want)  # NaN stop words (no list) compare equal too
    assert n_dup > 100  # the duplicate paths ran


def _q_columns(table: pa.Table) -> dict:
    stage = get_stage("quality")
    st = stage(stage.Params(), StageContext(output_root=".", stage_dir="."))
    st.setup()
    r = st.process(table)
    out = pa.concat_tables([r.kept.select(r.kept.column_names),
                            r.rejected.select(r.kept.column_names)]) if r.rejected is not None else r.kept
    out = out.sort_by("id")
    return {c: out.column(c).to_pylist() for c in out.column_names if c.startswith("q_") or c == "text"}


def test_quality_stage_columns_equal_with_reference_functions(english, chinese, monkeypatch):
    docs = [{"id": f"en{i}", "text": t, "lang": "en"} for i, t in enumerate(english[::2] + _repeated(english[:40], 3))]
    docs += [{"id": f"zh{i}", "text": t, "lang": "zh"} for i, t in enumerate(chinese[::4])]
    table = docs_to_table(docs)
    fast = _q_columns(table)
    monkeypatch.setitem(rules.TOKENIZERS, "regex", ref_tok_regex)
    monkeypatch.setitem(rules.TOKENIZERS, "english", ref_tok_english)
    monkeypatch.setitem(rules.TOKENIZERS, "jieba", ref_tok_jieba)
    monkeypatch.setattr(gopher, "_ngram_repetition", ref_ngram_repetition)
    monkeypatch.setattr(rules, "gopher_quality", ref_gopher_quality)
    slow = _q_columns(table)
    assert fast.keys() == slow.keys() and len(fast) > 20
    for c in fast:
        assert json.dumps(fast[c]) == json.dumps(slow[c]), c
