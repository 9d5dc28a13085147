"""Decontamination against real evaluation-style sets (Self-Instruct seeds in
English, BELLE seed tasks in Chinese): planted leaks are found and reported
by item, clean documents pass, flag mode keeps rows."""
from __future__ import annotations

import glob
import json
import os

import pyarrow as pa
import pytest
from pydantic import ValidationError

from lmrefinery.core import storage
from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.runner import Runner
from lmrefinery.core.schema import docs_to_table
from lmrefinery.core.stage import StageContext, get_stage


def _eval_sets(shared):
    ins = os.path.join(shared, "instructions")
    return [{"name": "selfinstruct", "paths": [os.path.join(ins, "self_instruct_seed_tasks.jsonl")],
             "fields": ["instruction", "instances.0.input", "instances.0.output"], "id_field": "id"},
            {"name": "belle_seed", "paths": [os.path.join(ins, "belle_zh_seed_tasks.jsonl")],
             "fields": ["instruction", "instances.0.input", "instances.0.output"], "id_field": "id"}]


def _load(path):
    return [json.loads(x) for x in open(path, encoding="utf-8") if x.strip()]


@pytest.fixture(scope="module")
def corpus(shared_corpora):
    ins = os.path.join(shared_corpora, "instructions")
    en = _load(os.path.join(ins, "self_instruct_seed_tasks.jsonl"))
    zh = _load(os.path.join(ins, "belle_zh_seed_tasks.jsonl"))
    c4 = [json.loads(x)["text"] for x in open(os.path.join(shared_corpora, "web", "c4_demo.jsonl"), encoding="utf-8")]
    with open(os.path.join(shared_corpora, "books", "pg23950_sanguo_yanyi_zh-Hant.txt"), encoding="utf-8") as f:
        sanguo = f.read()[5000:25000]
    clean = [{"id": f"c4-{i}", "text": t} for i, t in enumerate(c4[:120])]
    clean += [{"id": f"sg-{i}", "text": sanguo[i * 2000:(i + 1) * 2000], "lang": "zh"} for i in range(10)]
    # leaks: an evaluation answer pasted (re-cased, re-punctuated) into real web text,
    # a Chinese seed task inside a classical passage, and an instruction alone
    long_out = [i for i, r in enumerate(en) if len(r["instances"][0]["output"].split()) >= 20]
    i1, i2, i3 = long_out[3], long_out[10], long_out[11]
    leak_en = en[i1]["instances"][0]["output"]
    planted = [
        {"id": "leak-en", "text": c4[200] + "\n\n" + leak_en.upper().replace(",", " ,") + "\n" + c4[201]},
        {"id": "leak-zh", "text": sanguo[:300] + zh[30]["instruction"] + zh[30]["instances"][0]["output"] +
         sanguo[300:600], "lang": "zh"},
        {"id": "leak-two", "text": en[i2]["instruction"] + " " + en[i2]["instances"][0]["output"] + " " +
         en[i3]["instances"][0]["output"]},
    ]
    expect = {"leak-en": {f"selfinstruct:{en[i1]['id']}"}, "leak-zh": {f"belle_seed:{zh[30]['id']}"},
              "leak-two": {f"selfinstruct:{en[i2]['id']}", f"selfinstruct:{en[i3]['id']}"}}
    # a near miss: the leaked answer with every 10th word dropped shares no 13-gram
    words = leak_en.split()
    near_miss = " ".join(w for i, w in enumerate(words) if i % 10 != 5)
    clean.append({"id": "near-miss", "text": c4[202] + " " + near_miss})
    return {"clean": clean, "planted": planted, "expect": expect}


def _stage(shared, **kw):
    cls = get_stage("decontaminate")
    st = cls(cls.Params(eval_sets=_eval_sets(shared), **kw), StageContext(output_root="/tmp", stage_dir="/tmp"))
    st.setup()
    return st


def test_drop_reports_items(shared_corpora, corpus):
    st = _stage(shared_corpora)
    res = st.process(docs_to_table(corpus["clean"] + corpus["planted"]))
    rej = {r["id"]: set(json.loads(r["decontam_hits"])) for r in res.rejected.to_pylist()}
    assert rej == corpus["expect"]
    assert res.kept.num_rows == len(corpus["clean"]) and "decontam_hits" not in res.kept.column_names
    reasons = {r["id"]: r["reject_reason"] for r in res.rejected.to_pylist()}
    assert reasons["leak-zh"] == "eval_overlap:belle_seed" and reasons["leak-en"] == "eval_overlap:selfinstruct"
    assert res.counters["contaminated:selfinstruct"] == 2 and res.counters["contaminated:belle_seed"] == 1
    for ids in corpus["expect"].values():
        for item in ids:
            assert res.counters[f"hit:{item}"] == 1


def test_ngram_length_matters(shared_corpora, corpus):
    """With 8-word n-grams the near miss (a 9-word run survives) is caught too."""
    st = _stage(shared_corpora, ngram=8)
    res = st.process(docs_to_table(corpus["clean"] + corpus["planted"]))
    assert "near-miss" in {r["id"] for r in res.rejected.to_pylist()}


