"""Books (Gutenberg text, EPUB) and instruction datasets on the shared corpora."""
from __future__ import annotations

import collections
import json
import os

import pytest

from lmrefinery.ingest.formats import Quarantine, Record, get_reader


def read_all(fmt, path, options=None, licence=None, fields=None):
    spec = {"path": path, "rel": os.path.basename(path), "input": "i", "format": fmt, "options": options or {},
            "fields": fields or {}, "licence": licence}
    items = list(get_reader(fmt)(spec))
    docs = [i for i in items if isinstance(i, Record)]
    q = collections.Counter(i.reason for i in items if isinstance(i, Quarantine))
    return docs, q


# ------------------------------------------------------------------ books
def test_gutenberg_header_footer_removed_and_paragraphs_joined(shared_corpora):
    path = os.path.join(shared_corpora, "books", "pg1342_pride_and_prejudice_en_with_pg_header.txt")
    docs, q = read_all("gutenberg", path)
    assert not q and len(docs) >= 2
    text = "\n\n".join(d.doc["text"] for d in docs)
    for gone in ("PROJECT GUTENBERG", "Project Gutenberg", "START OF THIS", "This eBook is for the use",
                 "Produced by Anonymous Volunteers", "\r"):
        assert gone not in text, gone
    assert text.startswith("PRIDE AND PREJUDICE")
    assert text.endswith("had been the means of uniting them.")
    # hard wraps at ~70 columns joined into one paragraph line
    assert ("\n\nIt is a truth universally acknowledged, that a single man in possession of a good fortune, "
            "must be in want of a wife.\n\n") in text
    m = docs[0].doc["meta"]
    assert m["book_key"] == "pg1342_pride_and_prejudice_en_with_pg_header" and docs[0].doc["title"] == "Pride and Prejudice"
    assert m["gutenberg_header"] and m["gutenberg_footer"] and m["author"] == "Jane Austen"
    assert [d.doc["meta"]["part"] for d in docs] == list(range(len(docs)))
    assert all(d.doc["meta"]["parts"] == len(docs) for d in docs)


def test_chinese_wraps_joined_without_spaces_and_split_on_paragraphs(shared_corpora):
    path = os.path.join(shared_corpora, "books", "pg23950_sanguo_yanyi_zh-Hant.txt")
    raw = open(path, encoding="utf-8").read()
    docs, q = read_all("gutenberg", path, {"max_chars": 60_000})
    assert not q
    sizes = [len(d.doc["text"]) for d in docs]
    assert len(docs) > 10 and max(sizes) <= 60_000
    text = "\n\n".join(d.doc["text"] for d in docs)
    assert "End of Project Gutenberg" not in text
    # a paragraph hard-wrapped in the file: its lines joined with nothing between them
    lines = raw.split("\n")
    i = next(k for k, ln in enumerate(lines) if ln.startswith("\u3000\u3000話說天下大勢"))
    para = lines[i].strip("\u3000")
    k = i + 1
    while lines[k].strip() and not lines[k].startswith("\u3000"):
        para += lines[k].strip()
        k += 1
    assert k > i + 2 and para in text
    assert " " not in para and "\n" + para + "\n" in "\n" + text + "\n"
    # the split keeps order and loses nothing: same text as one unsplit document
    whole, _ = read_all("gutenberg", path, {"max_chars": 10_000_000})
    assert len(whole) == 1 and whole[0].doc["text"] == text


def test_book_without_header_and_sample_books(shared_corpora, samples_dir):
    docs, q = read_all("book", os.path.join(shared_corpora, "books", "pg11_alice_in_wonderland_en.txt"))
    assert len(docs) == 1 and "Down the Rabbit-Hole" in docs[0].doc["text"] and "\r" not in docs[0].doc["text"]
    for name in ("harbour_town_en", "river_village_zh"):
        d, _ = read_all("gutenberg", os.path.join(samples_dir, "books", f"{name}.txt"))
        assert d and all(x.doc["meta"]["book_key"] == name for x in d)
        t = "".join(x.doc["text"] for x in d)
        assert "GUTENBERG" not in t and "LICENSE" not in t and "\r" not in t
    zh, _ = read_all("gutenberg", os.path.join(samples_dir, "books", "river_village_zh.txt"))
    paras = zh[0].doc["text"].split("\n\n")
    raw = open(os.path.join(samples_dir, "books", "river_village_zh.txt"), encoding="utf-8").read()
    assert len(paras) == len([p for p in raw.split("\n\n") if p.strip()]) > 5 and all(len(p) > 38 and "\n" not in p for p in paras)


