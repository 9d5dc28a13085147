"""Exact and near-duplicate removal: signatures equal datasketch's, connected
components equal scipy's on Ray and Spark, identical clusters across worker
counts and engines, incremental equals full, planted and real duplicates found."""
from __future__ import annotations

import glob
import json
import os
import random

import numpy as np
import pyarrow as pa
import pytest

from lmrefinery.core import storage
from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.runner import Runner
from lmrefinery.dedup import labelled as L
from lmrefinery.dedup import minhash as M
from lmrefinery.dedup.near import NearParams, cc_files, write_adjacency

SHARED_C4 = "web/c4_demo.jsonl"


# ---------------------------------------------------------------- helpers
def run(out, inputs, stages, engine="local", workers=2, labels=None):
    rec = {"name": "t", "output": out, "engine": engine, "resources": {"workers": workers},
           "inputs": inputs, "stages": [{"stage": "read"}] + stages, "report": False}
    if labels:
        rec["labels"] = labels
    return Runner(load_recipe(rec), quiet=True).run()


def jsonl_input(name, path):
    return {"name": name, "format": "jsonl", "paths": [path],
            "fields": {"text": "text", "lang": "lang", "title": "key"}}


def write_jsonl(path, docs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return path


def read_dir(out, stage_idx, sub):
    d = glob.glob(os.path.join(out, "stages", f"{stage_idx:02d}-*", sub))[0] if not out.startswith("s3://") else None
    if d is None:  # s3
        files = [f for f in storage.list_files(out + "/stages/") if f"/{sub}/" in f and f"/{stage_idx:02d}-" in f]
    else:
        files = storage.list_files(d)
    files = [f for f in files if f.endswith(".parquet")]
    return pa.concat_tables([storage.read_parquet(f) for f in sorted(files)], promote_options="permissive")


def clusters(out, idx=1):
    t = read_dir(out, idx, "clusters")
    return sorted((r["cluster"], r["id"], r["size"], r["kept"], r["is_kept"]) for r in t.to_pylist())


def rejects(out, idx=1):
    t = read_dir(out, idx, "rejects")
    if t.num_rows == 0:
        return []
    return sorted((r["id"], r["reject_reason"], r["duplicate_of"]) for r in t.to_pylist())


def report(out, idx=1):
    f = glob.glob(os.path.join(out, "stages", f"{idx:02d}-*", "dedup_report.json"))[0]
    return json.load(open(f))


def c4_texts(shared, n):
    out = []
    with open(os.path.join(shared, SHARED_C4), encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)["text"]
            if len(t.split()) > 150:
                out.append(t)
    return out[:n]


def chain(r, text, steps, rate=0.012):
    """Each doc an edit of the previous: neighbours similar, far ends not."""
    docs = [text]
    for _ in range(steps):
        docs.append(L.edit(r, docs[-1], False, "replace", rate))
    return docs


# ---------------------------------------------------------------- signatures
def test_mixed_tokens_keep_pure_signatures_and_split_scripts(shared_corpora):
    """script: mixed (default) shingles pure-Latin and pure-CJK texts exactly as the earlier
    per-text choice (auto) did -- same shingles, same signatures, both token hashes -- and a
    mixed text becomes one stream: CJK characters and whole words, never letter windows."""
    import datasketch

    en = c4_texts(shared_corpora, 8)
    zh = L._zh_sources(shared_corpora, 4) + ["2023年3月，东京的人口超过一千四百万。"]
    for t in en + zh:
        assert M.token_mode(t) == ("chars" if t in zh else "words")
        for h in ("xxh3", "sha1"):
            a = M.text_shingle_hashes(t, None, "mixed", 5, 5, h)
            b = M.text_shingle_hashes(t, None, "auto", 5, 5, h)
            assert np.array_equal(a, b)
            assert np.array_equal(M.signatures([a], 112, 1), M.signatures([b], 112, 1))
    mixed = "我们在周末一起 singing and dancing，然后用 python3 写了2023年的代码"
    toks, is_c = M.token_stream(mixed, "mixed")
    assert M.token_mode(mixed) == "mixed" and M.token_mode(mixed, "zh", "auto") == "chars"
    assert toks == ["我", "们", "在", "周", "末", "一", "起", "singing", "and", "dancing", "然", "后", "用",
                    "python3", "写", "了", "2", "0", "2", "3", "年", "的", "代", "码"]
    shingles = M.shingle_strings(toks, 5, "mixed", 5, is_c)
    old = M.shingle_strings(M.tokens(mixed, "chars"), 5, "chars")   # what character mode made of it
    assert "ingan" in old and "gandd" in old
    assert all("inganddancing" not in s and "sing" not in s.replace("singing", "") for s in shingles)
    assert "起 singing and dancing 然" in shingles and "python3 写了20" in shingles and "3年的代码" in shingles
    # the sha1 path hashes exactly these strings (what datasketch would be fed)
    ref = datasketch.MinHash(num_perm=64, seed=1)
    ref.update_batch([s.encode("utf-8") for s in shingles])
    sig = M.signatures([M.token_hashes(mixed, 5, "mixed", "sha1", 5)], 64, 1)[0]
    assert np.array_equal(ref.hashvalues.astype(np.uint64), sig.astype(np.uint64))


def test_code_question_inside_a_chinese_document_shares_its_shingles(shared_corpora):
    """The near-dup view of the same problem: under auto the Chinese document is shingled as
    characters and shares no shingle with the English question it quotes verbatim."""
    q = next(json.loads(x) for x in open(os.path.join(shared_corpora, "instructions", "self_instruct_seed_tasks.jsonl"),
                                          encoding="utf-8") if '"seed_task_31"' in x)
    question = q["instruction"] + "\n" + q["instances"][0]["input"]
    doc = L._zh_sources(shared_corpora, 1)[0][:600] + "\n" + question
    qs = set(M.text_shingle_hashes(question, None, "mixed", 5, 5).tolist())
    assert qs <= set(M.text_shingle_hashes(doc, None, "mixed", 5, 5).tolist())
    assert not qs & set(M.text_shingle_hashes(doc, "zh", "auto", 5, 5).tolist())



@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("hashname", ["sha1", "xxh3"])
def test_signatures_equal_datasketch(shared_corpora, scheme, hashname):
    import datasketch

    texts = c4_texts(shared_corpora, 12)
    zh = L._zh_sources(shared_corpora, 3)
    texts += zh + ["", "two words", "東京は日本の首都です。人口は多い。", texts[0].upper()]
    for num_perm, seed in ((112, 1), (64, 42)):
        cjks = [M.is_cjk(t) for t in texts]
        hl = [M.token_hashes(t, 5, c, hashname) for t, c in zip(texts, cjks)]
        sig = M.signatures(hl, num_perm, seed, scheme, chunk=777)  # chunk boundaries inside documents
        for i, (t, c) in enumerate(zip(texts, cjks)):
            kw = {} if hashname == "sha1" else {"hashfunc": lambda s, c=c: M.token_hash_xxh3(s, c)}
            ref = datasketch.MinHash(num_perm=num_perm, seed=seed, scheme=scheme, **kw)
            sh = M.shingle_strings(M.tokens(t, c), 5, c)
            if sh:
                ref.update_batch([s.encode("utf-8") for s in sh])
            assert np.array_equal(ref.hashvalues.astype(np.uint64), sig[i].astype(np.uint64)), (i, t[:40])
    assert cjks[12] and not cjks[0]  # Chinese passages use character shingles
    assert np.array_equal(sig[0], sig[len(texts) - 1])  # case-folded


def test_derived_bands_do_not_lose_recall_at_the_threshold():
    """Equal fp/fn weights (datasketch's rule) put the S-curve's midpoint above the threshold:
    at threshold 0.7, a pair of Jaccard 0.7 becomes a candidate with probability 0.39 and 0.8
    with 0.82 -- below the 14x8 default's 0.92. The default weights (0.2, 0.8) keep P(candidate)
    at the threshold above 0.6 for every threshold, and at J = 0.8 never below the default's
    for thresholds up to the default's own 0.72-0.75 (verification removes the extra
    candidates exactly)."""
    def p(s, b, r):
        return 1 - (1 - s ** r) ** b

    ds = NearParams(threshold=0.7, lsh_weights=(0.5, 0.5))
    assert p(0.7, ds.bands, ds.rows) < 0.5 and p(0.8, ds.bands, ds.rows) < p(0.8, 14, 8)
    for thr in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9):
        q = NearParams(threshold=thr)
        assert p(thr, q.bands, q.rows) > 0.6, thr
        assert q.bands * q.rows <= 112 and q.threshold == thr
        if thr <= 0.75:
            assert p(0.8, q.bands, q.rows) >= p(0.8, 14, 8) - 1e-9, thr