def test_flag_mode_and_pipeline(shared_corpora, corpus, tmp_path):
    p = tmp_path / "in" / "docs.jsonl"
    p.parent.mkdir()
    with open(p, "w", encoding="utf-8") as f:
        for d in corpus["clean"] + corpus["planted"]:
            f.write(json.dumps({"text": d["text"], "key": d["id"], "lang": d.get("lang")}, ensure_ascii=False) + "\n")
    out = str(tmp_path / "run")
    rec = {"name": "d", "output": out, "engine": "local", "report": False,
           "inputs": [{"name": "x", "format": "jsonl", "paths": [str(p)],
                       "fields": {"text": "text", "title": "key", "lang": "lang"}}],
           "stages": [{"stage": "read"}, {"stage": "decontaminate", "eval_sets": _eval_sets(shared_corpora),
                                          "action": "flag"}]}
    stats = Runner(load_recipe(rec), quiet=True).run()
    row = stats["stages"][1]
    n = len(corpus["clean"]) + len(corpus["planted"])
    assert row["in"] == row["kept"] == n and row["rejected"] == {}
    assert row["counters"]["contaminated:selfinstruct"] == 2
    tb = pa.concat_tables([storage.read_parquet(f) for f in glob.glob(os.path.join(out, "stages", "01-*", "data", "*"))])
    flagged = {r["title"]: set(json.loads(r["decontam_hits"])) for r in tb.to_pylist() if r["contaminated"]}
    assert flagged == corpus["expect"]


def test_eval_set_errors(shared_corpora, tmp_path):
    cls = get_stage("decontaminate")
    with pytest.raises(ValidationError, match="eval_sets"):
        cls.Params(eval_sets=[])
    st = cls(cls.Params(eval_sets=[{"name": "x", "paths": [str(tmp_path / "missing*.jsonl")]}]),
             StageContext(output_root="/tmp", stage_dir="/tmp"))
    with pytest.raises(FileNotFoundError, match="no files match"):
        st.setup()
    # short items are ignored, not matched everywhere
    p = tmp_path / "short.txt"
    p.write_text("yes\nthe answer is\n", encoding="utf-8")
    st = cls(cls.Params(eval_sets=[{"name": "s", "paths": [str(p)], "format": "txt"}]),
             StageContext(output_root="/tmp", stage_dir="/tmp"))
    st.setup()
    res = st.process(docs_to_table([{"id": "a", "text": "yes the answer is no, the answer is yes"}]))
    assert res.kept.num_rows == 1 and res.rejected is None


def _code_item(en):
    return next(r for r in en if r["id"] == "seed_task_28")


def test_mixed_script_leaks_are_found_both_ways(shared_corpora, corpus):
    """A code question copied verbatim into a Chinese document, and a Chinese task copied
    into an English web page: with one token stream for both scripts (script: mixed, the
    default) both are found; tokenising each text as all-words or all-characters (auto,
    the earlier default) shares no n-gram and misses both."""
    ins = os.path.join(shared_corpora, "instructions")
    en = _load(os.path.join(ins, "self_instruct_seed_tasks.jsonl"))
    zh = _load(os.path.join(ins, "belle_zh_seed_tasks.jsonl"))
    belle = _load(os.path.join(ins, "belle_open_source_1k.jsonl"))
    c4 = [json.loads(x)["text"] for x in open(os.path.join(shared_corpora, "web", "c4_demo.jsonl"), encoding="utf-8")]
    code = _code_item(en)
    zh_doc = "".join(r["output"] for r in belle[:12])[:1500]
    task = zh[40]
    docs = [
        {"id": "code-in-zh", "lang": "zh", "text": zh_doc[:700] + "\n请看下面的问题：\n" + code["instruction"] + "\n" +
         code["instances"][0]["input"] + "\n" + zh_doc[700:]},
        {"id": "zh-in-en", "lang": "en", "text": c4[210] + "\n" + task["instruction"] + task["instances"][0]["output"]
         + "\n" + c4[211]},
        {"id": "clean-zh", "lang": "zh", "text": zh_doc},
        {"id": "clean-en", "lang": "en", "text": c4[212]},
    ]
    assert len(task["instruction"] + task["instances"][0]["output"]) >= 13
    res = _stage(shared_corpora).process(docs_to_table(docs))
    hits = {r["id"]: set(json.loads(r["decontam_hits"])) for r in res.rejected.to_pylist()}
    # BELLE's seed_task_28 is the Chinese translation of the same task, with the same code
    # (a mixed-script item): the code found in the Chinese document matches it too
    assert hits == {"code-in-zh": {"selfinstruct:seed_task_28", "belle_seed:seed_task_28"},
                    "zh-in-en": {f"belle_seed:{task['id']}"}}
    old = _stage(shared_corpora, script="auto").process(docs_to_table(docs))
    assert old.rejected is None or old.rejected.num_rows == 0


def test_latin_words_inside_chinese_text_no_longer_match_as_letter_windows(tmp_path):
    """Character mode turned `singing and dancing` into the letters `singinganddancing`, whose
    13-letter windows match any Chinese text quoting the same three words: a false hit.
    In one stream they are three word tokens and a 13-token n-gram needs real shared context."""
    ev = tmp_path / "eval.txt"
    ev.write_text("我们的晚会节目包括 singing and dancing 表演，欢迎大家今晚准时参加活动。\n", encoding="utf-8")
    doc = {"id": "park", "lang": "zh", "text": "昨天公园里有很多人在 singing and dancing，孩子们玩得很开心，天气也很好。"}
    leak = {"id": "leak", "lang": "zh", "text": "通知：我们的晚会节目包括 singing and dancing 表演，欢迎大家今晚准时参加活动。谢谢。"}

    def run(script):
        cls = get_stage("decontaminate")
        st = cls(cls.Params(eval_sets=[{"name": "ev", "paths": [str(ev)], "format": "txt"}], script=script),
                 StageContext(output_root=str(tmp_path), stage_dir=str(tmp_path)))
        st.setup()
        res = st.process(docs_to_table([doc, leak]))
        return sorted(r["id"] for r in res.rejected.to_pylist()) if res.rejected is not None else []
    assert run("auto") == ["leak", "park"]     # the park document is a false hit
    assert run("mixed") == ["leak"]
