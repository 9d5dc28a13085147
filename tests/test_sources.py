"""Source-aware recipes (issue 14): a map stage can be limited to some inputs with
`sources:`, the other rows pass through unchanged and in place; wrong use is a recipe
error; the tokenize stage refuses (or, if asked, warns about) a mixed source that lost
every document; stats.json has characters in / kept / rejected per stage."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from lmrefinery.cli import main
from lmrefinery.core.recipe import RecipeError, load_recipe
from lmrefinery.core.runner import Runner


def _write_inputs(tmp, corpora: str) -> dict[str, str]:
    """Real text: 30 C4 pages (web), 30 Wikipedia plain-text articles stored one per line
    (the shape that C4's sentence rule drops), 12 chapters-sized pieces of a book."""
    web = tmp / "web.jsonl"
    with open(os.path.join(corpora, "web", "c4_demo.jsonl"), encoding="utf-8") as f:
        web.write_text("".join(json.dumps({"text": json.loads(line)["text"]}) + "\n"
                               for _, line in zip(range(30), f)), encoding="utf-8")
    wiki = tmp / "wiki.jsonl"
    arts = open(os.path.join(corpora, "wiki", "wiki_demo_en_plaintext.txt"), encoding="utf-8").read().splitlines()
    wiki.write_text("".join(json.dumps({"text": a}) + "\n" for a in arts[:30]), encoding="utf-8")
    book = open(os.path.join(corpora, "books", "pg11_alice_in_wonderland_en.txt"), encoding="utf-8").read()
    books = tmp / "books.jsonl"
    books.write_text("".join(json.dumps({"text": book[i:i + 6000]}) + "\n" for i in range(20000, 92000, 6000)),
                     encoding="utf-8")
    return {"web": str(web), "wiki": str(wiki), "books": str(books)}


def _recipe(tmp, paths: dict[str, str], quality: dict, mix: dict | None = None) -> dict:
    stages = ["read", "clean", {"stage": "lid", "allowed": ["en"]}, {"stage": "quality", **quality}]
    if mix is not None:
        stages.append({"stage": "tokenize", "train": {"vocab_size": 400, "sample_docs": 200},
                       "shard_tokens": 50000, "valid_fraction": 0.0, "mix": mix})
    return {"name": "src", "output": str(tmp / "out"), "engine": "local", "report": False,
            "inputs": [{"name": n, "paths": [p], "format": "jsonl"} for n, p in paths.items()],
            "stages": stages}


def _rows(out: str, k: int, name: str, what: str = "data") -> list[dict]:
    d = os.path.join(out, "stages", f"{k:02d}-{name}", what)
    return [r for f in sorted(os.listdir(d)) if f.endswith(".parquet") for r in pq.read_table(os.path.join(d, f))
            .to_pylist()]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_corpora):
    return _write_inputs(tmp_path_factory.mktemp("src-in"), shared_corpora)


def test_web_rules_on_every_source_drop_wiki_and_books_but_not_when_scoped(tmp_path, inputs):
    everywhere = Runner(load_recipe(_recipe(tmp_path / "a", inputs, {})), quiet=True).run()["stages"][3]
    scoped_out = tmp_path / "b"
    stats = Runner(load_recipe(_recipe(scoped_out, inputs, {"sources": ["web"]})), quiet=True).run()
    scoped = stats["stages"][3]
    assert scoped["sources"] == ["web"]
    before = _rows(str(scoped_out / "out"), 2, "lid")
    after = _rows(str(scoped_out / "out"), 3, "quality")
    not_web = [r for r in before if r["source"] != "web"]
    # rows of other sources pass through unchanged, in their place, with null signal columns
    assert [r["id"] for r in after if r["source"] != "web"] == [r["id"] for r in not_web]
    assert scoped["counters"]["passed_through"] == len(not_web)
    kept_ids = [r["id"] for r in after]
    assert kept_ids == [r["id"] for r in before if r["id"] in set(kept_ids)]            # input order kept
    by_id = {r["id"]: r for r in after}
    assert all(by_id[r["id"]]["text"] == r["text"] and by_id[r["id"]]["q_reasons"] is None for r in not_web)
    # the point of scoping: web heuristics reject much of wiki and books; scoped, they keep them
    lost_everywhere = sum(everywhere["rejected"].values())
    assert lost_everywhere > sum(scoped["rejected"].values())
    assert scoped["in"] - scoped["kept"] == sum(scoped["rejected"].values())
    # characters per stage: in = what the stage before kept; quality (a filter) removes none from kept rows
    ch = scoped["chars"]
    assert ch["in"] == stats["stages"][2]["chars"]["kept"] and ch["removed_from_kept"] == 0
    assert ch["in"] == ch["kept"] + ch["rejected"]


def test_sources_mistakes_are_recipe_errors(tmp_path, inputs):
    with pytest.raises(RecipeError, match=r"stages\[3\]\.sources.*unknown input 'webb'; did you mean 'web'"):
        load_recipe(_recipe(tmp_path, inputs, {"sources": ["webb"]}))
    with pytest.raises(RecipeError, match="empty list"):
        load_recipe(_recipe(tmp_path, inputs, {"sources": []}))
    bad = _recipe(tmp_path, inputs, {})
    bad["stages"].append({"stage": "exact_dedup", "sources": ["web"]})
    with pytest.raises(RecipeError, match="only map stages.*'exact_dedup' is a global stage"):
        load_recipe(bad)
    # --set reaches the key too
    r = load_recipe(_recipe(tmp_path, inputs, {}), overrides=["stages.quality.sources=[web, books]"])
    assert r.stages[3].sources == ["web", "books"] and "sources" not in r.stages[3].params


def test_tokenize_refuses_a_mixed_source_that_lost_everything(tmp_path, inputs, capsys):
    mix = {"mode": "proportions", "weights": {"web": 0.5, "wiki": 0.3, "books": 0.2}}
    quality = {"thresholds": {"gopher_quality": {"min_doc_words": 10 ** 6}}, "sources": ["books"]}
    recipe = _recipe(tmp_path, inputs, quality, mix)
    assert main(["run", "--quiet", "--engine", "local", _dump(tmp_path, recipe)]) == 2
    err = capsys.readouterr().err
    assert "mixed source(s) ['books'] have no train documents left" in err and "on_empty_source" in err
    recipe["stages"][-1]["mix"]["on_empty_source"] = "warn"
    stats = Runner(load_recipe(recipe), quiet=True).run()
    assert "['books'] have no train documents" in capsys.readouterr().err
    ds = json.load(open(os.path.join(stats["output"], "stages", "04-tokenize", "dataset.json")))
    assert ds["mixing"]["empty_sources"] == ["books"] and set(ds["mixing"]["achieved"]) == {"web", "wiki"}
    assert stats["stages"][4]["tokens"]["train"] > 0


def _dump(tmp, recipe: dict) -> str:
    p = tmp / "recipe.json"
    p.write_text(json.dumps(recipe))
    return str(p)
