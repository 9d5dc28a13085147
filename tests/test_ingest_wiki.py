"""MediaWiki dump ingest on the real enwiki / jawiki excerpts."""
from __future__ import annotations

import bz2
import collections
import os
import re
import xml.etree.ElementTree as ET

from lmrefinery.ingest.formats import Quarantine, Record, Skip, get_reader
from lmrefinery.ingest.split import plan_read_tasks


def read_all(path, options=None, rng=None):
    spec = {"path": path, "rel": os.path.basename(path), "input": "w", "format": "mediawiki",
            "options": options or {}, "fields": {}}
    if rng:
        spec["range"] = rng
    items = list(get_reader("wiki")(spec))
    docs = [i for i in items if isinstance(i, Record)]
    q = collections.Counter(i.reason for i in items if isinstance(i, Quarantine))
    s = collections.Counter(i.reason for i in items if isinstance(i, Skip))
    return docs, q, s


def inventory(path):
    """Pages of the dump, read with ElementTree in one go (the independent view)."""
    root = ET.fromstring(bz2.open(path).read())
    out = []
    for p in root.iter():
        if p.tag.endswith("}page"):
            get = lambda name, p=p: next((c.text for c in p.iter() if c.tag.endswith("}" + name)), None)  # noqa: E731
            redirect = any(c.tag.endswith("}redirect") for c in p)
            out.append({"title": get("title"), "ns": int(get("ns")), "redirect": redirect, "text": get("text") or ""})
    return out


def test_enwiki_yields_exactly_its_non_redirect_main_namespace_pages(shared_corpora):
    path = os.path.join(shared_corpora, "wiki", "enwiki-pages-articles1-p10p30302-shortened.xml.bz2")
    pages = inventory(path)
    docs, q, s = read_all(path)
    main = [p for p in pages if p["ns"] == 0 and not p["redirect"]]
    titles = [d.doc["title"] for d in docs]
    assert len(pages) == 206 and s["redirect"] == sum(1 for p in pages if p["ns"] == 0 and p["redirect"])
    assert s["namespace_4"] == sum(1 for p in pages if p["ns"] == 4)
    # every non-redirect article is a document, or a counted disambiguation page
    assert len(titles) + s["disambiguation"] + q["empty_text"] == len(main)
    assert set(titles) <= {p["title"] for p in main}
    dab = {p["title"] for p in main} - set(titles)
    assert all("disambiguation" in t.lower() or re.search(r"\{\{\s*(disambig|dab|hndis|geodis)", p["text"], re.I)
               for p in main if p["title"] in dab for t in [p["title"]])
    assert s["disambiguation"] >= 5 and "Austin (disambiguation)" in dab
    by = {d.doc["title"]: d.doc for d in docs}
    a = by["Anarchism"]["text"]
    assert a.startswith("Anarchism is a political philosophy")
    assert "\nEtymology and terminology\n" in a              # headings kept as lines
    for junk in ("{{", "}}", "<ref", "[[", "]]", "Category:", "{|", "|}", "thumb|", "&nbsp;"):
        assert junk not in a, junk
    assert by["Anarchism"]["url"] == "https://en.wikipedia.org/wiki/Anarchism" and by["Anarchism"]["lang"] == "en"


def test_tables_and_lists(shared_corpora):
    path = os.path.join(shared_corpora, "wiki", "enwiki-table-markup.xml.bz2")  # no <siteinfo>
    docs, q, s = read_all(path)
    assert len(docs) == 5 and not q and not s
    for d in docs:
        assert "{|" not in d.doc["text"] and "||" not in d.doc["text"] and "\n|" not in d.doc["text"]
    prod = next(d.doc["text"] for d in docs if d.doc["title"] == "Academy Award for Best Production Design")
    assert "\nBAFTA Award for Best Production Design\n" in prod   # a list item kept as its own line