def test_band_parameters():
    from datasketch.lsh import _optimal_param

    p = NearParams()
    assert (p.bands, p.rows, p.num_perm) == (14, 8, 112) and abs(p.threshold - 0.719) < 1e-3
    for thr in (0.6, 0.85):
        q = NearParams(threshold=thr, lsh_weights=(0.5, 0.5))
        assert (q.bands, q.rows) == _optimal_param(thr, 112, 0.5, 0.5)
        assert q.threshold == thr
        w = NearParams(threshold=thr, lsh_weights=(0.3, 0.7))
        assert (w.bands, w.rows) == _optimal_param(thr, 112, 0.3, 0.7)
    with pytest.raises(ValueError):
        NearParams(bands=20, rows=8)
    with pytest.raises(ValueError):
        NearParams(bands=4)
    # banding: equal band keys exactly where the band's rows are equal
    sig = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [7, 2, 3, 4]], dtype=np.uint32)
    k = M.band_keys(sig, 2, 2)
    assert k[0, 0] == k[1, 0] and k[0, 1] != k[1, 1] and k[0, 1] == k[2, 1] and k[0, 0] != k[2, 0]
    assert len({*k[:, 0].tolist()} & {*k[:, 1].tolist()}) == 0


# ---------------------------------------------------------------- connected components
class _Job:
    def __init__(self, engine):
        self.engine = engine

    def map(self, fn, tasks, desc=""):
        return self.engine.map(fn, tasks)


