"""Issue 19: partly damaged inputs lose exactly the damaged rows/records, never the good
ones around them, and every loss is a quarantine record with a reason."""
from __future__ import annotations

import gzip
import json

import pytest

from lmrefinery.ingest.formats import Quarantine, Record, get_reader


def _read(fmt: str, path, **options) -> tuple[list[Record], list[Quarantine]]:
    out = list(get_reader(fmt)({"path": str(path), "rel": path.name, "input": "t", "format": fmt,
                                "fields": {}, "options": options, "licence": None}))
    return [r for r in out if isinstance(r, Record)], [q for q in out if isinstance(q, Quarantine)]


def test_csv_with_one_bad_byte_quarantines_exactly_that_row(tmp_path):
    rows = [f"doc-{i},some text number {i} for the corpus" for i in range(20)]
    lines = [b"id,text"] + [r.encode() for r in rows]
    lines[8] = b"doc-7,caf\xe9 with a latin-1 byte"  # data row 7
    p = tmp_path / "d.csv"
    p.write_bytes(b"\n".join(lines) + b"\n")
    docs, q = _read("csv", p)
    assert [d.doc["text"] for d in docs] == [f"some text number {i} for the corpus" for i in range(20) if i != 7]
    assert [(x.reason, x.pos) for x in q] == [("invalid_utf8", "row:7")]
    assert "column 'text'" in q[0].detail and "line 9" in q[0].detail


def test_jsonl_bad_lines_quarantine_exactly_those_lines(tmp_path):
    lines = [json.dumps({"text": f"line {i}"}).encode() for i in range(10)]
    lines[3] = b'{"text": "bad \xff byte"}'
    lines[6] = b'{"text": "cut off'
    p = tmp_path / "d.jsonl.gz"
    p.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    docs, q = _read("jsonl", p)
    assert len(docs) == 8 and sorted((x.reason, x.pos) for x in q) == [("invalid_utf8", "line:3"),
                                                                         ("malformed_json", "line:6")]


@pytest.mark.parametrize("value,kind", [(42, "number"), (3.5, "number"), ({"en": "hi"}, "object"),
                                        (["a", "b"], "array"), (True, "boolean")])
def test_non_string_text_is_a_reject_with_a_reason(tmp_path, value, kind):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"text": "a real document"}) + "\n" + json.dumps({"text": value}) + "\n")
    docs, q = _read("jsonl", p)
    assert [d.doc["text"] for d in docs] == ["a real document"]
    assert [(x.reason, x.pos) for x in q] == [("text_not_a_string", "line:1")] and kind in q[0].detail


# ------------------------------------------------------------------ WARC
def _members(data: bytes) -> list[int]:
    import zlib

    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        d = zlib.decompressobj(wbits=31)
        d.decompress(data[pos:])
        pos = len(data) - len(d.unused_data)
    return starts


def test_warc_with_one_corrupt_gzip_member_keeps_every_record_after_it(shared_corpora, tmp_path):
    import os

    src = os.path.join(shared_corpora, "web", "cc-main-2020-34-resiliparse-sample.warc.gz")
    data = open(src, "rb").read()
    full, _ = _read("warc", type(tmp_path)(src))
    starts = _members(data)
    doc_offsets = sorted({d.doc["meta"]["warc_offset"] for d in full})
    victim = doc_offsets[len(doc_offsets) // 3]  # a response member a third of the way in
    k = starts.index(victim)
    bad = bytearray(data)
    mid = (starts[k] + starts[k + 1]) // 2
    bad[mid: mid + 200] = bytes(200)  # zeroed deflate data: this member no longer decodes
    p = tmp_path / "damaged.warc.gz"
    p.write_bytes(bytes(bad))
    docs, q = _read("warc", p)
    assert [x.reason for x in q if x.reason == "corrupt_compression"] == ["corrupt_compression"]
    cc = next(x for x in q if x.reason == "corrupt_compression")
    assert cc.meta["offset"] == victim and f"resumes at the next good gzip member at byte {starts[k + 1]}" in cc.detail
    want = [(d.doc["url"], d.doc["text"]) for d in full if d.doc["meta"]["warc_offset"] != victim]
    assert [(d.doc["url"], d.doc["text"]) for d in docs] == want
    assert len([d for d in full if d.doc["meta"]["warc_offset"] > victim]) > 5  # records after it were at stake


@pytest.mark.parametrize("compressed", [False, True])
def test_warc_record_with_a_false_length_does_not_swallow_the_rest(tmp_path, compressed):
    import os
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from test_ingest_web import _resp

    page = (b"<html><body><article>" + b"<p>A paragraph of plain running text that extraction keeps. </p>" * 40
            + b"</article></body></html>")
    recs = [gzip.decompress(_resp(f"http://ok/{i}", page)) for i in range(6)]
    recs.insert(2, gzip.decompress(_resp("http://liar/", page)).replace(
        b"Content-Length: ", b"Content-Length: 99999999\r\nX-Old-Length: ", 1))
    p = tmp_path / ("f.warc.gz" if compressed else "f.warc")
    p.write_bytes(b"".join(gzip.compress(r, mtime=0) for r in recs) if compressed else b"".join(recs))
    docs, q = _read("warc", p)
    assert [d.doc["url"] for d in docs] == [f"http://ok/{i}" for i in range(6)]
    assert [x.reason for x in q] == ["bad_record_length"] and "99999999" in q[0].detail