def test_jawiki_and_non_utf8_dumps(shared_corpora, tmp_path):
    path = os.path.join(shared_corpora, "wiki", "jawiki-20230501-first120pages.xml.bz2")
    pages = inventory(path)
    docs, q, s = read_all(path)
    main = [p for p in pages if p["ns"] == 0 and not p["redirect"]]
    assert s["redirect"] == sum(1 for p in pages if p["ns"] == 0 and p["redirect"])
    assert len(docs) + s["disambiguation"] + q["empty_text"] == len(main)
    assert sum(v for k, v in s.items() if k.startswith("namespace_")) == sum(1 for p in pages if p["ns"] != 0)
    assert all(re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", d.doc["text"]) for d in docs)
    assert all(d.doc["lang"] == "ja" and d.doc["url"].startswith("https://ja.wikipedia.org/wiki/") for d in docs)
    # the same dump re-encoded as UTF-16 (BOM + declaration) and as EUC-JP (declaration only)
    xml = bz2.open(path).read().decode("utf-8")
    cut = 0
    for _ in range(15):  # the first 15 pages keep the test fast
        cut = xml.index("</page>", cut) + len("</page>")
    xml = xml[:cut] + "\n</mediawiki>\n"
    (tmp_path / "ja-utf8.xml.bz2").write_bytes(bz2.compress(xml.encode("utf-8")))
    ref = [(d.doc["title"], d.doc["text"]) for d in read_all(str(tmp_path / "ja-utf8.xml.bz2"))[0]]
    assert len(ref) >= 8
    for enc in ("utf-16", "euc_jp"):
        body = re.sub(r"^<mediawiki", f'<?xml version="1.0" encoding="{enc.upper().replace("_", "-")}"?>\n<mediawiki',
                      xml, count=1)
        data = body.encode(enc, "xmlcharrefreplace")
        (tmp_path / f"ja-{enc}.xml.bz2").write_bytes(bz2.compress(data))
        got, q2, s2 = read_all(str(tmp_path / f"ja-{enc}.xml.bz2"))
        got = [(d.doc["title"], d.doc["text"]) for d in got]
        assert [t for t, _ in got] == [t for t, _ in ref]
        same = sum(1 for (a, x), (b, y) in zip(got, ref) if x.replace("\ufffd", "") == y)
        assert same >= len(ref) - 2, (enc, same, len(ref))  # EUC-JP cannot hold a few symbols


def _multistream(xml: str, pages_per_stream: int) -> bytes:
    """A Wikipedia-style multistream dump: header stream, streams of N pages, footer stream."""
    head, rest = xml.split("<page>", 1)
    body, tail = ("<page>" + rest).rsplit("</page>", 1)
    pages = [p + "</page>" for p in body.split("</page>") if p.strip()]
    streams = [bz2.compress(head.encode())]
    for i in range(0, len(pages), pages_per_stream):
        streams.append(bz2.compress("".join(pages[i:i + pages_per_stream]).encode()))
    streams.append(bz2.compress(tail.encode()))
    return b"".join(streams)


def test_multistream_byte_ranges_read_every_page_once(shared_corpora, tmp_path):
    path = os.path.join(shared_corpora, "wiki", "jawiki-20230501-first120pages.xml.bz2")
    xml = bz2.open(path).read().decode("utf-8")
    cut = 0
    for _ in range(25):  # the first 25 pages (about 0.5 MB of XML) keep the test fast
        cut = xml.index("</page>", cut) + len("</page>")
    xml = xml[:cut] + "\n</mediawiki>\n"
    single = tmp_path / "single.xml.bz2"
    single.write_bytes(bz2.compress(xml.encode()))
    ms = tmp_path / "multi.xml.bz2"
    ms.write_bytes(_multistream(xml, 3))
    ref, _, whole_skips = read_all(str(single))
    # pbzip2-style: the same XML cut into streams at arbitrary byte offsets (pages span streams)
    raw = xml.encode()
    cuts = list(range(0, len(raw), 40_000)) + [len(raw)]
    pb = tmp_path / "pbzip.xml.bz2"
    pb.write_bytes(b"".join(bz2.compress(raw[a:b]) for a, b in zip(cuts, cuts[1:])))
    for f in (ms, pb):
        spec = {"path": str(f), "format": "mediawiki", "size": f.stat().st_size, "options": {"split_bytes": 30_000}}
        ranges = plan_read_tasks([spec])
        assert len(ranges) > 3
        got, skips = [], collections.Counter()
        for r in ranges:
            d, rq, rs = read_all(str(f), rng=r["range"])
            got += d
            skips.update(rs)
            assert not rq
        assert [d.doc["title"] for d in got] == [d.doc["title"] for d in ref]
        assert [d.doc["text"] for d in got] == [d.doc["text"] for d in ref]
        assert skips == whole_skips and sum(skips.values()) > 5


def test_truncated_bz2_keeps_pages_before_the_break(shared_corpora, tmp_path):
    # bzip2 yields whole blocks only: one page per stream, so a cut loses only the page it hits
    src = os.path.join(shared_corpora, "wiki", "enwiki-table-markup.xml.bz2")
    data = _multistream(bz2.open(src).read().decode("utf-8"), 1)
    (tmp_path / "full.xml.bz2").write_bytes(data)
    (tmp_path / "cut.xml.bz2").write_bytes(data[: len(data) * 2 // 3])
    docs, q, s = read_all(str(tmp_path / "cut.xml.bz2"))
    full, _, _ = read_all(str(tmp_path / "full.xml.bz2"))
    assert q["corrupt_compression"] == 1 and q["truncated_page"] <= 1
    assert 0 < len(docs) < len(full) and [d.doc["title"] for d in docs] == [d.doc["title"] for d in full][:len(docs)]


def test_sample_dumps_skip_redirect_disambiguation_and_talk(samples_dir):
    for lang in ("en", "zh"):
        docs, q, s = read_all(os.path.join(samples_dir, "wiki", f"{lang}wiki-sample.xml.bz2"))
        assert s == {"redirect": 1, "disambiguation": 1, "namespace_1": 1} and not q
        for d in docs:
            t = d.doc["text"]
            assert "Infobox" not in t and "cite web" not in t and "wikitable" not in t and "Example.jpg" not in t
            assert "Towns" not in t and "[[" not in t
            assert ("\nHistory\n" in t) if lang == "en" else ("\n历史\n" in t)


def test_giant_page_is_quarantined_in_flat_memory(shared_corpora, tmp_path):
    path = os.path.join(shared_corpora, "wiki", "enwiki-table-markup.xml.bz2")
    xml = bz2.open(path).read().decode("utf-8")
    i = xml.index("<page>")
    giant = ("<page><title>Giant</title><ns>0</ns><id>999</id><revision><text>"
             + "lorem ipsum " * 400_000 + "</text></revision></page>")       # 4.8 MB page
    (tmp_path / "g.xml.bz2").write_bytes(bz2.compress((xml[:i] + giant + xml[i:]).encode()))
    docs, q, s = read_all(str(tmp_path / "g.xml.bz2"), {"max_page_chars": 1_000_000, "chunk_bytes": 65536})
    assert q == {"too_large": 1} and len(docs) == 5


VI_DUMP = os.path.join(os.path.dirname(__file__), "data", "viwiki-fragment.xml")


def test_namespace_names_and_aliases_come_from_the_dumps_siteinfo():
    """A Vietnamese dump (not on any built-in list): `Tập tin:` / `Hình:` / `Ảnh:` file links
    (with their `nhỏ|200px|phải` image parameters), `Thể loại:` / `TL:` category links and
    `__KHÔNG_MỤC_LỤC__` magic words leave no trace; a `[[:Thể loại:..]]` link keeps its text,
    a `__init__` in prose stays, and the `Tập tin:` page is namespace 6."""
    from lmrefinery.ingest.wiki import parse_siteinfo

    docs, q, s = read_all(VI_DUMP)
    assert not q and s == {"namespace_6": 1}
    by_title = {d.doc["title"]: d.doc for d in docs}
    assert set(by_title) == {"Sông Hương", "Phở"} and by_title["Phở"]["lang"] == "vi"
    song, pho = by_title["Sông Hương"]["text"], by_title["Phở"]["text"]
    for text in (song, pho):
        assert not re.search(r"nhỏ|\dpx|phải\||trái\||__[A-ZÀ-Ỹ_]+__|Hình:|Ảnh:|Tập tin|TL:", text), text
        assert "Perfume River" not in text and "Rivière" not in text
    assert "Thể loại" not in song and song.startswith("Sông Hương là con sông chảy qua thành phố Huế")
    assert pho.count("Thể loại") == 1 and "Thể loại:Ẩm thực Việt Nam liệt kê" in pho
    assert "hàm __init__ không" in pho
    site = parse_siteinfo(open(VI_DUMP, encoding="utf-8").read())
    assert site.namespace_of("Thảo luận:Phở") == 1 and site.namespace_of("hình:X.png") == 6
    assert site.namespace_of("Thể_loại:Sông") == 14 and site.namespace_of("Sông Hương: lịch sử") == 0


def test_file_links_under_an_undeclared_alias_are_dropped_by_their_image_parameters():
    """XML dumps list each namespace's local name, not always its aliases: a file link under
    an alias the dump does not declare is still recognised by its size parameter."""
    from lmrefinery.ingest.wiki import parse_siteinfo, wikitext_to_text

    head = open(VI_DUMP, encoding="utf-8").read()
    no_aliases = parse_siteinfo(re.sub(r"<namespacealiases>.*?</namespacealiases>", "", head, flags=re.S))
    assert no_aliases.namespace_of("Hình:X.png") == 0 and no_aliases.namespace_of("Tập tin:X.png") == 6
    text = wikitext_to_text("[[Hình:Hue.jpg|nhỏ|200px|phải|Chú thích ảnh]]\nSông Hương chảy qua [[Huế|thành phố "
                            "Huế]].\n[[Hình:B.png|x120px|Bản đồ]]\n[[Nghệ thuật|nghệ thuật 200px]] vẫn giữ.",
                            no_aliases)
    assert [ln for ln in text.split("\n") if ln] == ["Sông Hương chảy qua thành phố Huế.", "nghệ thuật 200px vẫn giữ."]