def _graph(seed, chain_len):
    r = np.random.default_rng(seed)
    ids = np.unique(r.integers(-2**62, 2**62, 900, dtype=np.int64))
    r.shuffle(ids)
    edges = []
    pos = 0
    for ln in (chain_len, chain_len // 2, 7, 5):  # paths in random id order: worst case for stars
        edges += [(ids[pos + i], ids[pos + i + 1]) for i in range(ln - 1)]
        pos += ln
    while pos < 600:  # small random components with cycles
        n = int(r.integers(2, 6))
        grp = ids[pos:pos + n]
        edges += [(grp[i], grp[int(r.integers(0, i))]) for i in range(1, n)] + [(grp[0], grp[-1])]
        pos += n
    a = np.array([e[0] for e in edges], dtype=np.int64)
    b = np.array([e[1] for e in edges], dtype=np.int64)
    return a, b


def _expected_labels(a, b):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    m = len(a)
    g = coo_matrix((np.ones(m), (inv[:m], inv[m:])), shape=(len(nodes), len(nodes)))
    _, comp = connected_components(g, directed=False)
    root = {}
    for n, c in zip(nodes.tolist(), comp.tolist()):
        root[c] = min(root.get(c, n), n)
    return {n: root[c] for n, c in zip(nodes.tolist(), comp.tolist())}


def _labels(dir_):
    t = pa.concat_tables([storage.read_parquet(f) for f in storage.list_files(dir_)])
    out = dict(zip(t.column("node").to_pylist(), t.column("root").to_pylist()))
    assert len(out) == t.num_rows  # one label per node
    return out


def test_connected_components_equal_scipy(tmp_path, ray_cluster):
    """File-round large-star/small-star on Ray and in-process; the Spark
    DataFrame version is compared with these through the whole stage below."""
    from lmrefinery.engines.base import LocalEngine
    from lmrefinery.engines.ray_engine import RayEngine

    a, b = _graph(0, 48)
    want = _expected_labels(a, b)
    K = 3
    for name, engine in (("local", LocalEngine()), ("ray", RayEngine(2))):
        work = str(tmp_path / name)
        write_adjacency(a, b, os.path.join(work, "cc", "r000"), K, "in")
        lab_dir, rounds = cc_files(_Job(engine), work, K, 40)
        assert _labels(lab_dir) == want, name
        assert rounds >= 3  # a long path needs several contraction rounds


# ---------------------------------------------------------------- whole stage
@pytest.fixture(scope="module")
def mixed_docs(shared_corpora, tmp_path_factory, samples_dir):
    """Real documents with edited copies, a transitive chain and sample shards."""
    d = tmp_path_factory.mktemp("dedup-mixed")
    docs, pairs = L.build(shared_corpora, 40, 40, seed=3)
    r = random.Random(5)
    ch = chain(r, c4_texts(shared_corpora, 60)[-1], 9)
    rows = [{"key": x["id"], "text": x["text"], "lang": x["lang"]} for x in docs]
    rows += [{"key": f"chain-{i}", "text": t, "lang": "en"} for i, t in enumerate(ch)]
    r.shuffle(rows)
    half = len(rows) // 2
    write_jsonl(str(d / "a" / "docs-0.jsonl"), rows[:half])
    write_jsonl(str(d / "b" / "docs-1.jsonl"), rows[half:])
    return {"dir": str(d), "rows": rows, "pairs": pairs, "chain": ch}


def _mixed_inputs(m, samples_dir):
    return [jsonl_input("a", os.path.join(m["dir"], "a", "*.jsonl")),
            jsonl_input("b", os.path.join(m["dir"], "b", "*.jsonl")),
            {"name": "web", "format": "jsonl", "paths": [os.path.join(samples_dir, "web", "extracted-*.jsonl")],
             "fields": {"text": "text", "url": "url", "title": "title"}}]


def test_identical_across_workers_and_engines(mixed_docs, samples_dir, tmp_path, ray_cluster, spark, s3_bucket):
    stages = [{"stage": "dedup", "buckets": 4}]
    inputs = _mixed_inputs(mixed_docs, samples_dir)
    runs = {}
    for name, engine, workers, out in (("local", "local", 1, str(tmp_path / "local")),
                                       ("ray1", "ray", 1, str(tmp_path / "ray1")),
                                       ("ray2", "ray", 2, str(tmp_path / "ray2")),
                                       ("spark", "spark", 2, f"s3://{s3_bucket}/spark")):
        run(out, inputs, stages, engine, workers)
        runs[name] = (clusters(out), rejects(out))
    base = runs["local"]
    assert len(base[0]) > 20 and len(base[1]) > 10
    for name, got in runs.items():
        assert got[0] == base[0], name
        assert got[1] == base[1], name
    # the chain is one cluster (transitive), needing several contraction rounds on both engines
    rep = report(str(tmp_path / "ray2"))
    assert rep["cc_impl"] == "file-rounds" and rep["cc_rounds"] >= 2
    assert max(int(k) for k in rep["cluster_size_hist"]) >= len(mixed_docs["chain"])
    srep = json.loads(storage.read_bytes(f"s3://{s3_bucket}/spark/stages/01-dedup/dedup_report.json"))
    assert srep["cc_impl"] == "spark-dataframe" and srep["cc_rounds"] >= 2


def test_incremental_equals_full(mixed_docs, samples_dir, tmp_path):
    a_in, b_in, _ = _mixed_inputs(mixed_docs, samples_dir)
    st = [{"stage": "dedup", "buckets": 4}]
    full = str(tmp_path / "full")
    run(full, [a_in, b_in], [{"stage": "dedup", "buckets": 4, "prefer_sources": ["a"]}])
    old = str(tmp_path / "release-a")
    run(old, [a_in], st)
    old_stage = glob.glob(os.path.join(old, "stages", "01-dedup"))[0]
    before = sorted(storage.list_files(os.path.join(old_stage, "index")))
    inc = str(tmp_path / "batch-b")
    run(inc, [b_in], [{"stage": "dedup", "buckets": 4, "against": [old_stage]}])
    assert sorted(storage.list_files(os.path.join(old_stage, "index"))) == before
    rep = report(inc)
    n_b = sum(1 for _ in open(glob.glob(os.path.join(mixed_docs["dir"], "b", "*.jsonl"))[0]))
    assert rep["documents"] == n_b  # only the new batch was signed
    b_ids = set(read_dir(inc, 0, "data").column("id").to_pylist())
    full_rej = [r for r in rejects(full) if r[0] in b_ids]
    assert rejects(inc) == full_rej and len(full_rej) > 5
    # the same clusters (with old members) and the same kept documents
    assert clusters(inc) == clusters(full)
    # some new documents were removed only because of an earlier release
    a_ids = set(read_dir(full, 0, "data").column("id").to_pylist()) - b_ids
    assert any(r[2] in a_ids for r in full_rej)


def test_incompatible_index_is_refused(mixed_docs, samples_dir, tmp_path):
    a_in, b_in, _ = _mixed_inputs(mixed_docs, samples_dir)
    old = str(tmp_path / "old")
    run(old, [a_in], [{"stage": "dedup", "buckets": 4}])
    with pytest.raises(ValueError, match="num_perm"):
        run(str(tmp_path / "new"), [b_in], [{"stage": "dedup", "buckets": 4, "num_perm": 128,
                                             "against": [os.path.join(old, "stages", "01-dedup")]}])


def test_quality_against_exact_jaccard(mixed_docs, samples_dir, tmp_path):
    """Labelled pairs from real English and Chinese text: precision and recall
    of the stage against exact shingle Jaccard at the configured threshold."""
    out = str(tmp_path / "q")
    rows = [{"id": x["key"], "text": x["text"], "lang": x["lang"]} for x in mixed_docs["rows"]
            if not x["key"].startswith("chain")]  # the chain is transitive on purpose; pairs only here
    p = write_jsonl(str(tmp_path / "lab" / "x.jsonl"), [{"key": x["id"], **x} for x in rows])
    run(out, [jsonl_input("lab", p)], [{"stage": "dedup", "buckets": 4}])
    key = {r["id"]: r["title"] for r in read_dir(out, 0, "data").to_pylist()}
    cl = [{"cluster": c[0], "id": key[c[1]]} for c in clusters(out)]
    s = L.score(rows, mixed_docs["pairs"], cl, report(out)["threshold"])
    assert s["predicted_pairs"] > 30
    assert s["precision"] >= 0.99, s["false_positives"]
    assert s["all"]["recall_j>=0.80"] >= 0.9
    for lang in ("en", "zh"):
        assert s[lang]["positives_j>=0.80"] >= 10 and s[lang]["recall_j>=0.80"] >= 0.9
    # pairs far below the threshold never share a cluster
    low = [p for p in mixed_docs["pairs"] if p["jaccard"] < 0.4]
    same = {(c["cluster"], c["id"]) for c in cl}
    by_id = {}
    for c, i in same:
        by_id.setdefault(i, set()).add(c)
    assert low and not any(by_id.get(p["a"], set()) & by_id.get(p["b"], {None}) for p in low)


def test_planted_sample_duplicates(samples_dir, tmp_path):
    out = str(tmp_path / "s")
    inputs = [{"name": "web", "format": "jsonl", "paths": [os.path.join(samples_dir, "web", "extracted-*.jsonl")],
               "fields": {"text": "text", "url": "url", "title": "title"}},
              {"name": "warc", "format": "warc", "paths": [os.path.join(samples_dir, "web", "*.warc.gz")]}]
    stats = run(out, inputs, [{"stage": "dedup", "buckets": 3}], labels=os.path.join(samples_dir, "labels.jsonl"))
    pl = stats["planted"]
    for kind in ("near_dup", "exact_dup"):
        assert pl[kind]["planted"] >= 2
        assert pl[kind]["removed"] == pl[kind]["planted"] and pl[kind]["removed_by"] == {"dedup": pl[kind]["planted"]}
        assert pl[kind]["kept"] == 0
    # clusters: one kept member each, sizes consistent, rejects point at their keeper
    cl = clusters(out)
    by = {}
    for c, i, size, kept, is_kept in cl:
        by.setdefault(c, []).append((i, size, kept, is_kept))
    for ms in by.values():
        assert len(ms) == ms[0][1] >= 2
        assert sum(m[3] for m in ms) == 1 and {m[2] for m in ms} == {next(m[0] for m in ms if m[3])}
    keeper_of = {i: kept for c, i, size, kept, is_kept in cl}
    rej = rejects(out)
    assert rej and all(keeper_of[i] == of for i, _, of in rej)
    rep = report(out)
    assert sum(rep["removed"].values()) == len(rej) == sum((int(k) - 1) * v for k, v in rep["cluster_size_hist"].items())
    m = json.load(open(glob.glob(os.path.join(out, "stages", "01-dedup", "_manifest.json"))[0]))
    assert m["counters"]["clusters"] == rep["clusters"] == len(by)
    assert m["counts"]["rejected"] == rep["removed"]


def test_alpaca_exact_duplicates_across_sources(shared_corpora, tmp_path):
    """The 269 Alpaca records that occur in both instruction files."""
    ins = os.path.join(shared_corpora, "instructions")
    a = json.load(open(os.path.join(ins, "alpaca_data_5k_subset.json"), encoding="utf-8"))
    write_jsonl(str(tmp_path / "alpaca" / "a.jsonl"),
                [{"text": r["instruction"] + "\n" + r["input"], "key": f"a{i}"} for i, r in enumerate(a)])
    bil = []
    for f in sorted(glob.glob(os.path.join(ins, "alpaca_chinese_bilingual_part_*.json"))):
        bil += json.load(open(f, encoding="utf-8"))
    write_jsonl(str(tmp_path / "bilingual" / "b.jsonl"),
                [{"text": r["en_instruction"] + "\n" + r["en_input"], "key": f"b{i}"} for i, r in enumerate(bil)])
    akey = {(r["instruction"].strip(), r["input"].strip()): f"a{i}" for i, r in enumerate(a)}
    twins = {f"b{i}": akey[(r["en_instruction"].strip(), r["en_input"].strip())]
             for i, r in enumerate(bil) if (r["en_instruction"].strip(), r["en_input"].strip()) in akey}
    assert len(twins) == 269
    inputs = [jsonl_input("alpaca", str(tmp_path / "alpaca" / "*.jsonl")),
              jsonl_input("bilingual", str(tmp_path / "bilingual" / "*.jsonl"))]
    out = str(tmp_path / "out")
    run(out, inputs, [{"stage": "exact_dedup", "prefer_sources": ["alpaca"]},
                      {"stage": "dedup", "prefer_sources": ["alpaca"]}])
    title = {}
    for r in read_dir(out, 0, "data").to_pylist():
        title[r["id"]] = r["title"]
    ex = rejects(out, 1)
    assert {title[i]: title[of] for i, _, of in ex} == twins
    assert {why for _, why, _ in ex} == {"exact_duplicate"}
    # swapped preference: the bilingual copies survive instead
    out2 = str(tmp_path / "out2")
    run(out2, inputs, [{"stage": "exact_dedup", "prefer_sources": ["bilingual"]}])
    assert {title[i] for i, _, _ in rejects(out2, 1)} == set(twins.values())
    # the near-duplicate stage, run on everything, also finds every twin pair
    out3 = str(tmp_path / "out3")
    run(out3, inputs, [{"stage": "dedup", "prefer_sources": ["alpaca"], "buckets": 4}])
    near = {title[i]: (why, title[of]) for i, why, of in rejects(out3)}
    assert all(b in near for b in twins)
    assert sum(1 for b in twins if near[b] == ("exact_duplicate", twins[b])) >= 260


def test_one_document(shared_corpora, tmp_path):
    p = write_jsonl(str(tmp_path / "one" / "x.jsonl"), [{"text": c4_texts(shared_corpora, 1)[0], "key": "x"}])
    out = str(tmp_path / "o")
    stats = run(out, [jsonl_input("one", p)], [{"stage": "dedup"}])
    row = stats["stages"][1]
    assert (row["in"], row["kept"], row["rejected"]) == (1, 1, {})
    assert clusters(out) == [] and report(out)["candidate_pairs"] == 0


def test_every_document_a_duplicate(shared_corpora, tmp_path):
    base = c4_texts(shared_corpora, 2)[1]
    r = random.Random(1)
    docs = [{"text": base, "key": f"same-{i}"} for i in range(5)]
    docs += [{"text": base.upper(), "key": "case"}]
    docs += [{"text": L.edit(r, base, False, "replace", 0.01), "key": f"near-{i}"} for i in range(3)]
    docs += [{"text": base + " Thanks for reading, please share.", "key": "longest"}]
    p1 = write_jsonl(str(tmp_path / "d" / "p1.jsonl"), docs[:5])
    p2 = write_jsonl(str(tmp_path / "d" / "p2.jsonl"), docs[5:])
    out = str(tmp_path / "o")
    stats = run(out, [jsonl_input("d", str(tmp_path / "d" / "*.jsonl"))], [{"stage": "dedup", "buckets": 2}])
    assert p1 and p2
    row = stats["stages"][1]
    assert row["in"] == 10 and row["kept"] == 1
    kept = read_dir(out, 1, "data")
    assert kept.column("title").to_pylist() == ["longest"]  # keep: longest by default
    # the keeper's text differs from every other member's, so none is an exact copy of it
    assert row["rejected"] == {"near_duplicate": 9}
    assert report(out)["cluster_size_hist"] == {"10": 1}
    # all exact copies: keep=longest ties, broken by id
    out2 = str(tmp_path / "o2")
    only = write_jsonl(str(tmp_path / "e" / "p.jsonl"), docs[:5])
    run(out2, [jsonl_input("e", only)], [{"stage": "dedup"}])
    ids = sorted(read_dir(out2, 0, "data").column("id").to_pylist())
    assert read_dir(out2, 1, "data").column("id").to_pylist() == [ids[0]]
    assert {w for _, w, _ in rejects(out2)} == {"exact_duplicate"}


def test_exact_url_dedup_across_inputs(tmp_path):
    """exact_dedup by_url: the same page (URL normalised: scheme, www, slash, fragment)
    fetched in two crawls with different text keeps the preferred crawl's copy."""
    a = write_jsonl(str(tmp_path / "c1" / "x.jsonl"), [
        {"text": "First crawl of the page about harbour boats and tides.", "url": "https://www.example.org/a/"},
        {"text": "Another page entirely, about mountain villages.", "url": "https://example.org/b"}])
    b = write_jsonl(str(tmp_path / "c2" / "x.jsonl"), [
        {"text": "Second crawl: the page about harbour boats, tides and ferries.", "url": "http://example.org/a#top"}])
    inputs = [{"name": n, "format": "jsonl", "paths": [p], "fields": {"text": "text", "url": "url"}}
              for n, p in (("crawl1", a), ("crawl2", b))]
    for prefer, dropped in ((["crawl2"], "https://www.example.org/a/"), (["crawl1"], "http://example.org/a#top")):
        out = str(tmp_path / f"o-{prefer[0]}")
        stats = run(out, inputs, [{"stage": "exact_dedup", "by_url": True, "prefer_sources": prefer}])
        assert stats["stages"][1]["rejected"] == {"url_duplicate": 1}
        assert read_dir(out, 1, "rejects").column("url").to_pylist() == [dropped]


def test_keeper_by_quality_signal(shared_corpora, tmp_path):
    """keep: [quality] picks the member with the highest quality_score (a signal column
    added by an earlier stage); keep: [longest] the longest; ties by id."""
    from lmrefinery.core.schema import docs_to_table
    from lmrefinery.core.stage import StageContext
    from lmrefinery.dedup.near import NearDedup
    from lmrefinery.engines.base import LocalEngine

    base = c4_texts(shared_corpora, 3)[2]
    r = random.Random(2)
    texts = [base, L.edit(r, base, False, "replace", 0.01), base + " Extra closing words for length.", base]
    scores = [0.2, 0.9, 0.5, None]
    tb = docs_to_table([{"id": f"d{i}", "text": t, "source": "s"} for i, t in enumerate(texts)])
    tb = tb.append_column("quality_score", pa.array(scores, pa.float64()))
    part = str(tmp_path / "in" / "part-00000.parquet")
    storage.write_parquet(tb, part)

    class Job(_Job):
        def __init__(self, sdir):
            super().__init__(LocalEngine())
            self.stage_dir, self.inputs, self.fingerprint = sdir, [part], "fp"
            self.work_dir = os.path.join(sdir, "_work", "fp")
            self.ctx = {"output_root": str(tmp_path)}

        def documents(self):  # what core.job.GlobalJob answers: the input's rows
            return sum(storage.parquet_rows(p) for p in self.inputs)

        def resolve(self, param, value, why):
            assert (param, value) == ("buckets", 8)

    for keep, want in ((["quality"], "d1"), (["longest"], "d2"), (["shortest"], "d0")):
        sdir = str(tmp_path / "-".join(keep))
        st = NearDedup(NearDedup.Params(keep=keep), StageContext(output_root=str(tmp_path), stage_dir=sdir))
        parts = st.execute(Job(sdir))
        assert parts[0]["kept"] == 1
        assert storage.read_parquet(os.path.join(sdir, "data", "part-00000.parquet")).column("id").to_pylist() == [want]


# ---------------------------------------------------------------- bucket count from the input
def _manifest(out, idx):
    return json.load(open(glob.glob(os.path.join(out, "stages", f"{idx:02d}-*", "_manifest.json"))[0]))


def _files(out, idx, subs=("data", "rejects", "clusters")):
    """sha256 of the stage's output files, by path under the stage folder."""
    sdir = glob.glob(os.path.join(out, "stages", f"{idx:02d}-*"))[0]
    return {os.path.relpath(f, sdir): storage.sha256(open(f, "rb").read())
            for s in subs for f in glob.glob(os.path.join(sdir, s, "**", "*.parquet"), recursive=True)}


@pytest.fixture(scope="module")
def url_and_text_dups(tmp_path_factory):
    """Documents that are a text copy of one document and a URL copy of another (exact_dedup
    drops them for either reason), and URL copies of those with their own text."""
    d = tmp_path_factory.mktemp("dedup-urls")
    rows = []
    for i in range(12):
        a = {"url": f"https://ex.org/a{i}", "text": f"First page number {i} about topic {i * 7}."}
        b = {"url": f"https://ex.org/b{i}", "text": f"Second page number {i} on subject {i * 11}."}
        rows += [a, b, {"url": a["url"], "text": b["text"].upper()},
                 {"url": a["url"] + "/", "text": f"A URL copy with its own words, {i * 13}."}]
    return {"name": "urls", "format": "jsonl", "paths": [write_jsonl(str(d / "u.jsonl"), rows)],
            "fields": {"text": "text", "url": "url"}}


def test_text_reason_wins_over_url_whatever_the_buckets(url_and_text_dups, tmp_path):
    """A document that is a text copy of one document and a URL copy of another is an
    exact_duplicate of the text's keeper, whichever bucket its two keys fell in."""
    got = {}
    for b in (3, 5, 8):
        out = str(tmp_path / f"b{b}")
        run(out, [url_and_text_dups], [{"stage": "exact_dedup", "by_url": True, "buckets": b}])
        got[b] = rejects(out)
    assert got[3] == got[5] == got[8]
    assert sum(1 for r in got[8] if r[1] == "exact_duplicate") == 12
    assert sum(1 for r in got[8] if r[1] == "url_duplicate") == 12


def test_buckets_sized_from_the_input(mixed_docs, samples_dir, url_and_text_dups, tmp_path):
    """`buckets` unset: 8 for a small input (the same bytes as `buckets: 8`), more with
    fewer documents per bucket (the same bytes as that count set in the recipe), recorded
    in the manifest; the documents dropped and their reasons do not depend on the count."""
    from lmrefinery.dedup.buckets import auto_buckets

    inputs = _mixed_inputs(mixed_docs, samples_dir) + [url_and_text_dups]

    def stages(**kw):
        return [{"stage": "exact_dedup", "by_url": True, **kw}, {"stage": "dedup", **kw}]

    outs = {name: str(tmp_path / name) for name in ("default", "eight", "auto", "fixed")}
    run(outs["default"], inputs, stages())
    run(outs["eight"], inputs, stages(buckets=8))
    docs = [_manifest(outs["default"], k)["counts"]["in"] for k in (1, 2)]
    assert docs[0] > docs[1] > 100
    run(outs["auto"], inputs, stages(bucket_docs=10))
    want = [-(-n // 10) for n in docs]  # ceil
    assert min(want) > 8 and want == [auto_buckets(n, 10) for n in docs]
    run(outs["fixed"], inputs, [{"stage": "exact_dedup", "by_url": True, "buckets": want[0]},
                                {"stage": "dedup", "buckets": want[1]}])
    for k, b in ((1, want[0]), (2, want[1])):
        m_def, m_auto = _manifest(outs["default"], k), _manifest(outs["auto"], k)
        assert m_def["params"]["buckets"] == 8 and f"{docs[k - 1]} documents" in m_def["resolved"]["buckets"]
        assert m_auto["params"]["buckets"] == b and f"{docs[k - 1]} documents" in m_auto["resolved"]["buckets"]
        assert "resolved" not in _manifest(outs["fixed"], k)
        # small input: byte for byte what buckets: 8 gives; the sized count: what that count gives
        assert _files(outs["default"], k, ("data", "rejects", "clusters", "index")) == \
            _files(outs["eight"], k, ("data", "rejects", "clusters", "index"))
        assert _files(outs["auto"], k) == _files(outs["fixed"], k)
        # which documents go, why and for which keeper: the same whatever the count
        assert rejects(outs["auto"], k) == rejects(outs["eight"], k)
        assert _files(outs["auto"], k, ("data",)) == _files(outs["eight"], k, ("data",))
    assert clusters(outs["auto"], 2) == clusters(outs["eight"], 2) and len(clusters(outs["auto"], 2)) > 20
    assert report(outs["auto"], 2)["buckets"] == want[1] and report(outs["default"], 2)["buckets"] == 8
    assert len(glob.glob(os.path.join(outs["auto"], "stages", "02-dedup", "clusters", "*.parquet"))) == want[1]
    reasons = {r[1] for r in rejects(outs["auto"], 1)}
    assert {"exact_duplicate", "url_duplicate"} <= reasons
    # a re-run on the same input is up to date: the count is a function of the input
    again = run(outs["auto"], inputs, stages(bucket_docs=10))
    assert not again["did_work"]


def test_against_takes_the_earlier_index_buckets(mixed_docs, samples_dir, tmp_path):
    """`buckets` unset with `against`: the earlier index's count (so the band keys join),
    whatever the new input's size; a different count set in the recipe is refused."""
    a_in, b_in, _ = _mixed_inputs(mixed_docs, samples_dir)
    old = str(tmp_path / "old")
    run(old, [a_in], [{"stage": "dedup", "bucket_docs": 5}])
    old_stage = os.path.join(old, "stages", "01-dedup")
    n_old = _manifest(old, 1)["params"]["buckets"]
    assert n_old > 8 and json.load(open(os.path.join(old_stage, "index", "meta.json")))["params"]["buckets"] == n_old
    inc = str(tmp_path / "inc")
    run(inc, [b_in], [{"stage": "dedup", "against": [old_stage]}])
    m = _manifest(inc, 1)
    assert m["params"]["buckets"] == n_old and "against" in m["resolved"]["buckets"]
    assert report(inc)["buckets_from"].startswith("from the index of dedup against")
    fixed = str(tmp_path / "fixed")
    run(fixed, [b_in], [{"stage": "dedup", "buckets": n_old, "against": [old_stage]}])
    assert rejects(inc) == rejects(fixed) and clusters(inc) == clusters(fixed) and len(rejects(inc)) > 5
    with pytest.raises(ValueError, match="buckets"):
        run(str(tmp_path / "bad"), [b_in], [{"stage": "dedup", "buckets": 8, "against": [old_stage]}])
