"""Every quality check fires on a document made to break it and stays quiet on
real good text; thresholds are configurable (None disables a check), per language.
Base documents are real: a C4 news article, 三國志演義 chunks, CC WARC pages."""
from __future__ import annotations

import json
import math
import os
import re

import pyarrow.compute as pc
import pytest

from lmrefinery.core.schema import docs_to_table
from lmrefinery.core.stage import StageContext, get_stage
from lmrefinery.quality.rules import CHECKS, RULE_ORDER, evaluate, load_lang_confs, signal_column
from lmrefinery.quality.sources import chunk_text, warc_texts

STOP = r"\b(the|be|to|of|and|that|have|with)\b"


@pytest.fixture(scope="module")
def base(shared_corpora) -> str:
    # C4 document 1 (Disney buys Lucasfilm): 3.6k characters, 9 paragraphs of news prose
    with open(os.path.join(shared_corpora, "web", "c4_demo.jsonl"), encoding="utf-8") as f:
        return json.loads(f.readlines()[1])["text"]


@pytest.fixture(scope="module")
def zh_chunks(shared_corpora) -> list[str]:
    with open(os.path.join(shared_corpora, "books", "pg23950_sanguo_yanyi_zh-Hant.txt"), encoding="utf-8") as f:
        return chunk_text(f.read(), 2000)[::2]  # every other chunk of the whole book


def _lines(t):
    return [ln for ln in t.split("\n") if ln.strip()]


def _words(t):
    return t.split()