def test_epub(shared_corpora, tmp_path):
    from ebooklib import epub

    src = open(os.path.join(shared_corpora, "books", "pg11_alice_in_wonderland_en.txt"), encoding="utf-8").read()
    chapters = src.split("CHAPTER ")[13:16]  # three real chapters (after the table of contents)
    book = epub.EpubBook()
    book.set_identifier("alice-test")
    book.set_title("Alice's Adventures in Wonderland")
    book.set_language("en")
    book.add_author("Lewis Carroll")
    items = []
    for i, ch in enumerate(chapters):
        paras = [p.replace("\n", " ") for p in ch.split("\n\n") if p.strip()]
        c = epub.EpubHtml(title=f"ch{i}", file_name=f"ch{i}.xhtml", lang="en")
        c.content = "<html><body>" + "".join(f"<p>{p}</p>" for p in paras) + "</body></html>"
        book.add_item(c)
        items.append(c)
    book.toc = items
    book.spine = items
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    path = tmp_path / "alice.epub"
    epub.write_epub(str(path), book)
    docs, q = read_all("epub", str(path))
    assert not q and len(docs) == 1
    d = docs[0].doc
    assert d["title"] == "Alice's Adventures in Wonderland" and d["lang"] == "en" and d["meta"]["book_key"] == "alice"
    first = chapters[0].split("\n\n")[2].replace("\n", " ").strip()
    assert first[:200] in d["text"] and chapters[2].split("\n\n")[-1].replace("\n", " ").strip()[:100] in d["text"]
    bad = tmp_path / "broken.epub"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert read_all("epub", str(bad))[1] == {"unreadable_epub": 1}


# ------------------------------------------------------------------ instructions
def _load(path):
    with open(path, encoding="utf-8") as f:
        s = f.read()
    return json.loads(s) if s.lstrip().startswith("[") else [json.loads(ln) for ln in s.splitlines() if ln.strip()]


def _nonempty(*v):
    return all(isinstance(x, str) and x.strip() for x in v)


def test_alpaca_self_instruct_belle_counts_and_turns(shared_corpora):
    d = os.path.join(shared_corpora, "instructions")
    alp = _load(os.path.join(d, "alpaca_data_5k_subset.json"))
    docs, q = read_all("alpaca", os.path.join(d, "alpaca_data_5k_subset.json"), licence="CC-BY-NC-4.0")
    good = [r for r in alp if _nonempty(r["instruction"], r["output"])]
    assert len(docs) == len(good) and sum(q.values()) == len(alp) - len(good)
    assert all([m["role"] for m in x.doc["meta"]["messages"]] == ["user", "assistant"] for x in docs)
    assert all(x.doc["meta"]["licence"] == "CC-BY-NC-4.0" for x in docs)
    with_input = [x for x, r in zip(docs, good) if r["input"].strip()]
    assert len(with_input) == sum(1 for r in good if r["input"].strip())
    r0 = good[0]
    assert docs[0].doc["meta"]["messages"][0]["content"] == (r0["instruction"] + ("\n\n" + r0["input"]
                                                                                  if r0["input"] else ""))

    for name in ("self_instruct_seed_tasks.jsonl", "belle_zh_seed_tasks.jsonl"):
        seeds = _load(os.path.join(d, name))
        docs, q = read_all("self_instruct", os.path.join(d, name))
        assert len(docs) == sum(len(t["instances"]) for t in seeds) and not q
        cls = sum(len(t["instances"]) for t in seeds if t["is_classification"])
        assert sum(1 for x in docs if x.doc["meta"]["is_classification"]) == cls
        assert docs[0].doc["meta"]["category"] == seeds[0]["name"]

    belle = _load(os.path.join(d, "belle_open_source_1k.jsonl"))
    docs, q = read_all("belle", os.path.join(d, "belle_open_source_1k.jsonl"), {"lang": "zh"})
    assert len(docs) == sum(1 for r in belle if _nonempty(r["instruction"], r["output"])) and not q
    assert sum(1 for x in docs if x.doc["meta"]["embedded_input"]) == sum(
        1 for r in belle if "\n" in r["instruction"].strip())
    assert all(x.doc["lang"] == "zh" for x in docs)


