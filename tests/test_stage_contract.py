"""The stage contract, for every map stage in the registry (a new stage must be added
to CASES, or this test fails): in = kept + rejected; a rejected row is exactly the
row the stage received (every base column except the ones the stage declares it
annotates, e.g. lid's `lang`); a filter (`changes_text = False`) never changes the
text of a row it keeps. Real documents from the shared corpora, plus rows made to
be rejected by each stage."""
from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest

from lmrefinery.core.schema import BASE_COLUMNS, docs_to_table
from lmrefinery.core.stage import StageContext, all_stages, get_stage
from lmrefinery.instruct.common import make_record, rows_to_table

FRENCH = ("La ville se trouve au bord de la mer. Les habitants vivent de la pêche et du tourisme depuis "
          "des siècles, et le port accueille chaque été des milliers de visiteurs venus de toute l'Europe.")
LEAK = ("the committee agreed that the old lighthouse on the northern cape should be restored before the "
        "winter storms arrive and that volunteers would paint it")


def _web_docs(corpora: str, n: int) -> list[dict]:
    rows = []
    with open(os.path.join(corpora, "web", "c4_demo.jsonl"), encoding="utf-8") as f:
        for i, line in zip(range(n), f):
            rows.append({"id": f"c4-{i}", "text": json.loads(line)["text"], "source": "web"})
    return rows


def _book_paragraphs(corpora: str, name: str, n: int, prefix: str, lang: str | None = None) -> list[dict]:
    text = open(os.path.join(corpora, "books", name), encoding="utf-8").read()
    paras = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 300][20:20 + n]
    return [{"id": f"{prefix}-{i}", "text": p, "source": "books", "lang": lang} for i, p in enumerate(paras)]


@pytest.fixture(scope="module")
def docs(shared_corpora) -> pa.Table:
    rows = _web_docs(shared_corpora, 25)
    rows += _book_paragraphs(shared_corpora, "pg11_alice_in_wonderland_en.txt", 5, "alice")
    rows += _book_paragraphs(shared_corpora, "pg23950_sanguo_yanyi_zh-Hant.txt", 4, "sanguo")
    rows += [
        {"id": "blank", "text": "  \n\t \n", "source": "web"},                           # clean: empty
        {"id": "menu", "text": "Home\nMenu\nLog in\nCart (0)", "source": "web"},          # c4_lines: empty
        {"id": "french", "text": FRENCH, "source": "web"},                                # lid: not allowed
        {"id": "mojibake", "text": "CafÃ© owners met on Monday. " * 6, "source": "web"},   # clean rewrites
        {"id": "email", "text": "Write to jane.doe@example.com for the minutes. " * 5, "source": "web"},
        {"id": "leak", "text": f"News of the week. {LEAK}. More to follow.", "source": "web"},
        {"id": "spam", "text": "buy cheap shoes now " * 80, "source": "web"},             # quality: repetition
        {"id": "article", "source": "web", "text": "Local News\n\nThe council met on Monday and approved the "
         "budget for the new library.\nShare this:\n\nThe library will open on Sundays from next month."},
    ]
    return docs_to_table(rows)


