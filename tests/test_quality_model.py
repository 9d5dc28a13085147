"""Model-based quality: `lmrefinery quality-model train` on real reference text
(Wikipedia, a book, Alpaca answers) vs real web text (C4, CC WARC), its held-out
report, and the `quality_model` stage (threshold and seeded Pareto sampling)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lmrefinery.core.schema import docs_to_table
from lmrefinery.core.stage import StageContext, get_stage


@pytest.fixture(scope="module")
def trained(shared_corpora, tmp_path_factory):
    from lmrefinery.cli import main

    c = shared_corpora
    out = str(tmp_path_factory.mktemp("qm") / "quality.bin")
    argv = ["quality-model", "train", "--out", out, "--max-docs-per-class", "160", "--seed", "3",
            "--bucket", "20000", "--dim", "32",
            "--positive", f"{c}/wiki/wiki_demo_en_plaintext.txt",
            "--positive", f"{c}/books/pg11_alice_in_wonderland_en.txt",
            "--positive", f"{c}/instructions/alpaca_data_5k_subset.json::instruction+output",
            "--negative", f"{c}/web/c4_demo.jsonl",
            "--negative", f"{c}/web/cc-main-2020-34-resiliparse-sample.warc.gz"]
    assert main(argv) == 0
    return out


def stage(**params):
    cls = get_stage("quality_model")
    st = cls(cls.Params(**params), StageContext(output_root=".", stage_dir=".", seed=7))
    st.setup()
    return st


def test_training_report(trained):
    rep = json.load(open(trained + ".json"))
    assert 100_000 < os.path.getsize(trained) < 10_000_000
    c = rep["counts"]
    assert c["positive_train"] == c["negative_train"] == 128 and c["positive_heldout"] == 32
    h = rep["heldout"]
    assert set(h) >= {"precision", "recall", "f1", "auc"}
    assert h["tp"] + h["fn"] == 32 and h["fp"] + h["tn"] == 32
    assert h["auc"] > 0.75 and h["precision"] > 0.6 and h["recall"] > 0.5


@pytest.fixture(scope="module")
def docs(shared_corpora):
    c = shared_corpora
    with open(f"{c}/web/ccnet-cc_en_head-0174.jsonl", encoding="utf-8") as f:  # not used in training
        web = [json.loads(ln)["text"] for ln in f]
    with open(f"{c}/books/pg1342_pride_and_prejudice_en_with_pg_header.txt", encoding="utf-8") as f:
        from lmrefinery.quality.sources import chunk_text

        book = chunk_text(f.read(), 2000)[20:60]  # also unseen
    rows = [{"id": f"w{i}", "text": t} for i, t in enumerate(web)] + \
           [{"id": f"b{i}", "text": t} for i, t in enumerate(book)]
    return docs_to_table(rows)


def test_scores_rank_books_above_web(trained, docs):
    res = stage(model=trained, mode="score").process(docs)
    assert res.rejected is None
    s = dict(zip(res.kept.column("id").to_pylist(), res.kept.column("quality_score").to_pylist()))
    book = np.array([v for k, v in s.items() if k[0] == "b"])
    web = np.array([v for k, v in s.items() if k[0] == "w"])
    assert ((0 <= book) & (book <= 1)).all() and np.median(book) > np.median(web)


def test_threshold_mode(trained, docs):
    res = stage(model=trained, threshold=0.6).process(docs)
    assert all(v >= 0.6 for v in res.kept.column("quality_score").to_pylist())
    rej = res.rejected.to_pylist()
    assert rej and all(r["quality_score"] < 0.6 and r["reject_reason"] == "quality_model:below_threshold"
                       for r in rej)


def test_pareto_is_seeded_and_batch_independent(trained, docs):
    st = stage(model=trained, mode="pareto")          # seed from the recipe (7)
    whole = st.process(docs).kept.column("id").to_pylist()
    halves = st.process(docs.slice(0, 17)).kept.column("id").to_pylist() + \
        st.process(docs.slice(17)).kept.column("id").to_pylist()
    assert whole == halves
    assert 0 < len(whole) < docs.num_rows
    other = [stage(model=trained, mode="pareto", seed=s).process(docs).kept.column("id").to_pylist()
             for s in (1, 2, 3)]
    assert any(o != whole for o in other)
    # high scores are kept more often than low ones
    res = stage(model=trained, mode="pareto", pareto_alpha=3).process(docs)
    kept_s = np.mean(res.kept.column("quality_score").to_numpy())
    rej_s = np.mean(res.rejected.column("quality_score").to_numpy())
    assert kept_s > rej_s


def test_model_from_s3_is_cached(trained, s3_bucket, tmp_path, monkeypatch, docs):
    from lmrefinery.core import storage

    monkeypatch.setenv("LMR_CACHE", str(tmp_path / "cache"))
    uri = f"s3://{s3_bucket}/models/quality.bin"
    storage.write_bytes(uri, open(trained, "rb").read())
    a = stage(model=uri, mode="score").process(docs.slice(0, 5)).kept.column("quality_score").to_pylist()
    b = stage(model=trained, mode="score").process(docs.slice(0, 5)).kept.column("quality_score").to_pylist()
    assert a == b
    cached = os.listdir(tmp_path / "cache" / "models")
    assert len(cached) == 1 and cached[0].endswith("-quality.bin")