def test_sharegpt_and_bilingual(shared_corpora):
    d = os.path.join(shared_corpora, "instructions")
    recs = _load(os.path.join(d, "sharegpt_zh_1k.jsonl"))
    docs, q = read_all("sharegpt", os.path.join(d, "sharegpt_zh_1k.jsonl"))
    ok = [r for r in recs if any(t["from"] == "gpt" for t in r["conversations"])]
    assert len(docs) == len(ok) and sum(q.values()) == len(recs) - len(ok)
    assert sum(len(x.doc["meta"]["messages"]) for x in docs) == sum(len(r["conversations"]) for r in ok)
    assert [x.doc["meta"]["orig_id"] for x in docs] == [r["id"] for r in ok]

    total = 0
    for part in range(3):
        p = os.path.join(d, f"alpaca_chinese_bilingual_part_{part}.json")
        recs = _load(p)
        docs, q = read_all("alpaca_bilingual", p)
        halves = sum(_nonempty(r["en_instruction"], r["en_output"]) + _nonempty(r["instruction"], r["output"])
                     for r in recs)
        assert len(docs) == halves and sum(q.values()) == 2 * len(recs) - halves
        pairs = collections.defaultdict(list)
        for x in docs:
            pairs[x.doc["meta"]["pair_id"]].append(x.doc["lang"])
        assert sum(1 for v in pairs.values() if sorted(v) == ["en", "zh"]) >= len(recs) - 5
        total += len(docs)
    assert total > 5900


def test_dolly_openai_sharegpt_tools_and_field_mapping(tmp_path):
    dolly = [{"instruction": "Who wrote Hamlet?", "context": "", "response": "Shakespeare.", "category": "open_qa"},
             {"instruction": "Summarise.", "context": "Paris is the capital of France.", "response": "Paris is "
              "France's capital.", "category": "summarization"},
             {"instruction": "Empty answer", "context": "", "response": "", "category": "open_qa"}]
    (tmp_path / "dolly.jsonl").write_text("\n".join(json.dumps(r) for r in dolly))
    docs, q = read_all("dolly", str(tmp_path / "dolly.jsonl"))
    assert len(docs) == 2 and q == {"empty_turn": 1}
    assert docs[1].doc["meta"]["messages"][0]["content"] == "Summarise.\n\nParis is the capital of France."
    assert [x.doc["meta"]["category"] for x in docs] == ["open_qa", "summarization"]

    oai = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]}]},
           {"messages": [{"role": "wizard", "content": "?"}]}]
    (tmp_path / "oai.jsonl").write_text("\n".join(json.dumps(r) for r in oai))
    docs, q = read_all("openai_messages", str(tmp_path / "oai.jsonl"))
    assert [m["role"] for m in docs[0].doc["meta"]["messages"]] == ["system", "user", "assistant"]
    assert docs[0].doc["meta"]["messages"][2]["content"] == "Hello." and q == {"unknown_role": 1}

    sg = [{"id": "t1", "system": "You can call tools.", "tools": "[{\"name\": \"weather\"}]", "conversations": [
        {"from": "human", "value": "Weather in Oslo?"},
        {"from": "function_call", "value": "{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}"},
        {"from": "observation", "value": "{\"temp\": 3}"},
        {"from": "gpt", "value": "It is 3 degrees."}]}]
    (tmp_path / "sg.json").write_text(json.dumps(sg))  # a JSON array this time
    docs, q = read_all("sharegpt", str(tmp_path / "sg.json"))
    msgs = docs[0].doc["meta"]["messages"]
    # the call is an assistant turn (it gets loss), the observation a tool turn (see instruct/tools.py)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
    assert msgs[2]["tool_calls"] == [{"name": "weather", "arguments": {"city": "Oslo"}}]
    assert docs[0].doc["meta"]["tools"] == [{"name": "weather"}]

    other = [{"q": {"text": "2+2?"}, "a": "4", "sys": "Maths tutor", "topic": "math", "uid": 7}]
    (tmp_path / "other.jsonl").write_text(json.dumps(other[0]))
    docs, q = read_all("conversation", str(tmp_path / "other.jsonl"),
                       fields={"prompt": "q.text", "response": "a", "system": "sys", "category": "topic", "id": "uid"})
    m = docs[0].doc["meta"]
    assert [x["role"] for x in m["messages"]] == ["system", "user", "assistant"]
    assert m["category"] == "math" and m["orig_id"] == 7 and m["kind"] == "conversation"


