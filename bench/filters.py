"""Benchmark: our `lid` + `quality` stages against DataTrove's LanguageFilter +
GopherRepetitionFilter + GopherQualityFilter + C4QualityFilter +
FineWebQualityFilter, on the same documents in one run, one core each.

Documents: the shared English web texts (C4 sample, CCNet head docs, CC WARC
pages extracted with resiliparse) and the English Wikipedia plain text,
repeated for volume. Both sides use the same lid.176.ftz file (DataTrove's
model loader is pointed at our cache; nothing is downloaded).

Reports MB/s per core (UTF-8 bytes of input text / single-process seconds,
best of --repeats, the two sides interleaved) for LID and for the heuristic
chain, and the per-document keep/drop agreement.

    .venv/bin/python bench/filters.py [--copies 2] [--repeats 3]

Needs `pip install datatrove spacy` (plain datatrove, NOT datatrove[processing]).
"""
from __future__ import annotations

import sys as _sys  # bench/ holds other scripts (e.g. tokenize.py): keep it off the import path

_sys.path[:] = [p for p in _sys.path if p not in ("", __import__("os").path.dirname(__import__("os").path.abspath(__file__)))]

import argparse
import copy
import json
import os
import platform
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("LMR_SHARED_CORPORA", os.path.join(ROOT, "..", "shared", "corpora"))
RULES = ["gopher_repetition", "gopher_quality", "c4", "fineweb"]


def load_docs(copies: int) -> list[dict]:
    from lmrefinery.quality.sources import warc_texts

    docs = []
    with open(f"{SHARED}/web/c4_demo.jsonl", encoding="utf-8") as f:
        docs += [{"src": "web:c4", "text": json.loads(ln)["text"]} for ln in f]
    for n in ("0091", "0174"):
        with open(f"{SHARED}/web/ccnet-cc_en_head-{n}.jsonl", encoding="utf-8") as f:
            docs += [{"src": "web:ccnet", "text": json.loads(ln)["text"]} for ln in f]
    docs += [{"src": "web:warc", "text": r["text"]}
             for r in warc_texts(f"{SHARED}/web/cc-main-2020-34-resiliparse-sample.warc.gz", min_chars=1)]
    with open(f"{SHARED}/wiki/wiki_demo_en_plaintext.txt", encoding="utf-8") as f:
        docs += [{"src": "wiki", "text": ln.rstrip("\n")} for ln in f if ln.strip()]
    out = []
    for c in range(copies):
        out += [dict(d, id=f"{c}-{i}") for i, d in enumerate(docs)]
    return out


def mb(texts) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


# ----------------------------------------------------------------- ours
def ours_lid(docs, max_chars=None):
    from lmrefinery.core.schema import docs_to_table
    from lmrefinery.core.stage import StageContext, get_stage

    cls = get_stage("lid")
    extra = {} if max_chars is None else {"max_chars": max_chars}
    st = cls(cls.Params(allowed=["en"], min_score=0.65, **extra), StageContext(output_root=".", stage_dir="."))
    st.setup()
    tables = [docs_to_table([{"id": d["id"], "text": d["text"]} for d in docs[i:i + 2048]])
              for i in range(0, len(docs), 2048)]

    def run():
        keep, langs = {}, {}
        for t in tables:
            r = st.process(t)
            for i, lang in zip(r.kept.column("id").to_pylist(), r.kept.column("lang").to_pylist()):
                keep[i], langs[i] = True, lang
            if r.rejected is not None:
                for i, lang in zip(r.rejected.column("id").to_pylist(), r.rejected.column("lang").to_pylist()):
                    keep[i], langs[i] = False, lang
        return keep, langs
    return run


def ours_quality(docs, all_signals=True, lang="en"):
    from lmrefinery.core.schema import docs_to_table
    from lmrefinery.core.stage import StageContext, get_stage

    cls = get_stage("quality")
    rules = RULES if lang == "en" else RULES + ["cjk"]
    st = cls(cls.Params(rules=rules, all_signals=all_signals), StageContext(output_root=".", stage_dir="."))
    st.setup()
    tables = [docs_to_table([{"id": d["id"], "text": d["text"], "lang": lang} for d in docs[i:i + 2048]])
              for i in range(0, len(docs), 2048)]

    def run():
        keep, why = {}, {}
        for t in tables:
            r = st.process(t)
            keep.update({i: True for i in r.kept.column("id").to_pylist()})
            if r.rejected is not None:
                for i, w in zip(r.rejected.column("id").to_pylist(), r.rejected.column("reject_reason").to_pylist()):
                    keep[i], why[i] = False, w
        return keep, why
    return run


