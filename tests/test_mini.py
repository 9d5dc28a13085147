"""The mini recipe end to end on the generated sample shards, scored against
the labels planted in them."""
import json
import os

import pytest

from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.summary import format_summary
from lmrefinery.run import run_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mini_run(ray_cluster, samples_dir, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("LMR_SAMPLES", samples_dir)
    monkeypatch_module.setenv("LMR_RUNS", str(tmp_path_factory.mktemp("runs")))
    recipe = load_recipe(os.path.join(ROOT, "conf", "pipelines", "mini.yaml"))
    return run_recipe(recipe, quiet=True)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_every_stage_accounts_for_every_document(mini_run):
    prev = None
    for s in mini_run["stages"]:
        assert s["in"] == s["kept"] + sum(s["rejected"].values()), s
        if prev is not None:
            assert s["in"] == prev
        prev = s["kept"]


def test_rejects_are_the_rows_each_stage_received(mini_run):
    """Across the whole run: a reject's id and text are those of a row the stage before kept
    (nothing lost to a rewrite), and characters in = kept + rejected for every filter."""
    import pyarrow.parquet as pq

    from lmrefinery.core.stage import get_stage

    out = mini_run["output"]

    def rows(stage: dict, what: str) -> dict:
        d = os.path.join(out, "stages", f"{stage['index']:02d}-{stage['stage']}", what)
        got = {}
        for f in sorted(os.listdir(d)):
            if f.endswith(".parquet"):
                t = pq.read_table(os.path.join(d, f), columns=["id", "text"])
                got.update(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
        return got

    stages = mini_run["stages"]
    checked = 0
    for before, stage in zip(stages, stages[1:]):
        if stage["stage"] == "tokenize" or not sum(stage["rejected"].values()):
            continue
        received, rejected = rows(before, "data"), rows(stage, "rejects")
        assert rejected and all(received[i] == t for i, t in rejected.items()), stage["stage"]
        checked += 1
        if not get_stage(stage["stage"]).changes_text:
            c = stage["chars"]
            assert c["in"] == c["kept"] + c["rejected"] and c["removed_from_kept"] == 0, stage
    assert checked >= 4   # length_filter, lid, quality, the dedups (clean and pii reject nothing here)


def test_planted_problems_are_removed_by_the_right_stages(mini_run):
    p = mini_run["planted"]
    print(format_summary(mini_run))
    assert p["too_short"]["removed_by"] == {"length_filter": p["too_short"]["planted"]}
    assert p["spam"]["removed"] == p["spam"]["planted"] > 0
    assert p["boilerplate"]["removed"] == p["boilerplate"]["planted"] > 0
    for kind, stage in (("exact_dup", "exact_dedup"), ("near_dup", "dedup")):
        assert p[kind]["planted"] > 0 and p[kind]["kept"] == 0, p[kind]
        assert p[kind]["removed_by"].get(stage, 0) >= 0.8 * p[kind]["planted"], p[kind]
    good = p["good"]
    filtered = sum(v for k, v in good["removed_by"].items() if k != "tokenize")  # tokenize = mixing down-sample
    assert filtered <= 0.15 * good["planted"], good


def test_outputs_shards_and_report(mini_run):
    out = mini_run["output"]
    tok = [s for s in mini_run["stages"] if s["stage"] == "tokenize"][0]
    assert tok["kept"] > 0
    ds = json.load(open(os.path.join(out, "stages", f"{tok['index']:02d}-tokenize", "dataset.json")))
    assert ds["splits"]["train"]["tokens"] > 0
    assert os.path.exists(os.path.join(out, "report", "index.html"))


def test_token_funnel_counts_each_stage_with_the_run_tokenizer(mini_run):
    """stats.json: every stage's tokens in = kept + rejected (+ what a transform cut), the
    chain links up, and the last filter's kept tokens equal a hand count of its parts
    with the tokenizer the tokenize stage wrote."""
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    out = mini_run["output"]
    stages = mini_run["stages"]
    assert all("tokens" in s for s in stages), [s["stage"] for s in stages if "tokens" not in s]
    prev = None
    for s in stages:
        t = s["tokens"]
        assert t["in"] == t["kept"] + t["rejected"] + t["removed_from_kept"], s["stage"]
        if prev is not None:
            assert t["in"] == prev, s["stage"]
        if s["chars"].get("removed_from_kept", 0) == 0:
            assert t["removed_from_kept"] == 0, s["stage"]   # a filter: text unchanged
        assert (t["rejected"] > 0) == (sum(s["rejected"].values()) > 0 and s["chars"]["rejected"] > 0), s["stage"]
        prev = t["kept"]
    tok_stage = stages[-1]
    assert tok_stage["stage"] == "tokenize" and tok_stage["tokens"]["train"] > 0
    tok = Tokenizer.from_file(os.path.join(out, "stages", f"{tok_stage['index']:02d}-tokenize", "tokenizer",
                                           "tokenizer.json"))
    # every stage's kept tokens, derived or encoded, equal a hand count of its kept parts
    # (the funnel encodes kept parts only before a transform and before tokenize)
    for st in stages[:-1]:
        d = os.path.join(out, "stages", f"{st['index']:02d}-{st['stage']}")
        parts = json.load(open(os.path.join(d, "_manifest.json")))["outputs"]
        texts = [x or "" for o in parts
                 for x in pq.read_table(os.path.join(d, o["path"]), columns=["text"]).column("text").to_pylist()]
        hand = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
        assert hand > 0 and st["tokens"]["kept"] == hand, st["stage"]
    last = stages[-2]
    stored = json.load(open(os.path.join(out, "stats.json")))
    assert stored["stages"][-2]["tokens"] == last["tokens"]
