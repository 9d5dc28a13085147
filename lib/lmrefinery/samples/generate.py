"""`lmrefinery samples OUT_DIR`: sample inputs in the real formats the ingest
stage reads, with planted problems and their labels.

Written (deterministic for a seed):
  web/pages-00000.warc.gz      Common Crawl style WARC (per-record gzip members) of HTML
                               pages in utf-8 and GBK, plus a 404 and a non-HTML record
  web/extracted-00000.jsonl    already-extracted web text (url, title, text)
  wiki/enwiki-sample.xml.bz2   MediaWiki export with articles, redirects, a
  wiki/zhwiki-sample.xml.bz2   disambiguation page and a talk page
  books/*.txt                  Project Gutenberg style books (English, Chinese)
  instructions/*.json[l]       Alpaca JSON array, BELLE JSONL, ShareGPT JSONL
  labels.jsonl                 one line per planted document: key (url or title), kind, lang
Planted kinds: good, exact_dup, near_dup, spam, boilerplate, too_short.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import html
import json
import os
import random
import textwrap
import uuid
from xml.sax.saxutils import escape

from . import text as T

DATE = "2024-05-20T10:00:00Z"


def _rng(seed: int, name: str) -> random.Random:
    return random.Random(int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:12], 16))


def _uuid(r: random.Random) -> str:
    return str(uuid.UUID(int=r.getrandbits(128), version=4))


def plan_web_docs(seed: int, n: int, prefix: str) -> list[dict]:
    """The documents of one web sample, with their planted kind."""
    r = _rng(seed, prefix)
    docs = []

    def url(i, kind):
        return f"https://{prefix}.samples.lmrefinery.test/{kind}/{i:05d}"

    n_good = max(4, int(n * 0.74))
    for i in range(n_good):
        x = r.random()
        lang = "en" if x < 0.62 else "zh" if x < 0.84 else r.choice(sorted(T.OTHER))
        body = T.en_document(r) if lang == "en" else T.zh_document(r) if lang == "zh" else T.other_document(r, lang)
        title = body.split(".")[0][:60] if lang not in ("zh", "ja") else body[:16]
        docs.append({"url": url(i, "doc"), "title": title, "text": body, "lang": lang, "kind": "good"})
    goods = [d for d in docs if d["lang"] in ("en", "zh")]
    for j in range(max(1, int(n * 0.06))):
        src = goods[r.randrange(len(goods))]
        docs.append({**src, "url": url(j, "copy"), "kind": "exact_dup", "of": src["url"]})
    for j in range(max(1, int(n * 0.06))):
        src = goods[r.randrange(len(goods))]
        docs.append({**src, "url": url(j, "near"), "text": T.near_copy(r, src["text"], src["lang"]),
                     "kind": "near_dup", "of": src["url"]})
    for j in range(max(2, int(n * 0.06))):
        lang = "en" if j % 2 == 0 else "zh"
        docs.append({"url": url(j, "spam"), "title": "WIN BIG" if lang == "en" else "娱乐平台",
                     "text": T.spam_document(r, lang), "lang": lang, "kind": "spam"})
    for j in range(max(1, int(n * 0.04))):
        docs.append({"url": url(j, "nav"), "title": "Welcome", "text": T.boilerplate_document(r),
                     "lang": "en", "kind": "boilerplate"})
    for j in range(max(1, int(n * 0.02))):
        docs.append({"url": url(j, "short"), "title": "Note", "text": "See you soon.", "lang": "en",
                     "kind": "too_short"})
    r.shuffle(docs)
    return docs


def _html_page(d: dict) -> str:
    paras = "".join(f"<p>{html.escape(p)}</p>\n" for p in d["text"].split("\n\n"))
    nav = "".join(f'<li><a href="/{k}">{k}</a></li>' for k in ("Home", "News", "About", "Contact"))
    lang = d.get("lang", "en")
    return (f'<!DOCTYPE html><html lang="{lang}"><head><title>{html.escape(d["title"])}</title></head>'
            f'<body><nav><ul>{nav}</ul></nav><main><article><h1>{html.escape(d["title"])}</h1>\n{paras}'
            f'</article></main><footer>Copyright 2024. All rights reserved. <a href="/privacy">Privacy</a>'
            f'</footer></body></html>')


def _warc_record(headers: list[tuple[str, str]], block: bytes) -> bytes:
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    head += f"Content-Length: {len(block)}\r\n\r\n"
    return gzip.compress(head.encode() + block + b"\r\n\r\n", mtime=0)


def write_warc(path: str, docs: list[dict], seed: int) -> None:
    r = _rng(seed, "warc-ids")
    info = b"software: lmrefinery samples\r\nformat: WARC File Format 1.0\r\n"
    out = [_warc_record([("WARC-Type", "warcinfo"), ("WARC-Record-ID", f"<urn:uuid:{_uuid(r)}>"),
                         ("WARC-Date", DATE), ("WARC-Filename", os.path.basename(path)),
                         ("Content-Type", "application/warc-fields")], info)]
    for d in docs:
        enc = "gbk" if d.get("lang") == "zh" and r.random() < 0.5 else "utf-8"
        body = _html_page(d).encode(enc, "xmlcharrefreplace")
        http = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset={enc}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        rid = _uuid(r)
        out.append(_warc_record([("WARC-Type", "request"), ("WARC-Record-ID", f"<urn:uuid:{_uuid(r)}>"),
                                 ("WARC-Date", DATE), ("WARC-Target-URI", d["url"]),
                                 ("Content-Type", "application/http; msgtype=request")],
                                f"GET / HTTP/1.1\r\nHost: {d['url'].split('/')[2]}\r\n\r\n".encode()))
        out.append(_warc_record([("WARC-Type", "response"), ("WARC-Record-ID", f"<urn:uuid:{rid}>"),
                                 ("WARC-Date", DATE), ("WARC-Target-URI", d["url"]),
                                 ("Content-Type", "application/http; msgtype=response")], http))
    # a 404 and a non-HTML response: counted by reason, never documents
    for status, ctype, body in (("404 Not Found", "text/html", b"<html><body>Not found</body></html>"),
                                ("200 OK", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(64))):
        http = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        out.append(_warc_record([("WARC-Type", "response"), ("WARC-Record-ID", f"<urn:uuid:{_uuid(r)}>"),
                                 ("WARC-Date", DATE),
                                 ("WARC-Target-URI", f"https://samples.lmrefinery.test/other/{status[:3]}"),
                                 ("Content-Type", "application/http; msgtype=response")], http))
    with open(path, "wb") as f:
        f.write(b"".join(out))


def _wikitext(r: random.Random, lang: str, title: str) -> str:
    para = T.en_paragraph if lang == "en" else T.zh_paragraph
    head = ("History", "Geography", "Culture") if lang == "en" else ("历史", "地理", "文化")
    cat = "Category" if lang == "en" else "Category"
    parts = [f"{{{{Infobox settlement\n| name = {title}\n| population = {r.randint(1000, 90000)}\n}}}}",
             f"'''{title}''' " + para(r) + "<ref>{{cite web |url=https://example.org |title=Source}}</ref>"]
    for h in head:
        parts.append(f"== {h} ==")
        parts.append(para(r) + f" [[{title} (disambiguation)|{title}]].")
        if r.random() < 0.5:
            parts.append("\n".join(f"* {T.en_sentence(r) if lang == 'en' else T.zh_sentence(r)}" for _ in range(3)))
    parts.append('{| class="wikitable"\n|-\n! Year !! Value\n|-\n| 1900 || 12\n|}')
    parts.append(f"[[File:Example.jpg|thumb|A picture]]\n[[{cat}:Towns]]\n[[fr:{title}]]")
    return "\n\n".join(parts)


def write_wiki(path: str, lang: str, seed: int, n: int) -> list[dict]:
    r = _rng(seed, f"wiki-{lang}")
    labels: list[dict] = []
    pages: list[tuple[str, int, str, str | None]] = []
    for i in range(n):
        title = (f"Sample town {i}" if lang == "en" else f"示例城镇{i}")
        pages.append((title, 0, _wikitext(r, lang, title), None))
        labels.append({"key": title, "kind": "good", "lang": lang})
    pages.append((("Sample redirect" if lang == "en" else "示例重定向"), 0, "#REDIRECT [[Sample town 0]]",
                  "Sample town 0"))
    pages.append((("Sample (disambiguation)" if lang == "en" else "示例 (消歧义)"), 0,
                  "'''Sample''' may refer to:\n* [[Sample town 0]]\n* [[Sample town 1]]\n\n{{disambiguation}}", None))
    pages.append((("Talk:Sample town 0" if lang == "en" else "Talk:示例城镇0"), 1, "Discussion about the article.", None))
    body = [f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="{lang}">',
            f"<siteinfo><sitename>Wikipedia</sitename><dbname>{lang}wiki</dbname>"
            f"<base>https://{lang}.wikipedia.org/wiki/Main_Page</base><generator>MediaWiki 1.41</generator>"
            '<case>first-letter</case><namespaces><namespace key="0" case="first-letter" />'
            '<namespace key="1" case="first-letter">Talk</namespace></namespaces></siteinfo>']
    for pid, (title, ns, txt, redirect) in enumerate(pages, start=1):
        red = f'<redirect title="{escape(redirect)}" />' if redirect else ""
        body.append(f"<page><title>{escape(title)}</title><ns>{ns}</ns><id>{pid}</id>{red}<revision>"
                    f"<id>{1000 + pid}</id><timestamp>2024-05-01T00:00:00Z</timestamp><model>wikitext</model>"
                    f'<format>text/x-wiki</format><text bytes="{len(txt.encode())}" xml:space="preserve">'
                    f"{escape(txt)}</text></revision></page>")
    body.append("</mediawiki>\n")
    with open(path, "wb") as f:
        f.write(bz2.compress("\n".join(body).encode("utf-8")))
    return labels


def write_books(out: str, seed: int) -> list[dict]:
    r = _rng(seed, "books")
    labels = []
    en = "\n\n".join(textwrap.fill(T.en_paragraph(r, 5), 70) for _ in range(12))
    title = "A Year in the Harbour Town"
    with open(os.path.join(out, "harbour_town_en.txt"), "w", encoding="utf-8", newline="\r\n") as f:
        f.write(f"The Project Gutenberg EBook of {title}, by A. Sample\n\nThis eBook is for the use of anyone "
                f"anywhere at no cost and with\nalmost no restrictions whatsoever.\n\nTitle: {title}\n\n"
                f"*** START OF THIS PROJECT GUTENBERG EBOOK {title.upper()} ***\n\n\n\n{en}\n\n\n"
                f"*** END OF THIS PROJECT GUTENBERG EBOOK {title.upper()} ***\n\n"
                "Updated editions will replace the previous one. START: FULL LICENSE\n"
                "THE FULL PROJECT GUTENBERG LICENSE\nPLEASE READ THIS BEFORE YOU DISTRIBUTE OR USE THIS WORK\n")
    labels.append({"key": "harbour_town_en", "kind": "good", "lang": "en"})
    zh_paras = []
    for _ in range(12):
        p = T.zh_paragraph(r, 5)
        zh_paras.append("　　" + "\n".join(p[i:i + 38] for i in range(0, len(p), 38)))
    with open(os.path.join(out, "river_village_zh.txt"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(zh_paras) + "\n")
    labels.append({"key": "river_village_zh", "kind": "good", "lang": "zh"})
    return labels


def write_instructions(out: str, seed: int, n: int) -> None:
    r = _rng(seed, "instructions")
    alpaca = []
    for i in range(n):
        topic = r.choice(T.EN_OBJ)
        alpaca.append({"instruction": f"Write two sentences about {topic}.",
                       "input": "" if i % 3 else f"Mention {r.choice(T.EN_SUBJ)}.",
                       "output": " ".join(T.en_sentence(r) for _ in range(2))})
    alpaca.append(dict(alpaca[0]))  # planted exact duplicate
    with open(os.path.join(out, "alpaca_en.json"), "w", encoding="utf-8") as f:
        json.dump(alpaca, f, ensure_ascii=False, indent=1)
    with open(os.path.join(out, "belle_zh.jsonl"), "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"instruction": f"请用两句话介绍{r.choice(T.ZH_WHERE)[1:]}发生的事情。\n{r.choice(T.ZH_WHO)}",
                                "input": "", "output": T.zh_sentence(r) + T.zh_sentence(r)}, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "sharegpt_mixed.jsonl"), "w", encoding="utf-8") as f:
        for i in range(max(2, n // 2)):
            zh = i % 2 == 1
            conv = [{"from": "system", "value": "You are a helpful assistant."}] if i % 4 == 0 else []
            for _ in range(r.randint(1, 3)):
                conv.append({"from": "human", "value": f"请讲讲{r.choice(T.ZH_DO)}的经过。" if zh
                             else f"Tell me about {r.choice(T.EN_OBJ)}."})
                conv.append({"from": "gpt", "value": T.zh_paragraph(r, 2) if zh else T.en_paragraph(r, 2)})
            f.write(json.dumps({"id": f"s{i:04d}", "conversations": conv}, ensure_ascii=False) + "\n")


def write_samples(out_dir: str, seed: int = 0, docs: int = 200) -> dict:
    """Generate into a scratch folder, then copy only files whose bytes changed,
    so re-running leaves unchanged samples (and their mtimes) alone and a
    pipeline re-run over them skips its committed stages."""
    import filecmp
    import shutil
    import tempfile

    final = os.path.abspath(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        info = _generate(tmp, seed, docs)
        for root, _, files in os.walk(tmp):
            for fn in files:
                src = os.path.join(root, fn)
                dst = os.path.join(final, os.path.relpath(src, tmp))
                if not (os.path.exists(dst) and filecmp.cmp(src, dst, shallow=False)):
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    shutil.copyfile(src, dst)
    info["out_dir"] = final
    return info


def _generate(out_dir: str, seed: int, docs: int) -> dict:
    for sub in ("web", "wiki", "books", "instructions"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    labels: list[dict] = []
    warc_docs = plan_web_docs(seed, docs // 2, "warc")
    write_warc(os.path.join(out_dir, "web", "pages-00000.warc.gz"), warc_docs, seed)
    jsonl_docs = plan_web_docs(seed, docs - docs // 2, "text")
    with open(os.path.join(out_dir, "web", "extracted-00000.jsonl"), "w", encoding="utf-8") as f:
        for d in jsonl_docs:
            f.write(json.dumps({"url": d["url"], "title": d["title"], "text": d["text"],
                                "crawl": "SAMPLE-2024-22"}, ensure_ascii=False) + "\n")
    for d in warc_docs + jsonl_docs:
        lab = {"key": d["url"], "kind": d["kind"], "lang": d["lang"]}
        if "of" in d:
            lab["of"] = d["of"]
        labels.append(lab)
    n_wiki = max(3, docs // 20)
    labels += write_wiki(os.path.join(out_dir, "wiki", "enwiki-sample.xml.bz2"), "en", seed, n_wiki)
    labels += write_wiki(os.path.join(out_dir, "wiki", "zhwiki-sample.xml.bz2"), "zh", seed, n_wiki)
    labels += write_books(os.path.join(out_dir, "books"), seed)
    write_instructions(os.path.join(out_dir, "instructions"), seed, max(10, docs // 4))
    with open(os.path.join(out_dir, "labels.jsonl"), "w", encoding="utf-8") as f:
        for lab in labels:
            f.write(json.dumps(lab, ensure_ascii=False, sort_keys=True) + "\n")
    kinds: dict[str, int] = {}
    for lab in labels:
        kinds[lab["kind"]] = kinds.get(lab["kind"], 0) + 1
    return {"out_dir": out_dir, "seed": seed, "documents": len(labels), "planted": kinds}
