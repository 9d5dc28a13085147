"""Instruction data without an LLM: normalisation and dedup on the shared
instruction corpora, template construction (en/zh), filters, balancing,
splits, export round trips, versions and diff, synonym augmentation."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter

import pytest

from lmrefinery.core import storage
from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.runner import Runner
from lmrefinery.instruct import export as ex
from lmrefinery.instruct.balance import balance, plan
from lmrefinery.instruct.common import make_record, messages, pair, table_to_rows
from lmrefinery.instruct.filters import PairFilter
from lmrefinery.instruct.split import assign_splits
from lmrefinery.instruct.templates import TemplateError, construct, construct_row
from lmrefinery.instruct.versioning import diff, format_diff, version_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stage_rows(out: str, k: int, name: str, rejects: bool = False) -> list[dict]:
    d = os.path.join(out, "stages", f"{k:02d}-{name}", "rejects" if rejects else "data")
    rows = []
    for f in sorted(os.listdir(d)):
        rows.extend(table_to_rows(storage.read_parquet(os.path.join(d, f))))
    return rows


def rec(user, assistant, category="open_qa", source="t", lang=None, system=None, i=None):
    msgs = ([{"role": "system", "content": system}] if system else []) + \
        [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    r = make_record(msgs, source, origin="test", id_parts=(i,), lang=lang, category=category)
    return r


# ---------------------------------------------------------------- corpora
@pytest.fixture(scope="module")
def normalised(shared_corpora, tmp_path_factory):
    S = os.path.join(shared_corpora, "instructions")
    out = str(tmp_path_factory.mktemp("norm"))
    recipe = load_recipe({
        "name": "instruct-norm", "output": out, "engine": "local", "report": False,
        "inputs": [
            {"name": "alpaca", "paths": [f"{S}/alpaca_data_5k_subset.json"], "format": "alpaca",
             "licence": "CC-BY-NC-4.0"},
            {"name": "seeds", "paths": [f"{S}/self_instruct_seed_tasks.jsonl"], "format": "self_instruct",
             "licence": "Apache-2.0"},
            {"name": "sharegpt", "paths": [f"{S}/sharegpt_zh_1k.jsonl"], "format": "sharegpt"},
            {"name": "belle", "paths": [f"{S}/belle_open_source_1k.jsonl"], "format": "belle",
             "licence": "research-only"},
            {"name": "bilingual", "paths": [f"{S}/alpaca_chinese_bilingual_part_*.json"],
             "format": "alpaca_bilingual"}],
        "stages": [{"stage": "read"}, {"stage": "instruct_normalize", "licences": {"sharegpt": "sharegpt-terms"}},
                   {"stage": "instruct_dedup"}, {"stage": "instruct_filter"}]})
    stats = Runner(recipe, quiet=True).run()
    return out, {s["stage"]: s for s in stats["stages"]}


def test_normalisation_counts(normalised, shared_corpora):
    out, st = normalised
    rows = _stage_rows(out, 1, "instruct_normalize")
    by_src = Counter(r["source"] for r in rows)
    # 5000 Alpaca, 175 seeds (one instance each), 1000 BELLE, 3 x 1000 bilingual records x 2 languages;
    # ShareGPT conversations with an empty turn or no answer are quarantined by the reader
    quarantined = Counter(r["source"] for r in _stage_rows(out, 0, "read", rejects=True))
    total = {s: by_src[s] + quarantined[s] for s in set(by_src) | set(quarantined)}
    assert total == {"alpaca": 5000, "seeds": 175, "belle": 1000, "bilingual": 6000, "sharegpt": 1000}
    assert sum(quarantined.values()) < 20
    assert st["instruct_normalize"]["in"] == st["instruct_normalize"]["kept"] == sum(by_src.values())
    lang = {s: Counter(r["lang"] for r in rows if r["source"] == s) for s in by_src}
    assert lang["alpaca"]["en"] / 5000 > 0.97
    assert lang["belle"]["zh"] / 1000 > 0.9
    assert lang["sharegpt"]["zh"] / by_src["sharegpt"] > 0.9
    assert lang["bilingual"]["en"] > 2900 and lang["bilingual"]["zh"] > 2900
    # every turn carries its language; provenance kept
    for r in rows[:: 97]:
        assert all("lang" in m for m in messages(r))
        assert r["meta"]["origin"] == "source" and r["meta"]["orig_id"] is not None
    lic = Counter((r["source"], r["meta"].get("licence")) for r in rows)
    assert lic[("belle", "research-only")] == 1000 and lic[("sharegpt", "sharegpt-terms")] == by_src["sharegpt"]
    # the Self-Instruct seeds carry a category: mapped to the shared taxonomy, original kept
    seeds = [r for r in rows if r["source"] == "seeds"]
    seeds_raw = {s["id"]: s for s in map(json.loads, open(os.path.join(shared_corpora, "instructions",
                                                                      "self_instruct_seed_tasks.jsonl")))}
    cats = Counter(r["meta"]["category"] for r in seeds)
    for r in seeds:  # is_classification decides; other names go through the name patterns
        if seeds_raw[r["meta"]["orig_id"]]["is_classification"]:
            assert r["meta"]["category"] == "classification"
    assert cats["classification"] >= sum(1 for s in seeds_raw.values() if s["is_classification"]) == 26
    assert all(r["meta"].get("orig_category") for r in seeds)
    assert len(cats) >= 6 and cats["uncategorized"] == 0
    assert Counter(r["meta"]["category"] for r in rows if r["source"] == "alpaca") == {"uncategorized": by_src["alpaca"]}


def test_alpaca_duplicates_across_files(normalised, shared_corpora):
    from lmrefinery.dedup.exact import normalise_for_hash

    out, st = normalised
    rows = {r["id"]: r for r in _stage_rows(out, 1, "instruct_normalize")}
    dups = _stage_rows(out, 2, "instruct_dedup", rejects=True)
    assert {d["reject_reason"] for d in dups} == {"exact_duplicate"}
    cross = [d for d in dups if d["source"] == "bilingual" and rows[d["duplicate_of"]]["source"] == "alpaca"]
    # 269 Alpaca records occur in the 5k subset and in the bilingual set (English halves); all are
    # found, except where the reader quarantined the Alpaca copy (an empty output)
    S = os.path.join(shared_corpora, "instructions")
    key = lambda i, x: normalise_for_hash(i.strip() + ("\n\n" + x.strip() if x.strip() else ""))  # noqa: E731
    alpaca = json.load(open(os.path.join(S, "alpaca_data_5k_subset.json")))
    bil = {key(r["en_instruction"], r["en_input"]) for p in range(3)
           for r in json.load(open(os.path.join(S, f"alpaca_chinese_bilingual_part_{p}.json")))}
    twins = [a for a in alpaca if key(a["instruction"], a["input"]) in bil]
    assert len(twins) == 269
    assert len(cross) == sum(1 for a in twins if a["output"].strip())
    for d in cross[:20]:
        assert pair(d)[0].strip().lower() == pair(rows[d["duplicate_of"]])[0].strip().lower()


def test_filters_on_corpora(normalised):
    out, st = normalised
    rej = _stage_rows(out, 3, "instruct_filter", rejects=True)
    reasons = Counter((r["source"], r["reject_reason"]) for r in rej)
    # ShareGPT answers say "我是由OpenAI训练的语言模型..." and friends
    assert reasons[("sharegpt", "refusal_boilerplate")] >= 30
    assert all(r["reject_reason"] in {"refusal_boilerplate", "response_too_short", "lang_mismatch",
                                      "response_copies_instruction", "empty_response", "no_instruction",
                                      "response_repetitive", "turn_too_long"}
               for r in rej)
    assert st["instruct_filter"]["kept"] > 0.95 * st["instruct_filter"]["in"]


# ---------------------------------------------------------------- templates
TASK_ROWS = {
    "extractive_qa": [{"question": "Who wrote Pride and Prejudice?", "context": "Pride and Prejudice is an 1813 "
                       "novel by Jane Austen.", "answer": "Jane Austen"},
                      {"question": "When was it published?", "context": "The novel was published in 1813.",
                       "answer": "1813"}],
    "summarization": [{"document": "The council met on Monday and approved the new budget for the library, "
                       "which will open on Sundays from next month.", "summary": "Library to open on Sundays."}],
    "nli": [{"premise": "A man is playing a guitar on stage.", "hypothesis": "A man is performing music.",
             "label": "entailment"},
            {"premise": "A dog sleeps.", "hypothesis": "A cat sleeps.", "label": "neutral"}],
    "translation": [{"source": "Good morning.", "target": "早上好。", "source_lang": "en", "target_lang": "zh"}],
    "classification": [{"text": "This film was a waste of two hours.", "label": "negative"},
                       {"text": "What a delightful little book!", "label": "positive"}],
    "dialogue": [{"turns": ["Hi, can you help me?", "Of course, what do you need?", "A pasta recipe.",
                            "Boil the pasta, then add tomato sauce."]}],
}


def _task_rows(task, n=1):
    out = []
    for k in range(n):
        for i, r in enumerate(TASK_ROWS[task]):
            out.append({"id": f"{task}-{k}-{i}", "source": "tasks", "meta": dict(r)})
    return out


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_template_construction(lang):
    made = {}
    for task in TASK_ROWS:
        kw = {"label_set": ["positive", "negative", "neutral"]} if task == "classification" else {}
        recs, rej = construct(_task_rows(task), task, lang, seed=3, **kw)
        assert not rej and len(recs) == len(TASK_ROWS[task])
        made[task] = recs
        for r in recs:
            assert r["meta"]["origin"] == "template" and r["meta"]["parent_id"].startswith(task)
            assert r["meta"]["template"].startswith(("qa_", "sum_", "nli_", "tr_", "cls_", "dlg_"))
            assert r["lang"] == lang
            if lang == "zh" and "mode" not in r["meta"]["template"]:
                assert any("\u4e00" <= ch <= "\u9fff" for ch in pair(r)[0])
    ins, resp = pair(made["extractive_qa"][0])
    assert resp == "Jane Austen" and "Who wrote Pride and Prejudice?" in ins
    # classification: every option rendered, answer is the label
    ins, resp = pair(made["classification"][0])
    assert resp == "negative" and all(o in ins for o in ("positive", "negative", "neutral"))
    # NLI labels in the template's language
    _, resp = pair(made["nli"][0])
    assert resp == ("yes" if lang == "en" else "是")
    # dialogue: history becomes turns or a transcript; the last utterance is the answer
    assert pair(made["dialogue"][0])[1] == "Boil the pasta, then add tomato sauce." or \
        messages(made["dialogue"][0])[-1]["content"] == "Boil the pasta, then add tomato sauce."
    assert pair(made["translation"][0])[1] == "早上好。"


def test_template_choice_seeded_and_extendable(tmp_path):
    rows = _task_rows("summarization", n=40)
    a, _ = construct(rows, "summarization", "en", seed=1)
    b, _ = construct(list(reversed(rows)), "summarization", "en", seed=1)
    c, _ = construct(rows, "summarization", "en", seed=2)
    pick = lambda rs: {r["meta"]["parent_id"]: r["meta"]["template"] for r in rs}  # noqa: E731
    assert pick(a) == pick(b)                      # per example, independent of order
    assert pick(a) != pick(c)                      # the seed changes the choice
    assert len(set(pick(a).values())) == 3         # all English templates in use
    # a user template folder adds a template
    (tmp_path / "summarization.yaml").write_text(
        "task: summarization\ntemplates:\n  en:\n    - id: sum_en_user\n      instruction: 'Précis: {{ document }}'\n"
        "      response: '{{ summary }}'\n", encoding="utf-8")
    d, _ = construct(rows, "summarization", "en", seed=1, template_dirs=(str(tmp_path),))
    assert "sum_en_user" in set(pick(d).values())
    r, why = construct_row({"id": "x", "meta": {"document": "text only"}}, "summarization", "en")
    assert r is None and why == "missing_column:summary"
    r, why = construct_row({"id": "x", "meta": {"text": "t", "label": "odd"}}, "classification", "en",
                           label_set=["a", "b"])
    assert why == "label_not_in_set:odd"
    with pytest.raises(TemplateError):
        construct_row({"id": "x", "meta": {}}, "no_such_task", "en")


def test_construct_stage_in_recipe(tmp_path):
    table = tmp_path / "nli.jsonl"
    rows = [dict(TASK_ROWS["nli"][i % 2], text=str(i)) for i in range(30)] + [{"text": "bad", "premise": "p"}]
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = str(tmp_path / "run")
    recipe = load_recipe({"name": "c", "output": out, "engine": "local", "report": False, "seed": 7,
                          "inputs": [{"name": "nli", "paths": [str(table)], "format": "jsonl"}],
                          "stages": ["read", {"stage": "instruct_construct", "task": "nli", "lang": "zh"}]})
    st = Runner(recipe, quiet=True).run()["stages"][1]
    assert st["kept"] == 30 and st["rejected"] == {"missing_column:hypothesis": 1}
    made = _stage_rows(out, 1, "instruct_construct")
    assert {r["meta"]["category"] for r in made} == {"nli"}
    assert {pair(r)[1] for r in made} == {"是", "无法确定"}


# ---------------------------------------------------------------- filters
def test_each_filter_fires():
    f = PairFilter()
    cases = {
        "empty_response": rec("Name a colour.", "   "),
        "no_instruction": rec("", "Blue."),
        "response_copies_instruction": rec("Repeat after me: the quick brown fox jumps over the lazy dog",
                                           "Repeat after me: the quick brown fox jumps over the lazy dog"),
        "refusal_boilerplate": rec("What's your favourite food?", "As an AI language model, I don't eat food."),
        "lang_mismatch": rec("Explain why the sky is blue in simple words for a child.",
                             "天空之所以是蓝色的，是因为阳光中的蓝光被空气分子散射得更多，所以我们看到的天空是蓝色的。"),
    }
    zh_refusal = rec("你是谁？", "我是由OpenAI训练的语言模型，很高兴为你服务。")
    for want, r in cases.items():
        assert f(r) == want, (want, f(r))
    assert f(zh_refusal) == "refusal_boilerplate"
    assert PairFilter(min_response_words=3)(rec("Capital of France?", "Paris")) == "response_too_short"
    # exemptions: translations, code answers, short factual answers, proper pairs
    assert f(rec("Translate into Chinese: I love reading books in the evening.", "我喜欢在晚上读书。",
                 category="translation")) is None
    assert f(rec("用Python写一个函数，计算列表的和。", "```python\ndef total(xs):\n    return sum(xs)\n```")) is None
    assert f(rec("What is 12 * 12?", "144")) is None
    assert f(rec("Give three tips for staying healthy.", "Eat vegetables, sleep well and walk every day.")) is None
    assert f(rec("请解释什么是光合作用。", "光合作用是植物利用光能，把二氧化碳和水转化为有机物并释放氧气的过程。")) is None


# ---------------------------------------------------------------- balance
def test_balance_caps_floors_temperature():
    rows = [rec(f"q{c}{i}", "a", category=c, i=i) for c, n in (("coding", 400), ("math", 100), ("chat", 10))
            for i in range(n)]
    out, report = balance(rows, ["category"], temperature=1.0, caps={"coding": 150})
    got = Counter(r["meta"]["category"] for r in out)
    assert got == {"coding": 150, "math": 100, "chat": 10}
    assert report["before"]["category"] == {"chat": 10, "coding": 400, "math": 100}
    assert report["after"]["category"] == dict(sorted(got.items()))
    # temperature flattens: with T=3 the largest group's share goes down
    q1 = plan({"a": 400, "b": 100, "c": 10}, temperature=1.0)
    q3 = plan({"a": 400, "b": 100, "c": 10}, temperature=3.0)
    share = lambda q, g: q[g]["target"] / sum(x["target"] for x in q.values())  # noqa: E731
    assert share(q3, "a") < share(q1, "a") and share(q3, "c") > share(q1, "c")
    assert q3["c"]["target"] == 10                  # the rarest group is kept whole
    # with a budget: small groups keep everything, the others share the rest by p_g
    qt = plan({"a": 400, "b": 100, "c": 10}, temperature=2.0, total=300)
    assert qt["c"]["target"] == 10 and sum(x["target"] for x in qt.values()) in (299, 300)
    assert qt["a"]["target"] / qt["b"]["target"] == pytest.approx((400 / 100) ** 0.5, rel=0.02)
    # floors: reported when short, met by repeats when upsampling
    out, rep = balance(rows, ["category"], floors={"chat": 25})
    assert rep["plan"]["chat"]["short"] == 15
    out, rep = balance(rows, ["category"], floors={"chat": 25}, upsample=True)
    reps = [r for r in out if r["meta"].get("repeat_of")]
    assert len(reps) == 15 and all(r["meta"]["origin"] == "upsample" for r in reps)
    # deterministic and order-independent
    a, _ = balance(rows, ["category"], caps={"*": 50}, seed=1)
    b, _ = balance(list(reversed(rows)), ["category"], caps={"*": 50}, seed=1)
    assert {r["id"] for r in a} == {r["id"] for r in b}


# ---------------------------------------------------------------- splits
def _near_dup_rows(shared_corpora, n=600):
    data = json.load(open(os.path.join(shared_corpora, "instructions", "alpaca_data_5k_subset.json")))[:n]
    rows = [rec(d["instruction"] + ("\n\n" + d["input"] if d["input"] else ""), d["output"] or "x",
                category=random.Random(i).choice(["open_qa", "coding", "math"]), i=i) for i, d in enumerate(data)]
    # plant near duplicates: a word dropped / changed, different category
    planted = []
    rng = random.Random(0)
    for i in range(0, n, 4):
        words = pair(rows[i])[0].split()
        if len(words) < 16:
            continue
        j = rng.randrange(len(words))
        variant = " ".join(words[:j] + [words[j].upper()] + words[j + 1:]) + " Please."
        rows.append(rec(variant, "other answer", category="chat", i=f"v{i}"))
        planted.append((rows[i]["id"], rows[-1]["id"]))
    return rows, planted


def test_splits_keep_near_duplicates_together(shared_corpora):
    rows, planted = _near_dup_rows(shared_corpora)
    assert len(planted) >= 15
    out, report = assign_splits(rows, {"train": 0.8, "validation": 0.1, "test": 0.1}, "category", seed=0)
    split = {r["id"]: r["meta"]["split"] for r in out}
    assert all(split[a] == split[b] for a, b in planted)
    # no pair of prompts with word-bigram Jaccard >= 0.7 straddles splits (checked exhaustively)
    from lmrefinery.instruct.split import _shingles, prompt_text

    sh = [_shingles(prompt_text(r)) for r in out]
    for i in range(len(out)):
        for j in range(i + 1, len(out)):
            if sh[i] and sh[j] and len(sh[i] & sh[j]) / len(sh[i] | sh[j]) >= 0.7:
                assert out[i]["meta"]["split"] == out[j]["meta"]["split"]
    # stratified: every category spread roughly 80/10/10
    for cat in ("open_qa", "coding", "math"):
        c = Counter(r["meta"]["split"] for r in out if r["meta"]["category"] == cat and not r["id"].startswith("v"))
        tot = sum(c.values())
        assert abs(c["train"] / tot - 0.8) < 0.1 and c["validation"] > 0 and c["test"] > 0
    # deterministic, independent of order
    out2, _ = assign_splits(list(reversed(rows)), {"train": 0.8, "validation": 0.1, "test": 0.1}, "category", 0)
    assert {r["id"]: r["meta"]["split"] for r in out2} == split
    assert report["rows_in_multi_row_groups"] >= 2 * len(planted)


def test_split_and_balance_stages_on_ray(ray_cluster, tmp_path, shared_corpora):
    rows, planted = _near_dup_rows(shared_corpora, n=300)
    src = tmp_path / "rows"
    src.mkdir()
    for k in range(2):  # two input files -> two parts
        (src / f"p{k}.jsonl").write_text("".join(json.dumps({"messages": messages(r), "id": r["id"],
                                                             "category": r["meta"]["category"]}) + "\n"
                                                 for r in rows[k::2]))
    out = str(tmp_path / "run")
    recipe = load_recipe({"name": "s", "output": out, "engine": "ray", "report": False,
                          "resources": {"workers": 2},
                          "inputs": [{"name": "rows", "paths": [str(src / "*.jsonl")], "format": "openai_messages"}],
                          "stages": ["read", {"stage": "instruct_balance", "caps": {"open_qa": 60}},
                                     {"stage": "instruct_split", "fractions": {"train": 0.8, "test": 0.2}},
                                     {"stage": "instruct_version", "formats": ["messages", "parquet"]}]})
    stats = Runner(recipe, quiet=True).run()
    bal = stats["stages"][1]
    assert bal["rejected"].get("balance_downsampled", 0) > 0
    report = json.load(open(os.path.join(out, "stages", "01-instruct_balance", "balance_report.json")))
    assert report["after"]["category"]["open_qa"] == 60
    assert report["before"]["category"]["open_qa"] > 60
    got = _stage_rows(out, 2, "instruct_split")
    split = {r["meta"]["orig_id"]: r["meta"]["split"] for r in got}
    kept_pairs = [(a, b) for a, b in planted if a in split and b in split]
    assert kept_pairs and all(split[a] == split[b] for a, b in kept_pairs)
    assert set(split.values()) == {"train", "test"}
    # the version written by the last stage: manifest counts match the rows, files as listed
    v = stats["stages"][3]
    man = json.load(open(os.path.join(out, "dataset", "versions",
                                      json.load(open(os.path.join(out, "dataset", "versions", "LATEST.json")))["version"],
                                      "manifest.json")))
    assert man["records"] == v["kept"] == len(got)
    assert man["counts"]["split"] == dict(sorted(Counter(split.values()).items()))
    assert man["counts"]["source"] == {"rows": len(got)}
    assert {f["path"] for f in man["files"]} == {"data/train.parquet", "data/test.parquet",
                                                 "export/train.messages.jsonl", "export/test.messages.jsonl"}


# ---------------------------------------------------------------- export / versions
def _export_rows():
    return [
        rec("Give three tips for staying healthy.", "1. Eat well\n2. Sleep\n3. Move", i=1),
        rec("写一首关于秋天的短诗。", "秋风起，\n落叶黄。", lang="zh", i=2),
        rec("Fix this code:\n```python\nprint 'x'\n```", "```python\nprint('x')\n```", system="You are terse.", i=3),
        {**rec("a", "b", i=4), "meta": {**rec("a", "b", i=4)["meta"], "messages": [
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke, with a \\ backslash and a, comma"},
            {"role": "assistant", "content": "Why did the \"chicken\" cross\tthe road?"}]}},
    ]


NASTY = "line\r\nCR\rVT\x0bFF\x0cFS\x1cGS\x1dRS\x1eNEL\x85LS\u2028PS\u2029 back\\slash \\n not-a-newline"


@pytest.mark.parametrize("fmt", ex.FORMATS)
def test_export_round_trip(tmp_path, fmt):
    rows = _export_rows()
    with_input = rec("x", "Positive.", i=5)
    with_input["meta"]["messages"][0] = {"role": "user", "content": "Classify the sentiment.\n\nI love it.",
                                         "input": "I love it."}
    rows += [with_input, rec("Say it: " + NASTY, NASTY + " 是", system="Sys " + NASTY, i=6)]
    path = str(tmp_path / f"out.{ex.EXT[fmt]}")
    info = ex.write(rows, path, fmt, sep="<sep>")
    assert info["rows"] == len(rows)
    back = ex.read(path, fmt, sep="<sep>")
    want = [[{"role": m["role"], "content": m["content"]} for m in messages(r)] for r in rows]
    assert [[{"role": m["role"], "content": m["content"]} for m in b["messages"]] for b in back] == want
    # one physical line per record for line-based formats, whatever str.splitlines() would break on
    if fmt in ("alpaca", "messages", "txt"):
        text = open(path, encoding="utf-8", newline="").read()
        assert len(text.splitlines()) == len(rows)
    if fmt != "txt":
        assert [b["id"] for b in back] == [r["id"] for r in rows]
    if fmt in ("alpaca", "json", "csv"):       # Alpaca's input field survives
        d = ex.to_alpaca(with_input)
        assert (d["instruction"], d["input"]) == ("Classify the sentiment.", "I love it.")
        assert back[4]["messages"][0].get("input") == "I love it."
    if fmt == "txt":                           # multi-turn: every turn kept, system first (odd field count)
        lines = open(path, encoding="utf-8").read().split("\n")
        assert lines[3].count("<sep>") == 3 and lines[2].count("<sep>") == 2


def test_export_refuses_what_a_format_cannot_hold(tmp_path):
    tool = rec("What is the weather in Paris?", "x", i=9)
    tool["meta"]["messages"] = [{"role": "user", "content": "Weather in Paris?"},
                                {"role": "assistant", "content": '{"name": "get_weather", "arguments": {}}'},
                                {"role": "tool", "content": '{"temp": 21}'},
                                {"role": "assistant", "content": "It is 21 C."}]
    with pytest.raises(ex.NotRepresentable, match="tool turn"):
        ex.txt_line(tool, "<sep>")
    unanswered = rec("Hi", "Hello", i=12)
    unanswered["meta"]["messages"].append({"role": "user", "content": "Still there?"})
    info = ex.write([tool, unanswered, rec("a?", "b.", i=13)], str(tmp_path / "t.txt"), "txt")
    assert info["rows"] == 1 and info["skipped_not_representable"] == 2
    assert ex.read(str(tmp_path / "t.txt"), "txt")[0]["messages"][0]["content"] == "a?"
    info = ex.write([tool, rec("a?", "b.", i=10)], str(tmp_path / "t.jsonl"), "alpaca")
    assert info["rows"] == 1 and info["skipped_tool_conversations"] == 1
    ex.write([tool], str(tmp_path / "t.csv"), "csv")
    assert ex.read(str(tmp_path / "t.csv"), "csv")[0]["messages"] == tool["meta"]["messages"]
    with pytest.raises(ValueError, match="separator"):
        ex.write([rec("a <sep> b", "c", i=11)], str(tmp_path / "s.txt"), "txt")


def test_versions_immutable_and_diff(tmp_path):
    from lmrefinery.instruct.cli import build

    prefix = str(tmp_path / "ds")
    base = [rec(f"Question number {i} about topic {i % 7}?", f"Answer {i} is here.", category=["math", "chat"][i % 2],
                i=i) for i in range(60)]
    m1 = build(base, prefix, check_lang=False, seed=0)
    assert m1["parent"] is None and m1["records"] == 60
    assert sum(m1["counts"]["split"].values()) == 60 and m1["counts"]["category"] == {"chat": 30, "math": 30}
    again = build(base, prefix, check_lang=False, seed=0)
    assert again["version"] == m1["version"] and again.get("reused")
    vdir = os.path.join(prefix, "versions", m1["version"])
    for f in m1["files"]:
        data = open(os.path.join(vdir, f["path"]), "rb").read()
        assert storage.sha256(data) == f["sha256"]
    changed = base[:50] + [rec("A brand new question?", "A new answer.", category="math", i=100)]
    changed[0] = {**changed[0], "meta": {**changed[0]["meta"], "messages": [
        {"role": "user", "content": pair(changed[0])[0]}, {"role": "assistant", "content": "A corrected answer."}]}}
    m2 = build(changed, prefix, check_lang=False, seed=0)
    assert m2["version"] != m1["version"] and m2["parent"] == m1["version"]
    d = diff(os.path.join(prefix, "versions", m1["version"]), f"{prefix}@{m2['version']}")
    assert (d["added"], d["removed"], d["changed"]) == (1, 10, 1)
    assert d["count_deltas"]["category"]["math"] == 1 - 5
    assert "added 1" in format_diff(d)
    assert len(version_rows(prefix)) == 51            # PREFIX resolves to LATEST
    # near duplicates of a prompt can be dropped in the build as well
    twin = rec("Question number 7 about topic 0? Please!", "Another answer.", category="math", i=200)
    m3 = build(changed + [twin], str(tmp_path / "ds3"), check_lang=False, near_dedup=True, near_threshold=0.6)
    assert m3["reports"]["dedup"]["near_duplicates"] == 1 and m3["records"] == 51
    r = subprocess.run([sys.executable, "-m", "lmrefinery.cli", "instruct", "diff", f"{prefix}@{m1['version']}",
                        prefix], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "removed 10" in r.stdout


def test_synonym_augmentation(shared_corpora):
    from lmrefinery.instruct.augment import SynonymModel, synonym_augment

    data = json.load(open(os.path.join(shared_corpora, "instructions", "alpaca_data_5k_subset.json")))
    texts = [d["instruction"] + " " + d["output"] for d in data[:1500]]
    model = SynonymModel.train(texts, dim=32, epoch=5, min_count=3, threshold=0.6, threads=1)
    assert model.synonyms("important") and all(s[:4] != "impo" for s in model.synonyms("important"))
    rows = [rec("Describe the important benefits of regular exercise.\n```python\nimportant = benefits\n```",
                "Exercise improves health.", i=1),
            rec("请描述一下这个重要的问题，并给出建议。", "好的。", lang="zh", i=2)]
    zh = SynonymModel(dictionary={"重要": ["关键"], "建议": ["意见"]})
    out, rej = synonym_augment(rows[:1], model, rate=1.0, seed=0)
    out_zh, _ = synonym_augment(rows[1:], zh, rate=1.0, seed=0)
    assert len(out) == 1 and not rej
    new = pair(out[0])[0]
    assert new != pair(rows[0])[0]
    assert new.endswith("```python\nimportant = benefits\n```")       # code untouched
    assert out[0]["meta"]["origin"] == "synonyms" and out[0]["meta"]["parent_id"] == rows[0]["id"]
    assert pair(out_zh[0])[0] == "请描述一下这个关键的问题，并给出意见。"


def test_synonym_vectors_train_in_a_fresh_process_when_every_rate_hits_nan(shared_corpora, monkeypatch):
    """fastText's "Encountered NaN" at all three rates in this process (as seen in one
    long-lived CI run): the vectors are trained in a new interpreter and loaded from file."""
    import fasttext

    from lmrefinery.instruct.augment import SynonymModel

    data = json.load(open(os.path.join(shared_corpora, "instructions", "alpaca_data_5k_subset.json")))
    texts = [d["instruction"] + " " + d["output"] for d in data[:1500]]
    rates = []

    def diverges(path, lr, **kw):
        rates.append(lr)
        raise RuntimeError("Encountered NaN.")

    monkeypatch.setattr(fasttext, "train_unsupervised", diverges)
    model = SynonymModel.train(texts, dim=32, epoch=5, min_count=3, threshold=0.6, threads=1)
    assert rates == [0.05, 0.025, 0.0125]
    assert model.vectors.get_dimension() == 32
    assert model.synonyms("important") and all(s[:4] != "impo" for s in model.synonyms("important"))


def test_near_dedup_and_decontamination_reuse_dedup_stages(tmp_path, shared_corpora):
    """Instruction rows go through the dedup family's `dedup` (MinHash) and
    `decontaminate` stages unchanged."""
    data = json.load(open(os.path.join(shared_corpora, "instructions", "alpaca_data_5k_subset.json")))
    base = [d for d in data if len(d["output"].split()) > 40][:120]
    near = [dict(d, output=d["output"] + " Hope this helps!") for d in base[:10]]   # near duplicates
    (tmp_path / "train.json").write_text(json.dumps(base + near))
    evals = [{"question": d["instruction"], "answer": d["output"]} for d in base[50:55]]   # leaked eval items
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    out = str(tmp_path / "run")
    recipe = load_recipe({"name": "dd", "output": out, "engine": "local", "report": False,
                          "inputs": [{"name": "alpaca", "paths": [str(tmp_path / "train.json")], "format": "alpaca"}],
                          "stages": ["read", "instruct_normalize",
                                     {"stage": "dedup", "threshold": 0.8},
                                     {"stage": "decontaminate", "eval_sets": [
                                         {"name": "myeval", "paths": [str(tmp_path / "eval.jsonl")],
                                          "fields": ["answer"]}]}]})
    st = {s["stage"]: s for s in Runner(recipe, quiet=True).run()["stages"]}
    assert sum(st["dedup"]["rejected"].values()) == 10
    assert sum(st["decontaminate"]["rejected"].values()) == 5
    kept = _stage_rows(out, 3, "decontaminate")
    assert len(kept) == 115 and all(r["meta"]["kind"] == "conversation" for r in kept)


def test_cli_construct_build_and_tokenize_handoff(tmp_path):
    """`instruct construct` and `instruct build` from the command line, then the
    version's messages export goes to the tokenisation stage (loss-masked shards)."""
    table = tmp_path / "qa.jsonl"
    rows = [{"id": i, "question": f"What is item {i} called in the catalogue of {['birds', 'ships'][i % 2]}?",
             "context": f"In the catalogue, item {i} is called the {'blue' if i % 3 else 'red'} model number {i * 7}.",
             "answer": f"the {'blue' if i % 3 else 'red'} model number {i * 7}"} for i in range(40)]
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib"))
    run = lambda *a: subprocess.run([sys.executable, "-m", "lmrefinery.cli", "instruct", *a], capture_output=True,  # noqa: E731
                                    text=True, cwd=ROOT, env=env)
    r = run("construct", "--table", str(table), "--task", "extractive_qa", "--lang", "en", "--out",
            str(tmp_path / "qa.records.jsonl"), "--seed", "5")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == {"constructed": 40, "rejected": 0}
    prefix = str(tmp_path / "ds")
    r = run("build", "--input", str(tmp_path / "qa.records.jsonl"), "--prefix", prefix, "--no-lang",
            "--fractions", "train=0.75,test=0.25", "--formats", "alpaca,messages,csv,txt,parquet")
    assert r.returncode == 0, r.stderr
    vdir = r.stdout.strip().splitlines()[-1].split("version: ", 1)[1]
    m = json.load(open(os.path.join(vdir, "manifest.json")))
    assert m["records"] == 40 and set(m["counts"]["split"]) == {"train", "test"}
    assert m["sources"][0]["sha256"] == storage.sha256(open(tmp_path / "qa.records.jsonl", "rb").read())
    # hand-off: the train split's messages JSONL -> the tokenize stage -> shards with loss masks
    out = str(tmp_path / "tok")
    recipe = load_recipe({"name": "sft", "output": out, "engine": "local", "report": False,
                          "inputs": [{"name": "sft", "paths": [os.path.join(vdir, "export", "train.messages.jsonl")],
                                      "format": "openai_messages"}],
                          "stages": ["read", {"stage": "tokenize", "valid_fraction": 0.0, "shard_tokens": 100000,
                                              "train": {"vocab_size": 400, "sample_docs": 100}}]})
    st = Runner(recipe, quiet=True).run()["stages"]
    assert st[0]["kept"] == m["counts"]["split"]["train"]
    tm = json.load(open(os.path.join(out, "stages", "01-tokenize", "_manifest.json")))
    assert tm["complete"]
    ds = json.load(open(os.path.join(out, "stages", "01-tokenize", "dataset.json")))
    assert ds["has_loss_mask"] is True