# ----------------------------------------------------------------- DataTrove
def dt_docs(docs):
    from datatrove.data import Document

    return [Document(text=d["text"], id=d["id"]) for d in docs]


def dt_lid(docs):
    import fasttext
    from datatrove.utils import _import_utils

    # DataTrove asks for the distribution "fasttext-numpy2-wheel"; ours is "fasttext-numpy2", the
    # same `fasttext` module. Installing the other wheel would replace our module, so accept ours.
    _orig = _import_utils._is_distribution_available
    _import_utils._is_distribution_available = lambda name: name == "fasttext-numpy2-wheel" or _orig(name)
    from datatrove.pipeline.filters import LanguageFilter

    from lmrefinery.models import lid_model_path

    lf = LanguageFilter(languages=["en"], language_threshold=0.65)
    fasttext.FastText.eprint = lambda *a, **k: None
    lf.model._model = fasttext.load_model(lid_model_path())  # same file, no download
    base = dt_docs(docs)

    def run():
        keep, langs = {}, {}
        for d in base:
            d.metadata = {}
            keep[d.id] = bool(lf.filter(d))
            langs[d.id] = d.metadata["language"]
        return keep, langs
    return run


def dt_quality(docs):
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    chain = [("gopher_repetition", GopherRepetitionFilter(language="en")),
             ("gopher_quality", GopherQualityFilter(language="en")),
             ("c4", C4QualityFilter(language="en")),
             ("fineweb", FineWebQualityFilter(language="en"))]
    base = dt_docs(docs)

    def run():
        keep, why = {}, {}
        for d0 in base:
            d = copy.copy(d0)  # C4 rewrites doc.text
            ok = True
            for name, f in chain:
                r = f.filter(d)
                if r is not True and not (isinstance(r, tuple) and r[0]):
                    ok = False
                    why[d.id] = f"{name}:{r[1] if isinstance(r, tuple) else '?'}"
                    break
            keep[d.id] = ok
        return keep, why
    return run


