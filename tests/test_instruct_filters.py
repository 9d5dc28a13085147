"""Filters per task: label-style short answers are kept (Chinese 是/否 NLI and
classification rows built from the packaged templates, numeric answers of the
real Alpaca subset), a per-turn maximum, looping responses."""
from __future__ import annotations

import os
from collections import Counter

from lmrefinery.instruct.common import load_records, make_record, pair
from lmrefinery.instruct.filters import PairFilter, is_label_answer, repetition
from lmrefinery.instruct.templates import construct


def _row(user: str, answer: str, **meta) -> dict:
    return make_record([{"role": "user", "content": user}, {"role": "assistant", "content": answer}], "t",
                       origin="test", id_parts=(user, answer), **meta)


def test_label_answers_kept_and_labels_do_not_collapse():
    table = [{"id": f"n{i}", "meta": {"premise": p, "hypothesis": h, "label": lab}}
             for i, (p, h, lab) in enumerate([
                 ("他在公园里跑步。", "他在户外。", "entailment"), ("她在睡觉。", "她在跑马拉松。", "contradiction"),
                 ("猫坐在垫子上。", "有一只动物。", "entailment"), ("今天下雨了。", "今天是晴天。", "contradiction"),
                 ("他买了一本书。", "他喜欢读书。", "neutral"), ("孩子们在唱歌。", "孩子们很安静。", "contradiction")])]
    rows, rejected = construct(table, "nli", "zh", seed=0)
    assert not rejected and len(rows) == 6
    answers = Counter(pair(r)[1] for r in rows)
    assert answers["是"] == 2 and answers["否"] == 3
    f = PairFilter(check_lang=False)
    kept = [r for r in rows if f(r) is None]
    assert len(kept) == 6 and {pair(r)[1] for r in kept} == {"是", "否", "无法确定"}
    # without a task or category: a single Chinese character, a listed option, a label word
    assert f(_row("将以下输入分类为诗歌、故事或歌曲。\n\n床前明月光", "诗")) is None
    assert f(_row("判断对错：地球是圆的。选项：对、错", "对")) is None
    assert f(_row("Is the sky blue? Answer yes or no.", "Yes.")) is None
    assert f(_row("Tell me about the French revolution.", "x")) == "response_too_short"
    assert is_label_answer("Which one is a fruit? A) apple B) car", "A", {})
    assert not is_label_answer("Write an essay about rivers.", "Rivers flow into the sea and we like them.", {})


def test_short_answers_on_real_data(shared_corpora):
    S = os.path.join(shared_corpora, "instructions")
    f = PairFilter(check_lang=False)
    alpaca = load_records(os.path.join(S, "alpaca_data_5k_subset.json"))
    one_char = [r for r in alpaca if len(pair(r)[1].strip()) == 1]
    assert len(one_char) > 20 and all(f(r) is None for r in one_char)       # "9", "4", sentiment codes
    share = load_records(os.path.join(S, "sharegpt_zh_1k.jsonl"))
    junk = [r for r in share if pair(r)[1].strip() in (".", "")]
    assert junk and all(f(r) in ("response_too_short", "empty_response") for r in junk)


def test_turn_length_and_repetition():
    f = PairFilter(check_lang=False, max_turn_chars=2000)
    assert f(_row("Summarise: " + "word " * 600, "A short summary of the words.")) == "turn_too_long"
    loop = "I am sorry but I cannot stop. " * 12
    assert repetition(loop) > 0.8 and f(_row("Tell me a story.", loop)) == "response_repetitive"
    loop_zh = "我们一起去公园散步吧，然后回家吃饭。" * 8
    assert f(_row("写一个故事。", loop_zh)) == "response_repetitive"
    prose = ("The Law of Supply states that as the price of a product increases, the quantity supplied also "
             "increases, because producers are motivated by higher profits. As the price falls, the quantity "
             "supplied falls too, since producing becomes less attractive.")
    assert repetition(prose) < 0.2 and f(_row("Describe the law of supply.", prose)) is None
    code = "```python\n" + "x = 1\n" * 50 + "```\nThis sets x."
    assert repetition(code) == 0.0            # code is not prose