def test_versions_on_s3_and_category_maps(s3_bucket):
    from lmrefinery.instruct.cli import build
    from lmrefinery.instruct.normalize import load_taxonomy, map_category

    prefix = f"s3://{s3_bucket}/instruct/ds"
    rows = [rec(f"Explain idea {i} in one sentence.", f"Idea {i} means something.", i=i) for i in range(20)]
    m1 = build(rows, prefix, check_lang=False, formats=("messages", "parquet"))
    m2 = build(rows[:15], prefix, check_lang=False, formats=("messages", "parquet"))
    assert m2["parent"] == m1["version"]
    assert storage.exists(f"{prefix}/versions/{m1['version']}/manifest.json")
    d = diff(f"{prefix}@{m1['version']}", prefix)
    assert (d["added"], d["removed"], d["b"]) == (0, 5, m2["version"])
    tax = load_taxonomy()
    assert map_category({"format": "dolly", "category": "closed_qa"}, tax) == ("closed_qa", "closed_qa")
    assert map_category({"format": "dolly", "category": "creative_writing"}, tax)[0] == "creative_writing"
    assert map_category({"format": "belle", "category": "Rewrite"}, tax) == ("rewriting", "Rewrite")
    assert map_category({"category": "头脑风暴"}, tax)[0] == "brainstorming"
    assert map_category({"format": "self_instruct", "category": "english_to_chinese_translation"}, tax)[0] == \
        "translation"
    assert map_category({"category": "whatever label"}, tax) == ("other", "whatever label")
    assert map_category({}, tax) == ("uncategorized", None)