def best_time(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "filters.json"))
    a = ap.parse_args(argv)
    try:  # one core: no BLAS/fastText threads
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    docs = load_docs(a.copies)
    n_mb = mb(d["text"] for d in docs)
    print(f"{len(docs)} documents, {n_mb:.2f} MB ({a.copies} copies)", file=sys.stderr)

    runs = {"ours_lid": ours_lid(docs), "ours_lid_whole_text": ours_lid(docs, 0), "dt_lid": dt_lid(docs)}
    times, res = {}, {}
    for _ in range(a.repeats):  # interleaved
        for k, fn in runs.items():
            t, out = best_time(fn, 1)
            times[k] = min(times.get(k, float("inf")), t)
            res[k] = out
    (ok_l, lang_o), (ok_dt, lang_dt) = res["ours_lid"], res["dt_lid"]
    lid_agree = sum(lang_o[i] == lang_dt[i] for i in lang_o) / len(lang_o)
    lid_keep_agree = sum(ok_l[i] == ok_dt[i] for i in ok_l) / len(ok_l)
    ok_w, lang_w = res["ours_lid_whole_text"]
    lid_w_agree = sum(lang_w[i] == lang_dt[i] for i in lang_w) / len(lang_w)
    lid_w_keep = sum(ok_w[i] == ok_dt[i] for i in ok_w) / len(ok_w)

    # heuristic chain on the documents both sides call English
    en = [d for d in docs if ok_l[d["id"]] and ok_dt[d["id"]]]
    en_mb = mb(d["text"] for d in en)
    qruns = {"ours_quality": ours_quality(en, True), "ours_quality_first_fail": ours_quality(en, False),
             "dt_quality": dt_quality(en)}
    for _ in range(a.repeats):
        for k, fn in qruns.items():
            t, out = best_time(fn, 1)
            times[k] = min(times.get(k, float("inf")), t)
            res[k] = out
    ko, why_o = res["ours_quality"]
    kd, why_d = res["dt_quality"]
    assert res["ours_quality_first_fail"][0] == ko

    def agree(pred):
        ids = [d["id"] for d in en if pred(d)]
        return (sum(ko[i] == kd[i] for i in ids) / len(ids) if ids else None), len(ids)

    web_agree, n_web = agree(lambda d: d["src"].startswith("web"))
    wiki_agree, n_wiki = agree(lambda d: d["src"] == "wiki")
    all_agree, n_all = agree(lambda d: True)
    disagreements = Counter((why_d.get(i), why_o.get(i)) for i in ko if ko[i] != kd[i])

    # Chinese (jieba) path: 三國志演義 chunks, no peer (DataTrove's Gopher defaults are English-only)
    from lmrefinery.quality.sources import chunk_text

    with open(f"{SHARED}/books/pg23950_sanguo_yanyi_zh-Hant.txt", encoding="utf-8") as f:
        zh = [{"id": f"zh{i}", "text": t} for i, t in enumerate(chunk_text(f.read(), 2000))]
    zh_mb = mb(d["text"] for d in zh)
    zrun = ours_quality(zh, True, "zh")
    zrun()  # jieba dictionary load
    times["ours_quality_zh"], (zk, _) = best_time(zrun, a.repeats)

    def rate(k, size):
        return round(size / times[k], 3)

    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, 1 core per side",
        "documents": len(docs), "mb": round(n_mb, 3), "copies": a.copies, "repeats": a.repeats,
        "lid": {"ours_mb_s": rate("ours_lid", n_mb), "datatrove_mb_s": rate("dt_lid", n_mb),
                "speedup": round(times["dt_lid"] / times["ours_lid"], 2),
                "label_agreement": round(lid_agree, 4), "keep_agreement": round(lid_keep_agree, 4),
                "ours_whole_text_mb_s": rate("ours_lid_whole_text", n_mb),
                "speedup_whole_text": round(times["dt_lid"] / times["ours_lid_whole_text"], 2),
                "whole_text_label_agreement": round(lid_w_agree, 4),
                "whole_text_keep_agreement": round(lid_w_keep, 4),
                "note": "ours: default max_chars=4000 (first 4000 characters); whole_text: max_chars=0"},
        "heuristics": {"documents": len(en), "mb": round(en_mb, 3),
                       "ours_mb_s": rate("ours_quality", en_mb),
                       "ours_first_fail_mb_s": rate("ours_quality_first_fail", en_mb),
                       "datatrove_mb_s": rate("dt_quality", en_mb),
                       "speedup": round(times["dt_quality"] / times["ours_quality"], 2),
                       "speedup_first_fail": round(times["dt_quality"] / times["ours_quality_first_fail"], 2),
                       "agreement_all": round(all_agree, 4), "agreement_web": round(web_agree, 4),
                       "web_documents": n_web, "agreement_wiki": wiki_agree, "wiki_documents": n_wiki,
                       "kept_ours": sum(ko.values()), "kept_datatrove": sum(kd.values()),
                       "disagreements": {f"{d} | {o}": n for (d, o), n in disagreements.most_common()}},
        "quality_zh": {"documents": len(zh), "mb": round(zh_mb, 3), "ours_mb_s": rate("ours_quality_zh", zh_mb),
                       "kept": sum(zk.values())},
        "seconds": {k: round(v, 3) for k, v in times.items()},
        "notes": "DataTrove's English word tokenizer is spaCy blank('en'); ours is a regex approximation. "
                 "Decisions compared on documents both LIDs keep as English. Load on the machine affects "
                 "both sides alike (interleaved, best of repeats).",
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    L, H = result["lid"], result["heuristics"]
    print(f"{'':28}{'ours MB/s':>12}{'DataTrove MB/s':>16}{'speedup':>9}")
    print(f"{'lid (first 4000 chars)':28}{L['ours_mb_s']:>12}{L['datatrove_mb_s']:>16}{L['speedup']:>9}")
    print(f"{'lid (whole text)':28}{L['ours_whole_text_mb_s']:>12}{L['datatrove_mb_s']:>16}"
          f"{L['speedup_whole_text']:>9}")
    print(f"{'heuristics (all signals)':28}{H['ours_mb_s']:>12}{H['datatrove_mb_s']:>16}{H['speedup']:>9}")
    print(f"{'heuristics (first fail)':28}{H['ours_first_fail_mb_s']:>12}{H['datatrove_mb_s']:>16}"
          f"{H['speedup_first_fail']:>9}")
    print(f"{'heuristics zh (jieba)':28}{result['quality_zh']['ours_mb_s']:>12}{'-':>16}{'-':>9}")
    print(f"agreement: web {H['agreement_web']:.2%} ({n_web} docs), wiki {wiki_agree} ({n_wiki}), "
          f"lid labels {L['label_agreement']:.2%} (keep {L['keep_agreement']:.2%}), "
          f"whole text {L['whole_text_label_agreement']:.2%} (keep {L['whole_text_keep_agreement']:.2%})")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(ROOT, "lib"))
    raise SystemExit(main())
