"""Leak-free, stable splits and raw instruction files, on the real shared
instruction sets: translation twins, augmentation children and near-duplicate
clusters never straddle splits; adding rows moves no existing row; `instruct
diff` fails on train<->test moves; every instruct command reads raw reader
formats and refuses unreadable files with exit 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from lmrefinery.instruct.common import load_records, make_record, messages, pair, sniff_format
from lmrefinery.instruct.split import assign_splits, crossing_groups, prompt_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRACTIONS = {"train": 0.9, "validation": 0.05, "test": 0.05}


def _cli(*args: str, cwd: str = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmrefinery.cli", "instruct", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture(scope="module")
def corpus(shared_corpora):
    S = os.path.join(shared_corpora, "instructions")
    bilingual = []
    for k in range(3):
        bilingual += load_records(os.path.join(S, f"alpaca_chinese_bilingual_part_{k}.json"))
    alpaca = load_records(os.path.join(S, "alpaca_data_5k_subset.json"))
    return bilingual, alpaca


def _children(rows: list[dict], every: int = 10) -> list[dict]:
    """Augmentation children as augment.py writes them (origin + parent_id)."""
    out = []
    for r in rows[::every]:
        msgs = [dict(m) for m in messages(r)]
        msgs[0]["content"] += " Answer briefly."
        out.append(make_record(msgs, "augment", origin="paraphrase", parent_id=r["id"], lang=r.get("lang")))
    return out


def test_groups_never_cross_splits_on_bilingual_alpaca(corpus):
    bilingual, alpaca = corpus
    assert len(bilingual) > 5900 and len(alpaca) > 4990
    assert {r["lang"] for r in bilingual} == {"en", "zh"}
    kids = _children(bilingual + alpaca)
    rows = bilingual + alpaca + kids
    out, report = assign_splits(rows, FRACTIONS, seed=0)
    split = {r["id"]: r["meta"]["split"] for r in out}
    held_out = [r for r in out if r["meta"]["split"] == "test"]
    assert 0.03 < len(held_out) / len(out) < 0.07
    # translation twins: the en and zh halves of one record
    twins = Counter(r["meta"]["pair_id"] for r in bilingual)
    assert sum(1 for n in twins.values() if n == 2) > 2900
    assert crossing_groups(out, "pair_id") == []
    # augmentation children stay with their parent
    assert len(kids) > 1000 and all(split[k["id"]] == split[k["meta"]["parent_id"]] for k in kids)
    # near duplicates across files: the Alpaca subset shares ~269 prompts with the bilingual en halves
    by_prompt: dict[str, set] = {}
    for r in out:
        if r["source"] != "augment":
            by_prompt.setdefault(prompt_text(r).strip().lower(), set()).add(r["meta"]["split"])
    assert all(len(s) == 1 for s in by_prompt.values())
    en_prompts = {prompt_text(r).strip().lower() for r in bilingual if r["lang"] == "en"}
    assert sum(1 for r in alpaca if prompt_text(r).strip().lower() in en_prompts) > 200
    assert report["rows_in_multi_row_groups"] > 2 * 2900
    # the row order does not matter
    out2, _ = assign_splits(list(reversed(rows)), FRACTIONS, seed=0)
    assert {r["id"]: r["meta"]["split"] for r in out2} == split


def test_adding_one_percent_moves_no_row(corpus):
    bilingual, alpaca = corpus
    base = bilingual[:3000] + alpaca[:2000]
    new = bilingual[3000:3050]            # 1% new rows, with their own twins
    out, _ = assign_splits(base, FRACTIONS, seed=0)
    before = {r["id"]: r["meta"]["split"] for r in out}
    out2, _ = assign_splits(base + new, FRACTIONS, seed=0)
    after = {r["id"]: r["meta"]["split"] for r in out2}
    moved = Counter(f"{before[i]}->{after[i]}" for i in before if before[i] != after[i])
    assert moved == Counter()
    assert Counter(before.values())["test"] > 100
    # a new row that links two old groups in different splits: pinned to the parent version it pulls
    # the group into the held-out split, never a test row into train
    tr = next(r for r in out if r["meta"]["split"] == "train")
    te = next(r for r in out if r["meta"]["split"] == "test")
    bridge = make_record(messages(tr), "bridge", origin="test", lang="en", group="g1")
    tr2 = {**tr, "meta": dict(tr["meta"], group="g1")}
    te2 = {**te, "meta": dict(te["meta"], group="g1")}
    rows = [tr2 if r["id"] == tr["id"] else te2 if r["id"] == te["id"] else r for r in base] + [bridge]
    out3, rep = assign_splits(rows, FRACTIONS, seed=0, previous=before)
    after3 = {r["id"]: r["meta"]["split"] for r in out3}
    assert after3[te["id"]] == after3[tr["id"]] == after3[bridge["id"]] == "test"
    assert rep["groups_pinned_by_previous"] > 0
    assert [i for i in before if before[i] == "test" and after3[i] != "test"] == []


def test_build_pins_to_latest_and_diff_flags_leaks(corpus, tmp_path):
    from lmrefinery.instruct.cli import build
    from lmrefinery.instruct.versioning import diff, format_diff

    bilingual, _ = corpus
    prefix = str(tmp_path / "ds")
    base = bilingual[:600]
    m1 = build(base, prefix, check_lang=False, seed=0)
    m2 = build(base + bilingual[600:606], prefix, check_lang=False, seed=0)
    d = diff(f"{prefix}@{m1['version']}", f"{prefix}@{m2['version']}")
    assert d["added"] == m2["records"] - m1["records"] > 0 and d["moved_split"] == 0 and d["leaking_moves"] == 0
    r = _cli("diff", f"{prefix}@{m1['version']}", f"{prefix}@{m2['version']}")
    assert r.returncode == 0, r.stderr
    # a different seed re-deals the groups: train<->test moves are an error unless allowed
    m3 = build(base, str(tmp_path / "other"), check_lang=False, seed=7)
    d = diff(f"{prefix}@{m1['version']}", os.path.join(str(tmp_path / "other"), "versions", m3["version"]))
    assert d["leaking_moves"] > 0 and "ERROR" in format_diff(d)
    assert d["moves"].get("test->train", 0) + d["moves"].get("train->test", 0) > 0
    other = os.path.join(str(tmp_path / "other"), "versions", m3["version"])
    r = _cli("diff", f"{prefix}@{m1['version']}", other)
    assert r.returncode == 1 and "moved between train and test" in r.stderr
    assert _cli("diff", f"{prefix}@{m1['version']}", other, "--allow-moves").returncode == 0


# ---------------------------------------------------------------- raw files everywhere
@pytest.mark.parametrize("name,fmt", [("alpaca_data_5k_subset.json", "alpaca"),
                                      ("alpaca_chinese_bilingual_part_0.json", "alpaca_bilingual"),
                                      ("belle_open_source_1k.jsonl", "alpaca"),
                                      ("sharegpt_zh_1k.jsonl", "sharegpt"),
                                      ("self_instruct_seed_tasks.jsonl", "self_instruct")])
def test_formats_sniffed_from_real_files(shared_corpora, name, fmt):
    from lmrefinery.instruct.common import _first_object

    path = os.path.join(shared_corpora, "instructions", name)
    spec = {"path": path, "rel": name, "input": "x", "options": {}}
    assert sniff_format(_first_object(spec)) == fmt
    rows = load_records(path)
    assert len(rows) > 150 and all(pair(r)[0] and pair(r)[1] for r in rows)


def test_belle_eval_and_openai_and_dolly_records(tmp_path):
    p = tmp_path / "eval_set.json"     # BELLE's eval file shape
    p.write_text(json.dumps([{"question": "判断下面句子的情感：我很开心。", "std_answer": "积极", "class": "classification"},
                             {"question": "写一首诗", "std_answer": "", "class": "generation"}], ensure_ascii=False))
    rows = load_records(str(p))
    assert [pair(r) for r in rows] == [("判断下面句子的情感：我很开心。", "积极")]
    assert rows[0]["meta"]["category"] == "classification"
    q = tmp_path / "dolly.jsonl"
    q.write_text(json.dumps({"instruction": "Who wrote it?", "context": "Hamlet is a play by Shakespeare.",
                             "response": "Shakespeare.", "category": "closed_qa"}) + "\n")
    r = load_records(str(q))[0]
    assert messages(r)[0]["input"] == "Hamlet is a play by Shakespeare." and r["meta"]["category"] == "closed_qa"


def test_cli_commands_take_raw_files_and_refuse_bad_ones(shared_corpora, tmp_path):
    S = os.path.join(shared_corpora, "instructions")
    r = _cli("filter", "--input", os.path.join(S, "alpaca_data_5k_subset.json"), "--no-lang",
             "--out", str(tmp_path / "f.jsonl"))
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["kept"] > 4900 and "no_instruction" not in stats["rejected"]
    for name in ("belle_open_source_1k.jsonl", "sharegpt_zh_1k.jsonl"):
        r = _cli("build", "--input", os.path.join(S, name), "--prefix", str(tmp_path / name), "--no-lang",
                 "--formats", "messages")
        assert r.returncode == 0, r.stderr
        m = json.loads(r.stdout[:r.stdout.rindex("}") + 1])
        assert m["records"] > 800 and m["counts"]["split"]["test"] > 0
    bad = tmp_path / "bad.json"
    bad.write_text("this is not json\n")
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"title": "no instruction here"}\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cmds = {"filter": ["--out", str(tmp_path / "o.jsonl")], "build": ["--prefix", str(tmp_path / "p")],
            "evol": ["--out", str(tmp_path / "e.jsonl"), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]}
    cases = [(bad, "malformed_json", "filter"), (odd, "unknown shape", "build"), (empty, "no records", "evol"),
             (tmp_path / "missing.json", "no such file", "filter")]
    for f, words, cmd in cases:
        r = _cli(cmd, "--input", str(f), *cmds[cmd])
        assert r.returncode == 2 and str(f.name) in r.stderr and words in r.stderr, (cmd, r.stderr)
    assert not (tmp_path / "p").exists()


def test_heldout_items_dedup_and_scores_per_language(corpus, tmp_path):
    from lmrefinery.instruct.balance import repeat_copy
    from lmrefinery.instruct.cli import build
    from lmrefinery.instruct.heldout import heldout_items, score_by_language

    bilingual, _ = corpus
    base = bilingual[:400]
    prefix = str(tmp_path / "ev")
    m = build(base, prefix, check_lang=False, seed=0, formats=("parquet",))
    items, rep = heldout_items(prefix, "test")
    n_test = m["counts"]["split"]["test"]
    assert rep["rows"] == n_test and len(items) == n_test - rep["duplicate_prompts_dropped"] - rep["no_reference"]
    # upsampled copies sit in their original's split (repeat_of links them) but never fill the held-out set
    tests = [r for r in base if r["id"] in {i.id for i in items}]
    copies = [repeat_copy(r, 1) for r in tests] + [repeat_copy(r, 2) for r in tests]
    m2 = build(base + copies, str(tmp_path / "ev2"), check_lang=False, seed=0, formats=("parquet",),
               dedup=False)
    assert m2["counts"]["split"]["test"] == 3 * n_test
    items2, rep2 = heldout_items(str(tmp_path / "ev2"), "test")
    assert [i.id for i in items2] == [i.id for i in items] and rep2["repeats_dropped"] == 2 * n_test
    assert {i.lang for i in items} == {"en", "zh"}
    perfect = score_by_language(items, [i.reference for i in items])
    assert set(perfect) == {"all", "en", "zh"}
    assert all(v["exact_match"] == 1.0 and v["rougeL"] == pytest.approx(1.0) for v in perfect.values())
    wrong = score_by_language(items, ["no idea" for _ in items])
    assert wrong["all"]["exact_match"] == 0.0 and wrong["en"]["rougeL"] < 0.2
