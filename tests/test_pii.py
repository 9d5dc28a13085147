"""PII redaction: each type is replaced by its placeholder in real text, look-alikes
are left alone, counts reach the stats, and the originals appear in no output of
the `pii` stage (run alone with `lmrefinery stage pii`)."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from lmrefinery.core.schema import conversation_doc, docs_to_table
from lmrefinery.core.stage import StageContext, get_stage

PII = {
    "email": ["jane.doe+news@example.co.uk", "x_y@mail.example.org"],
    "ipv4": ["203.0.113.54", "192.168.1.20"],
    "ipv6": ["2001:db8:85a3::8a2e:370:7334", "fe80::1ff:fe23:4567:890a"],
    "phone": ["+44 20 7946 0958", "+1 (415) 555-2671", "(212) 555-0187", "+86 138 0013 8000", "021-56692669"],
    "card": ["4111 1111 1111 1111", "5500-0000-0000-0004"],
}
# look-alikes that must survive
KEEP = ["2020-06-18", "version 1.2.3.4.5", "12:30:45", "1999-2004", "ISBN 978-3-16-148410-0",
        "00:1A:2B:3C:4D:5E", "1234 5678 9012 3456", "$4.05 billion", "population 12,345,678"]


def make(**params):
    cls = get_stage("pii")
    st = cls(cls.Params(**params), StageContext(output_root=".", stage_dir="."))
    st.setup()
    return st


@pytest.fixture(scope="module")
def c4_docs(shared_corpora):
    with open(os.path.join(shared_corpora, "web", "c4_demo.jsonl"), encoding="utf-8") as f:
        return [json.loads(ln)["text"] for ln in f][:12]


def test_each_type_replaced_in_real_text(c4_docs):
    st = make(types=["email", "ipv4", "ipv6", "phone", "card"])
    rows = []
    for i, (typ, values) in enumerate(PII.items()):
        for j, v in enumerate(values):
            t = c4_docs[(i + j) % len(c4_docs)]
            cut = len(t) // 2
            rows.append({"id": f"{typ}{j}", "text": f"{t[:cut]} Contact: {v}. {t[cut:]}"})
    res = st.process(docs_to_table(rows))
    assert res.rejected is None
    out = {r["id"]: r for r in res.kept.to_pylist()}
    for typ, values in PII.items():
        for j, v in enumerate(values):
            r = out[f"{typ}{j}"]
            assert v not in r["text"] and f"Contact: <{typ.upper()}>." in r["text"], (typ, v)
            assert r["pii_count"] >= 1
    n = sum(len(v) for v in PII.values())
    assert sum(res.counters.values()) >= n
    for typ, values in PII.items():
        assert res.counters[f"pii_{typ}"] >= len(values)


def test_lookalikes_untouched_and_card_off_by_default():
    st = make()
    text = "Dates and numbers: " + "; ".join(KEEP) + ". Card 4111 1111 1111 1111."
    res = st.process(docs_to_table([{"id": "a", "text": text}]))
    assert res.kept.column("text")[0].as_py() == text
    assert res.counters == {} and res.kept.column("pii_count")[0].as_py() == 0


def test_chinese_text_without_spaces(shared_corpora):
    """PII written straight after Chinese words (no space): \\w matches CJK characters,
    so word boundaries must be ASCII ones for these to be found."""
    with open(os.path.join(shared_corpora, "instructions", "belle_open_source_1k.jsonl"), encoding="utf-8") as f:
        base = [json.loads(ln)["output"] for ln in f][:8]
    planted = [("联系邮箱", "zhang.san@example.cn", "email"), ("手机号", "13812345678", "phone"),
               ("电话：", "138-0013-8000", "phone"), ("座机", "010-62751234", "phone"),
               ("服务器地址", "203.0.113.9", "ipv4"), ("网关", "2001:db8::1", "ipv6")]
    st = make()
    rows = [{"id": f"z{i}", "text": f"{base[i]}{w}{v}，谢谢。"} for i, (w, v, _) in enumerate(planted)]
    keep = "订单号20231126123456789，编号12345678901，时间2024年11月26日，版本1.2.3.4.5"
    rows.append({"id": "keep", "text": keep})
    res = st.process(docs_to_table(rows))
    out = {r["id"]: r["text"] for r in res.kept.to_pylist()}
    for i, (w, v, typ) in enumerate(planted):
        assert out[f"z{i}"].endswith(f"{w}<{typ.upper()}>，谢谢。"), (v, out[f"z{i}"][-40:])
    assert out["keep"] == keep


def test_private_ips_and_custom_placeholders():
    st = make(keep_private_ips=True, placeholders={"email": "[EMAIL]"})
    res = st.process(docs_to_table([{"id": "a", "text": "hosts 192.168.1.20 and 8.8.4.4, mail a.b@example.com"}]))
    assert res.kept.column("text")[0].as_py() == "hosts 192.168.1.20 and <IPV4>, mail [EMAIL]"


def test_title_and_conversation_messages_redacted():
    doc = conversation_doc([{"role": "user", "content": "My email is jane.doe+news@example.co.uk, call +44 20 7946 0958"},
                            {"role": "assistant", "content": "Noted."}], category="chat", orig_id=12345678901)
    doc.update(id="c1", title="Re: jane.doe+news@example.co.uk")
    res = make().process(docs_to_table([doc]))
    r = res.kept.to_pylist()[0]
    blob = json.dumps(r, ensure_ascii=False)
    assert "jane.doe" not in blob and "7946" not in blob
    meta = json.loads(r["meta"])
    assert meta["messages"][0]["content"] == "My email is <EMAIL>, call <PHONE>"
    assert meta["orig_id"] == 12345678901 and r["title"] == "Re: <EMAIL>"
    # rendered text + message + title
    assert res.counters == {"pii_email": 3, "pii_phone": 2}


def test_stage_command_alone(c4_docs, tmp_path):
    from lmrefinery.cli import main

    inp = tmp_path / "in.jsonl"
    with open(inp, "w", encoding="utf-8") as f:
        for i, t in enumerate(c4_docs[:6]):
            f.write(json.dumps({"text": f"{t}\nWrite to {PII['email'][i % 2]} or call {PII['phone'][i % 5]}."}) + "\n")
    out = tmp_path / "out"
    assert main(["stage", "pii", "--input", str(inp), "--output", str(out), "--engine", "local", "--quiet",
                 "--set", "types=[email,phone,ipv4]"]) == 0
    sdir = next(p for p in (out / "stages").iterdir() if p.name.endswith("-pii"))
    kept = pq.read_table(sdir / "data" / "part-00000.parquet")
    assert kept.num_rows == 6
    assert all("<EMAIL>" in t and "<PHONE>" in t for t in kept.column("text").to_pylist())
    man = json.loads((sdir / "_manifest.json").read_text())
    # one document of C4 carries a real phone number of its own
    assert man["counters"]["pii_email"] == 6 and man["counters"]["pii_phone"] == 7
    stats = (out / "stats.json").read_text()
    assert json.loads(stats)["stages"][-1]["counters"] == man["counters"]
    originals = PII["email"] + PII["phone"]
    for root, _, files in os.walk(sdir):
        for fn in files:
            p = os.path.join(root, fn)
            if fn.endswith(".parquet"):
                content = json.dumps(pq.read_table(p).to_pylist(), ensure_ascii=False)
            else:
                content = open(p, encoding="utf-8", errors="replace").read()
            assert not any(o in content for o in originals), p
    assert not any(o in stats for o in originals)