# check -> (rule set, language, mutation of the base text, threshold key it depends on)
MUTATIONS = {
    "gopher_repetition:dup_para_frac": lambda b: "\n\n".join(_lines(b) * 2),
    "gopher_repetition:dup_para_char_frac": lambda b: "\n\n".join(_lines(b) * 2),
    "gopher_repetition:dup_line_frac": lambda b: "\n".join(_lines(b) * 2),
    "gopher_repetition:dup_line_char_frac": lambda b: "\n".join(_lines(b) * 2),
    "gopher_repetition:top_2_gram": lambda b: b + " " + "hello world " * (len(b) // 20),
    "gopher_repetition:top_3_gram": lambda b: b + " " + "alpha beta gamma " * (len(b) // 25),
    "gopher_repetition:top_4_gram": lambda b: b + " " + "one two three four " * (len(b) // 30),
    **{f"gopher_repetition:dup_{n}_gram": (lambda b: b + " " + " ".join(_words(b)[:40] * 6)) for n in range(5, 11)},
    "gopher_quality:short_doc": lambda b: " ".join(_words(b)[:30]),
    "gopher_quality:long_doc": lambda b: " ".join(f"{w}{i % 977}" for i, w in enumerate(_words(b) * 200)),
    "gopher_quality:mean_word_length@min": lambda b: " ".join(["I am at it so we go on"] * 40),
    "gopher_quality:mean_word_length@max": lambda b: " ".join(["internationalization incomprehensibilities "
                                                               "telecommunications"] * 40),
    "gopher_quality:hash_ratio": lambda b: b + " #tag" * (len(_words(b)) // 5),
    "gopher_quality:ellipsis_ratio": lambda b: b + " wait..." * (len(_words(b)) // 5),
    "gopher_quality:bullet_lines": lambda b: "\n".join("• " + ln for ln in _lines(b)),
    "gopher_quality:end_ellipsis_lines": lambda b: "\n".join(ln.rstrip(".") + "..." for ln in _lines(b)),
    "gopher_quality:alpha_words": lambda b: b + " 1234 5678" * (len(_words(b)) // 3),
    "gopher_quality:stop_words": lambda b: re.sub(STOP, "", b),
    "c4:lorem_ipsum": lambda b: b + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "c4:curly_bracket": lambda b: b + "\nPut the value inside the { bracket here.",
    "c4:too_few_sentences": lambda b: "\n".join(ln.rstrip(".!?\"'”") for ln in _lines(b)),
    "fineweb:empty": lambda b: "\n \n",
    "fineweb:line_punct_ratio": lambda b: "\n".join(ln.rstrip(".!?\"'”") for ln in _lines(b)),
    "fineweb:short_line_ratio": lambda b: "\n".join(" ".join(_words(b)[i:i + 3]) + "."
                                                    for i in range(0, len(_words(b)), 3)),
    "fineweb:char_dup_ratio": lambda b: b + "\n" + "\n".join(_lines(b)[-2:]),
    "fineweb:newline_ratio": lambda b: "\n".join(w + "." for w in _words(b)),
}
THRESHOLD_OF = {f"{r}:{c}@{op}" if c == "mean_word_length" else f"{r}:{c}": key
                for r, cs in CHECKS.items() for c, s, op, key in cs}
THRESHOLD_OF["fineweb:empty"] = None
THRESHOLD_OF["c4:lorem_ipsum"] = "filter_lorem_ipsum"
THRESHOLD_OF["c4:curly_bracket"] = "filter_curly_bracket"


def test_every_check_has_a_mutation():
    names = {f"{r}:{c}" for r, cs in CHECKS.items() for c, *_ in cs if r != "cjk"}
    assert names == {k.split("@")[0] for k in MUTATIONS}


@pytest.fixture(scope="module")
def confs():
    return load_lang_confs(None)


def test_base_passes_every_rule(base, confs):
    v = evaluate(base, confs["en"], RULE_ORDER)
    assert v.reasons == []
    assert v.signals["c4"]["lines_removed_frac"] == 0.0  # every line of this article passes C4's line rules
    assert set(v.signals) == {"gopher_repetition", "gopher_quality", "c4", "fineweb"}  # cjk: no threshold for en


@pytest.mark.parametrize("check", sorted(MUTATIONS))
def test_check_fires_and_can_be_disabled(check, base, confs):
    name = check.split("@")[0]
    rule = name.split(":")[0]
    text = MUTATIONS[check](base)
    v = evaluate(text, confs["en"], [rule])
    assert name in v.reasons, (check, v.signals[rule])
    key = THRESHOLD_OF[check]
    if key is None:
        return
    off = load_lang_confs(None, {rule: {key: False if key.startswith("filter_") else None}})
    assert name not in evaluate(text, off["en"], [rule]).reasons


def test_c4_measures_lines_but_never_rewrites(base, confs):
    noisy = base + "\nClick here to subscribe\nThis site uses cookies to improve your experience.\n" \
                   "Please enable JavaScript to view the comments powered by Disqus."
    v = evaluate(noisy, confs["en"], ["c4"])
    assert v.reasons == [] and not hasattr(v, "text")
    assert v.signals["c4"]["lines_removed_frac"] == pytest.approx(3 / len(noisy.splitlines()))
    with pytest.raises(ValueError, match="c4_lines"):   # the old switch says where the rewrite went
        load_lang_confs(None, {"c4": {"rewrite": True}})


def test_c4_lines_stage_removes_lines_keeps_paragraphs_and_counts(base):
    noisy = "A Heading\n\n" + base + "\n\nClick here to subscribe\nThis site uses cookies to improve your " \
            "experience.\nSecond paragraph ends here with a full stop."
    table = docs_to_table([{"id": "en", "text": noisy, "lang": "en"}, {"id": "fr", "text": noisy, "lang": "fr"},
                           {"id": "menu", "text": "Home\nAbout us", "lang": "en"}])
    cls = get_stage("c4_lines")
    st = cls(cls.Params(), StageContext(output_root=".", stage_dir="."))
    res = st.process(table)
    kept = {r["id"]: r for r in res.kept.to_pylist()}
    assert kept["en"]["text"] == base.strip() + "\n\nSecond paragraph ends here with a full stop."
    assert kept["fr"]["text"] == noisy and kept["fr"]["c4l_lines_removed_frac"] == 0.0   # not its language
    assert res.rejected.to_pylist()[0]["text"] == "Home\nAbout us"                       # as received
    assert res.counters == {"c4_lines:lines_removed": 3, "c4_lines:docs_changed": 1,
                            "c4_lines:chars_removed": len(noisy) - len(kept["en"]["text"])}
    flat = cls(cls.Params(keep_blank_lines=False, languages=[]), StageContext(output_root=".", stage_dir="."))
    out = {r["id"]: r["text"] for r in flat.process(table).kept.to_pylist()}
    assert "\n\n" not in out["en"] and out["fr"] == out["en"]


def test_chinese_prose_passes_and_seo_spam_fails(zh_chunks, confs, shared_corpora):
    st = get_stage("quality")(get_stage("quality").Params(), StageContext(output_root=".", stage_dir="."))
    st.setup()
    book = st.process(docs_to_table([{"id": f"b{i}", "text": t, "lang": "zh"} for i, t in enumerate(zh_chunks)]))
    assert book.rejected is None and book.kept.num_rows == len(zh_chunks) > 140
    # jieba words: a classical-Chinese word is 1-2 characters
    assert 1.0 < min(book.kept.column("q_gopher_quality_mean_word_length").to_pylist()) < 2.5
    # every Chinese page of the CC sample (SEO spam, gambling, porn, scraped news) that lid calls zh
    pages = [r["text"] for r in warc_texts(os.path.join(shared_corpora, "web",
                                                        "cc-main-2020-34-resiliparse-sample.warc.gz"), min_chars=100)]
    lid = get_stage("lid")(get_stage("lid").Params(min_score=0.5), StageContext(output_root=".", stage_dir="."))
    lid.setup()
    spam = lid.process(docs_to_table([{"id": f"s{i}", "text": t} for i, t in enumerate(pages)])).kept
    spam = spam.filter(pc.equal(spam.column("lang"), "zh"))
    assert spam.num_rows >= 8
    res = st.process(spam)
    assert res.kept.num_rows == 0 and res.rejected.num_rows == spam.num_rows
    # under English settings (no segmenter) the same book text would fail: the zh conf matters
    en = evaluate(zh_chunks[10], confs["en"], RULE_ORDER)
    assert en.reasons and evaluate(zh_chunks[10], confs["zh"], RULE_ORDER).reasons == []


def test_cjk_punct_density(zh_chunks, confs):
    stripped = re.sub(r"[，。、；：？！「」『』]", "", zh_chunks[3])
    assert "cjk:punct_density" in evaluate(stripped, confs["zh"], ["cjk"]).reasons
    assert evaluate(zh_chunks[3], confs["zh"], ["cjk"]).reasons == []


def test_signals_columns_allow_retuning(base, zh_chunks):
    cls = get_stage("quality")
    st = cls(cls.Params(thresholds={"gopher_quality": {"min_doc_words": 40}}),
             StageContext(output_root=".", stage_dir="."))
    st.setup()
    texts = [base, MUTATIONS["gopher_quality:short_doc"](base), MUTATIONS["fineweb:newline_ratio"](base),
             MUTATIONS["gopher_repetition:top_2_gram"](base), zh_chunks[0]]
    langs = ["en", "en", "en", "en", "zh"]
    res = st.process(docs_to_table([{"id": str(i), "text": t, "lang": lg} for i, (t, lg) in enumerate(zip(texts, langs))]))
    rows = {r["id"]: r for r in res.kept.to_pylist() + res.rejected.to_pylist()}
    assert sorted(r["id"] for r in res.kept.to_pylist()) == ["0", "4"]
    assert rows["1"]["reject_reason"] == "gopher_quality:short_doc"       # 30 words < 40
    assert rows["1"]["q_gopher_quality_n_words"] == 30
    # re-tune from the stored signals alone: lowering min_doc_words to 20 would keep row 1's length check
    assert rows["1"]["q_gopher_quality_n_words"] >= 20
    for r in rows.values():
        assert r["q_reasons"].split(",")[0] == (r.get("reject_reason") or "")
        for col in (signal_column("fineweb", "newline_ratio"), signal_column("gopher_repetition", "top_2_gram")):
            assert not math.isnan(r[col])
    assert rows["2"]["reject_reason"].startswith(("fineweb:", "gopher", "c4:"))
    assert "fineweb:newline_ratio" in rows["2"]["q_reasons"] or "c4:" in rows["2"]["q_reasons"]
    assert math.isnan(rows["0"][signal_column("cjk", "punct_per_100_chars")])
    assert not math.isnan(rows["4"][signal_column("cjk", "punct_per_100_chars")])


def test_bad_config_is_an_error():
    cls = get_stage("quality")
    with pytest.raises(ValueError):
        cls.Params(thresholds={"gopher_quality": {"min_words": 3}})
    with pytest.raises(ValueError):
        cls.Params(rules=["gopher", "c4"])
    with pytest.raises(ValueError):
        load_lang_confs(None, lang_overrides={"xx": {"tokenizer": "nope"}})


def test_japanese_wiki_passes_with_ja_settings(shared_corpora, confs):
    import bz2
    import html

    import mwparserfromhell

    with bz2.open(os.path.join(shared_corpora, "wiki", "jawiki-20230501-first120pages.xml.bz2"), "rt",
                  encoding="utf-8") as f:
        xml = f.read()
    arts = []
    for m in re.finditer(r"<ns>0</ns>.*?<text[^>]*>(.*?)</text>", xml, re.S):
        if not m.group(1).startswith("#") and len(m.group(1)) >= 3000:
            arts.append(mwparserfromhell.parse(html.unescape(m.group(1))).strip_code())
        if len(arts) == 30:
            break
    ja = [evaluate(t, confs["ja"], RULE_ORDER) for t in arts]
    en = [evaluate(t, confs["en"], RULE_ORDER) for t in arts]
    assert sum(not v.reasons for v in ja) >= 24            # articles, minus table/list remnants
    assert sum(not v.reasons for v in en) <= 3             # English word rules reject Japanese prose
    assert all(1.0 < v.signals["gopher_quality"]["mean_word_length"] < 3.5 for v in ja if not v.reasons)


def test_quality_stage_command_alone(shared_corpora, tmp_path):
    """`lmrefinery stage quality` on raw JSONL (no lid before it: rows use default_lang)."""
    import pyarrow.parquet as pq

    from lmrefinery.cli import main

    inp = tmp_path / "c4.jsonl"
    with open(os.path.join(shared_corpora, "web", "c4_demo.jsonl"), encoding="utf-8") as f:
        inp.write_text("".join(f.readlines()[:60]), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["stage", "quality", "--input", str(inp), "--output", str(out), "--quiet",
                 "--set", "thresholds={gopher_quality: {min_doc_words: 80}}"]) == 0
    sdir = next(p for p in (out / "stages").iterdir() if p.name.endswith("-quality"))
    man = json.loads((sdir / "_manifest.json").read_text())
    assert man["counts"]["in"] == 60 and 0 < man["counts"]["kept"] < 60
    assert all(r.split(":")[0] in RULE_ORDER for r in man["counts"]["rejected"])
    assert man["counts"]["rejected"].get("gopher_quality:short_doc", 0) >= 1
    rej = pq.read_table(sdir / "rejects" / "part-00000.parquet")
    short = [r for r in rej.to_pylist() if r["reject_reason"] == "gopher_quality:short_doc"]
    assert all(r["q_gopher_quality_n_words"] < 80 for r in short)