def test_sample_instruction_files(samples_dir):
    d = os.path.join(samples_dir, "instructions")
    docs, q = read_all("alpaca", os.path.join(d, "alpaca_en.json"))
    assert len(docs) == len(_load(os.path.join(d, "alpaca_en.json"))) and not q
    sg = _load(os.path.join(d, "sharegpt_mixed.jsonl"))
    docs, q = read_all("sharegpt", os.path.join(d, "sharegpt_mixed.jsonl"))
    assert len(docs) == len(sg) and [len(x.doc["meta"]["messages"]) for x in docs] == [len(r["conversations"])
                                                                                      for r in sg]
    assert docs[0].doc["meta"]["messages"][0]["role"] == "system"  # system prompts kept


@pytest.mark.parametrize("bad", [b'{"instruction": "x", "output": "y"}\n{not json}\n', b'\xff\xfe{"a": 1}\n'])
def test_broken_instruction_lines_quarantined(tmp_path, bad):
    (tmp_path / "b.jsonl").write_bytes(bad)
    docs, q = read_all("belle", str(tmp_path / "b.jsonl"))
    assert sum(q.values()) >= 1 and len(docs) == bad.count(b'"output"')


# ------------------------------------------------------------------ generic formats
def test_generic_formats_with_field_mapping(shared_corpora, tmp_path):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(shared_corpora, "web", "ccnet-cc_en_head-0091.jsonl")
    recs = _load(path)
    fields = {"text": "text", "url": "metadata.url", "title": "metadata.title", "lang": "metadata.language"}
    docs, q = read_all("jsonl", path, fields=fields)
    assert not q and len(docs) == len(recs) == 10
    assert [d.doc["url"] for d in docs] == [r["metadata"]["url"] for r in recs]
    assert all(d.doc["lang"] == "en" for d in docs)
    assert docs[0].doc["meta"]["source_id"] == recs[0]["id"]  # unmapped fields are kept in meta
    flat = [{"body": r["text"], "link": r["metadata"]["url"], "ppl": r["metadata"]["perplexity"]} for r in recs]
    pq.write_table(pa.Table.from_pylist(flat), tmp_path / "x.parquet")
    (tmp_path / "x.json").write_text(json.dumps(flat))
    with open(tmp_path / "x.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["body", "link", "ppl"])
        w.writeheader()
        w.writerows(flat)
    for fmt, name in (("parquet", "x.parquet"), ("json", "x.json"), ("csv", "x.csv")):
        got, q = read_all(fmt, str(tmp_path / name), fields={"text": "body", "url": "link"})
        assert not q and [(d.doc["text"], d.doc["url"]) for d in got] == [(r["body"], r["link"]) for r in flat], fmt
        assert float(got[0].doc["meta"]["ppl"]) == flat[0]["ppl"]