@pytest.fixture(scope="module")
def conversations() -> pa.Table:
    def conv(user: str, answer: str, **meta):
        return make_record([{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                           "chat", origin="test", id_parts=(user, answer), **meta)

    rows = [conv("Name three primary colours.", "Red, yellow and blue are the three primary colours."),
            conv("用一句话介绍长城。", "长城是中国古代修建的军事防御工程，绵延数千公里。"),
            conv("Tell me about the French revolution.", "   "),                    # filter: empty
            conv("Write a poem about rain.", "I'm sorry, but as an AI language model I cannot do that."),
            conv("Summarise the text.", "Summarise the text.")]                     # copies the instruction
    rows.append({"id": "no-msgs", "text": "a row with no messages", "source": "chat",
                 "meta": {"kind": "conversation", "messages": [{"role": "system", "content": "  "}]}})
    rows.append({"id": "plain", "text": "not a conversation at all", "source": "chat", "meta": {}})
    return rows_to_table(rows)


@pytest.fixture(scope="module")
def tasks() -> pa.Table:
    return docs_to_table([
        {"id": "qa1", "text": "", "question": "Who wrote Pride and Prejudice?",
         "context": "Pride and Prejudice is an 1813 novel by Jane Austen.", "answer": "Jane Austen"},
        {"id": "qa2", "text": "", "question": "When was it published?", "context": "It appeared in 1813."},
    ])


@pytest.fixture(scope="module")
def quality_classifier(tmp_path_factory, shared_corpora) -> str:
    from lmrefinery.cli import main

    out = str(tmp_path_factory.mktemp("qm") / "quality.bin")
    c = shared_corpora
    # dim 32: with dim 16 this tiny training set sits at fastText's edge, where the same
    # train file and seed diverge to NaN or not depending on the worker process's memory
    # state (seen when the import graph of core/storage changed, nothing else)
    assert main(["quality-model", "train", "--out", out, "--max-docs-per-class", "60", "--seed", "1",
                 "--bucket", "5000", "--dim", "32", "--positive", f"{c}/books/pg11_alice_in_wonderland_en.txt",
                 "--negative", f"{c}/web/c4_demo.jsonl"]) == 0
    return out


def _cases(tmp: str, classifier: str, tiny_model: str) -> dict[str, tuple[dict, str]]:
    evalset = os.path.join(tmp, "eval.jsonl")
    with open(evalset, "w", encoding="utf-8") as f:
        f.write(json.dumps({"question": LEAK}) + "\n")
    return {  # stage -> (params, which batch)
        "clean": ({}, "docs"),
        "length_filter": ({"min_chars": 200}, "docs"),
        "c4_lines": ({}, "docs"),
        "lid": ({"allowed": ["en", "zh"]}, "docs"),
        "quality": ({}, "docs"),
        "quality_model": ({"model": classifier, "threshold": 0.5}, "docs"),
        "pii": ({}, "docs"),
        "decontaminate": ({"eval_sets": [{"name": "leaky", "paths": [evalset], "fields": ["question"]}],
                           "min_item_tokens": 8}, "docs"),
        "instruct_normalize": ({}, "conversations"),
        "instruct_construct": ({"task": "extractive_qa"}, "tasks"),
        "instruct_filter": ({"check_lang": False}, "conversations"),
        "instruct_score": ({"model_dir": tiny_model, "max_len": 64}, "conversations"),
    }


NEVER_REJECTS = {"pii", "instruct_score"}  # transforms/annotators with no reject reason


def _map_stages() -> list[str]:
    """The product's map stages (not ones a test module registers for itself)."""
    return [n for n in all_stages()
            if get_stage(n).kind == "map" and get_stage(n).__module__.startswith("lmrefinery.")]


def test_every_map_stage_has_a_case(tmp_path):
    assert set(_cases(str(tmp_path), "", "")) == set(_map_stages())


@pytest.mark.parametrize("name", _map_stages())
def test_rejects_are_the_rows_received_and_filters_keep_text(name, tmp_path, docs, conversations, tasks,
                                                             quality_classifier, tiny_model):
    params, which = _cases(str(tmp_path), quality_classifier, tiny_model)[name]
    batch = {"docs": docs, "conversations": conversations, "tasks": tasks}[which]
    cls = get_stage(name)
    st = cls(cls.Params(**params), StageContext(output_root=str(tmp_path), stage_dir=str(tmp_path), seed=3))
    st.setup()
    res = st.process(batch)
    n_rej = res.rejected.num_rows if res.rejected is not None else 0
    assert res.kept.num_rows + n_rej == batch.num_rows
    if name not in NEVER_REJECTS:
        assert n_rej > 0, f"{name}: the fixture should make it reject something"
    received = {r["id"]: r for r in batch.select(BASE_COLUMNS).to_pylist()}
    checked = [c for c in BASE_COLUMNS if c not in cls.annotates]
    for row in (res.rejected.to_pylist() if n_rej else []):
        want = received[row["id"]]
        diff = {c: (want[c], row[c]) for c in checked if row[c] != want[c]}
        assert not diff, f"{name} rejected {row['id']} ({row['reject_reason']}) with changed columns {diff}"
    if not cls.changes_text:
        for row in res.kept.select(["id", "text"]).to_pylist():
            assert row["text"] == received[row["id"]]["text"], f"filter {name} changed kept row {row['id']}"


def test_transforms_do_change_text(docs, tmp_path):
    """The flag is honest the other way too: clean, c4_lines and pii do rewrite text."""
    ctx = StageContext(output_root=str(tmp_path), stage_dir=str(tmp_path))
    for name, doc in (("clean", "mojibake"), ("c4_lines", "article"), ("pii", "email")):
        cls = get_stage(name)
        assert cls.changes_text
        st = cls(cls.Params(), ctx)
        st.setup()
        kept = {r["id"]: r["text"] for r in st.process(docs).kept.to_pylist()}
        before = {r["id"]: r["text"] for r in docs.to_pylist()}
        assert kept[doc] != before[doc], name


def test_quality_keeps_real_web_text_unchanged(shared_corpora, tmp_path):
    """Issue 14: the quality stage used to drop every blank line, heading and dialogue line of
    the English documents it kept. On 200 real C4 and 50 CC-Net documents it now keeps text as is."""
    rows = _web_docs(shared_corpora, 200)
    with open(os.path.join(shared_corpora, "web", "ccnet-cc_en_head-0091.jsonl"), encoding="utf-8") as f:
        rows += [{"id": f"ccnet-{i}", "text": json.loads(line)["text"], "lang": "en"}
                 for i, line in zip(range(50), f)]
    table = docs_to_table(rows)
    cls = get_stage("quality")
    st = cls(cls.Params(), StageContext(output_root=str(tmp_path), stage_dir=str(tmp_path)))
    st.setup()
    res = st.process(table)
    before = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    kept = res.kept.select(["id", "text"]).to_pylist()
    assert len(kept) > 50 and all(r["text"] == before[r["id"]] for r in kept)
    multi_para = [r for r in kept if "\n\n" in r["text"] or "\n" in r["text"]]
    assert multi_para, "some kept documents have line structure (it used to be flattened)"
    assert res.kept.column("q_c4_lines_removed_frac")   # the C4 line signal is still measured
