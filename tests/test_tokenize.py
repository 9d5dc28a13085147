"""Tokenize stage, shards, reader and CLI on real shared text (English C4,
Chinese Three Kingdoms, Chinese ShareGPT conversations)."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

from lmrefinery.core import storage
from lmrefinery.core.recipe import load_recipe
from lmrefinery.core.runner import Runner
from lmrefinery.tokenize.indexed import IndexedShard
from lmrefinery.tokenize.reader import PackedReader, load_dataset_manifest
from lmrefinery.tokenize.tokenizer import load_encoder

N_EN, N_ZH, N_CHAT = 100, 100, 60
TARGET = {"web": 0.5, "book": 0.3, "chat": 0.2}


def _write_inputs(shared: str, out: str) -> dict:
    os.makedirs(out, exist_ok=True)
    en, zh, chats = [], [], []
    with open(f"{shared}/web/c4_demo.jsonl", encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)["text"]
            if len(t) < 20000:
                en.append(t)
            if len(en) == N_EN:
                break
    with open(f"{shared}/books/pg23950_sanguo_yanyi_zh-Hant.txt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    for i in range(0, 25 * N_ZH, 25):
        zh.append("\n".join(lines[i:i + 25]).strip())
    with open(f"{shared}/instructions/sharegpt_zh_1k.jsonl", encoding="utf-8") as f:
        for line in f:
            c = json.loads(line)["conversations"]
            msgs = [{"role": {"human": "user", "gpt": "assistant"}.get(m["from"], m["from"]), "content": m["value"]}
                    for m in c]
            if len(msgs) >= 2 and all(m["role"] in ("user", "assistant") for m in msgs) \
                    and sum(len(m["content"]) for m in msgs) < 3000:
                msgs.insert(0, {"role": "system", "content": "You are a helpful assistant."})
                chats.append(msgs)
            if len(chats) == N_CHAT:
                break
    with open(f"{out}/en.jsonl", "w", encoding="utf-8") as f:
        for t in en:
            f.write(json.dumps({"text": t, "lang": "en"}, ensure_ascii=False) + "\n")
    with open(f"{out}/zh.jsonl", "w", encoding="utf-8") as f:
        for t in zh:
            f.write(json.dumps({"text": t, "lang": "zh"}, ensure_ascii=False) + "\n")
        f.write(json.dumps({"text": "   ", "lang": "zh"}) + "\n")  # becomes tokenize:empty
    with open(f"{out}/chat.jsonl", "w", encoding="utf-8") as f:
        for m in chats:
            f.write(json.dumps({"text": "\n\n".join(x["content"] for x in m), "lang": "zh", "messages": m,
                                "kind": "conversation"}, ensure_ascii=False) + "\n")
    return {"en": en, "zh": zh, "chats": chats}


def _recipe(inp: str, out: str, engine: str, workers: int, tok: dict) -> dict:
    return {"name": "tok", "output": out, "engine": engine, "resources": {"workers": workers}, "seed": 7,
            "report": False,
            "inputs": [{"name": "web", "paths": [f"{inp}/en.jsonl"]}, {"name": "book", "paths": [f"{inp}/zh.jsonl"]},
                       {"name": "chat", "paths": [f"{inp}/chat.jsonl"]}],
            "stages": [{"stage": "read"},
                       {"stage": "tokenize", "params": {**tok, "shard_tokens": 70000, "valid_fraction": 0.1,
                                                        "mix": {"mode": "proportions", "weights": TARGET}}}]}


@pytest.fixture(scope="module")
def tok_run(shared_corpora, tmp_path_factory):
    base = tmp_path_factory.mktemp("tok")
    data = _write_inputs(shared_corpora, str(base / "in"))
    out = str(base / "local1")
    stats = Runner(load_recipe(_recipe(str(base / "in"), out, "local", 1,
                                       {"train": {"vocab_size": 2500, "sample_docs": 150}})), quiet=True).run()
    sdir = os.path.join(out, "stages", "01-tokenize")
    m, _ = load_dataset_manifest(sdir)
    return {"base": base, "data": data, "sdir": sdir, "manifest": m, "stats": stats,
            "enc": load_encoder(os.path.join(sdir, "tokenizer"))}


def _docs(sdir: str, split: str):
    m, base = load_dataset_manifest(sdir)
    for s in m["splits"][split]["shards"]:
        sh = IndexedShard(os.path.join(base, s["prefix"]))
        for i in range(len(sh)):
            yield sh.get(i), sh.get_mask(i)


def test_round_trip_english_and_chinese(tok_run):
    enc, data = tok_run["enc"], tok_run["data"]
    originals = {"en": set(data["en"]), "zh": set(data["zh"])}
    seen = {"en": 0, "zh": 0}
    for split in ("train", "valid"):
        for ids, mask in _docs(tok_run["sdir"], split):
            assert ids[-1] == enc.eos_id  # EOS appended to every document
            if mask.all():  # a pretraining document: decodes to exactly an input text
                text = enc.decode(ids[:-1])
                lang = "en" if text in originals["en"] else "zh"
                assert text in originals[lang]
                seen[lang] += 1
    assert seen["en"] > 20 and seen["zh"] > 20
    # no truncation: the longest English input comes back whole
    longest = max(data["en"], key=len)
    assert enc.decode(enc.encode_texts([longest])[0][:-1]) == longest
    tpc = tok_run["manifest"]["tokens_per_char"]
    assert 0 < tpc["en"] < 1 and tpc["zh"] > tpc["en"]


def test_chinese_never_unknown_and_autotokenizer_loads(tok_run):
    from transformers import AutoTokenizer

    tdir = os.path.join(tok_run["sdir"], "tokenizer")
    hf = AutoTokenizer.from_pretrained(tdir)
    assert hf.unk_token is None
    rare = "龘靐齉爩 𠀋𪚥 — emoji 🦜 and ﷽"
    ids = hf(rare, add_special_tokens=False)["input_ids"]
    assert hf.decode(ids) == rare
    msgs = tok_run["data"]["chats"][0]
    ours, _ = tok_run["enc"].encode_conversation(msgs)
    theirs = hf.apply_chat_template(msgs, tokenize=True)
    theirs = theirs["input_ids"] if isinstance(theirs, dict) or hasattr(theirs, "keys") else theirs
    assert list(ours[:-1]) == list(theirs)
    assert ours[-1] == hf.eos_token_id


def test_megatron_indexed_dataset_reads_our_shards(tok_run):
    warnings.filterwarnings("ignore")
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    m, base = load_dataset_manifest(tok_run["sdir"])
    assert m["dtype"] == "uint16"
    for s in m["splits"]["train"]["shards"][:2]:
        prefix = os.path.join(base, s["prefix"])
        ours = IndexedShard(prefix)
        theirs = IndexedDataset(prefix)
        masks = IndexedDataset(prefix + ".mask")
        assert len(theirs) == len(ours) == s["documents"]
        assert theirs.index.dtype == np.uint16
        for i in range(len(ours)):
            np.testing.assert_array_equal(theirs[i], ours.get(i))
            np.testing.assert_array_equal(masks[i], ours.get_mask(i))
            np.testing.assert_array_equal(theirs.get(i, 1, 3), ours.get(i, 1, 3))
    # the reader's packed stream is the shards' documents in its permutation order
    r = PackedReader(tok_run["sdir"], seq_len=128, seed=1, shuffle_samples=False)
    prefixes = [os.path.join(base, s["prefix"]) for s in m["splits"]["train"]["shards"]]
    mds = [IndexedDataset(p) for p in prefixes]
    flat = [np.asarray(d[i]) for d in mds for i in range(len(d))]
    stream = np.concatenate([flat[j] for j in r.doc_order])
    for s in list(r)[:20]:
        k = s["sample"]
        np.testing.assert_array_equal(s["input_ids"], stream[k * 128:k * 128 + 129])


def test_mixing_within_one_percent_and_accounting(tok_run):
    m = tok_run["manifest"]
    train = m["splits"]["train"]
    for src, want in TARGET.items():
        got = train["by_source"][src]["tokens"] / train["tokens"]  # counted from the written shards
        assert abs(got - want) < 0.01, (src, got, want)
        assert abs(m["mixing"]["achieved"][src] - got) < 1e-6
    # web is up-sampled (repeats), book is down-sampled (documents dropped by hash)
    assert m["mixing"]["factors"]["web"] > 1 > m["mixing"]["factors"]["book"]
    st = [s for s in tok_run["stats"]["stages"] if s["stage"] == "tokenize"][0]
    assert st["rejected"].get("mix:downsampled", 0) > 0
    assert st["rejected"].get("tokenize:empty") == 1
    assert st["in"] == st["kept"] + sum(st["rejected"].values())
    assert st["counters"]["tokenize:upsampled_copies"] == m["documents"]["upsampled_copies"] > 0
    sm = json.load(open(os.path.join(tok_run["sdir"], "_manifest.json")))
    assert sm["artifacts"][0]["dataset"] == "dataset.json"


def test_epochs_mixing_plan():
    import pyarrow as pa

    from lmrefinery.tokenize.stage import copies_of, plan_mixing

    rng = np.random.default_rng(0)
    n = 400
    t = pa.table({"source": ["a"] * n + ["b"] * n, "n_tokens": rng.integers(50, 150, 2 * n),
                  "mixkey": pa.array(rng.integers(0, 2**63, 2 * n, dtype=np.uint64), pa.uint64())})
    mix = plan_mixing(t, {"mode": "epochs", "weights": {"a": 2.5, "b": 0.5}, "total_tokens": None}, {})
    nt = t.column("n_tokens").to_numpy()
    keys = t.column("mixkey").to_pylist()
    out = {"a": 0, "b": 0}
    for i, s in enumerate(t.column("source").to_pylist()):
        c = copies_of(s, keys[i], mix["plan"])
        assert c in ((2, 3) if s == "a" else (0, 1))
        out[s] += c * int(nt[i])
    nat = {s: int(nt[:n].sum()) if s == "a" else int(nt[n:].sum()) for s in out}
    assert abs(out["a"] / nat["a"] - 2.5) < 0.01 and abs(out["b"] / nat["b"] - 0.5) < 0.01
    assert out == mix["output_tokens"]


def test_validation_never_in_train(tok_run):
    enc = tok_run["enc"]
    train = {enc.decode(ids) for ids, _ in _docs(tok_run["sdir"], "train")}
    valid = {enc.decode(ids) for ids, _ in _docs(tok_run["sdir"], "valid")}
    assert valid and train and not (valid & train)
    n_valid = tok_run["manifest"]["splits"]["valid"]["documents"]
    assert 0.03 < n_valid / tok_run["manifest"]["documents"]["in"] < 0.2


def test_loss_mask_covers_exactly_assistant_spans(tok_run):
    enc, chats = tok_run["enc"], tok_run["data"]["chats"]
    want = {}
    for msgs in chats:
        ids, _ = enc.encode_conversation(msgs)
        want[tuple(ids.tolist())] = msgs
    role_of = {v[0]: r for r, v in enc.role_ids.items()}
    found = 0
    for split in ("train", "valid"):
        for ids, mask in _docs(tok_run["sdir"], split):
            key = tuple(ids.tolist())
            if key not in want:
                assert mask.all()
                continue
            found += 1
            msgs = want[key]
            # independent of the encoder: walk the ids with the role markers
            expect = np.zeros(len(ids), np.uint8)
            role = None
            for j, t in enumerate(ids):
                if t in role_of:
                    role = role_of[t]
                    continue
                if role == "assistant":
                    expect[j] = 1
                if t == enc.eot_id:
                    role = None
            np.testing.assert_array_equal(mask, expect)
            spans, j = [], 0
            while j < len(ids):
                if mask[j]:
                    k = j
                    while k < len(ids) and mask[k]:
                        k += 1
                    spans.append(enc.decode(ids[j:k]))
                    j = k
                else:
                    j += 1
            assert spans == [m["content"] + "<|end|>" for m in msgs if m["role"] == "assistant"]
    assert found > N_CHAT // 2


def test_shuffle_identical_across_workers_and_engines(tok_run, ray_cluster, spark):
    inp = str(tok_run["base"] / "in")
    tok = {"train": {"vocab_size": 2500, "sample_docs": 150}}
    out_ray = str(tok_run["base"] / "ray2")
    Runner(load_recipe(_recipe(inp, out_ray, "ray", 2, tok)), quiet=True).run()
    m_ray, _ = load_dataset_manifest(os.path.join(out_ray, "stages", "01-tokenize"))
    assert m_ray["splits"] == tok_run["manifest"]["splits"]  # every shard's sha256 included
    assert m_ray["tokenizer"]["sha256"] == tok_run["manifest"]["tokenizer"]["sha256"]
    # Spark, with the tokenizer loaded from a directory instead of trained
    out_spark = str(tok_run["base"] / "spark2")
    Runner(load_recipe(_recipe(inp, out_spark, "spark", 2,
                               {"tokenizer": os.path.join(tok_run["sdir"], "tokenizer")})), quiet=True).run()
    m_sp, _ = load_dataset_manifest(os.path.join(out_spark, "stages", "01-tokenize"))
    assert m_sp["splits"] == tok_run["manifest"]["splits"]
    assert len(m_sp["splits"]["train"]["shards"]) >= 2


def test_reader_determinism_resume_ranks_and_boundaries(tok_run):
    sdir, L = tok_run["sdir"], 64
    a = list(PackedReader(sdir, seq_len=L, seed=3, epoch=0))
    b = list(PackedReader(sdir, seq_len=L, seed=3, epoch=0))
    c = list(PackedReader(sdir, seq_len=L, seed=3, epoch=1))
    assert len(a) > 100
    assert all(np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b))
    assert not all(np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, c))
    # resume from a consumed-sample count
    tail = list(PackedReader(sdir, seq_len=L, seed=3, epoch=0, start_sample=37))
    assert [s["index"] for s in tail] == list(range(37, len(a)))
    assert all(np.array_equal(s["input_ids"], a[s["index"]]["input_ids"]) for s in tail)
    # ranks partition the epoch, equal steps each
    ranks = [list(PackedReader(sdir, seq_len=L, seed=3, world_size=3, rank=r, start_sample=6)) for r in range(3)]
    idx = sorted(s["index"] for r in ranks for s in r)
    usable = len(a) - len(a) % 3
    assert idx == list(range(6, usable)) and len({len(r) for r in ranks}) == 1
    eos = tok_run["enc"].eos_id
    has_mask = False
    for s in a:
        ids, cu, pos, seg = s["input_ids"], s["cu_seqlens"], s["position_ids"], s["doc_ids"]
        assert ids.shape == (L + 1,) and cu[0] == 0 and cu[-1] == L + 1
        for j in range(len(cu) - 1):
            np.testing.assert_array_equal(pos[cu[j]:cu[j + 1]], np.arange(cu[j + 1] - cu[j]))
            assert (seg[cu[j]:cu[j + 1]] == j).all()
            if j < len(cu) - 2:
                assert ids[cu[j + 1] - 1] == eos  # every inner boundary follows an EOS
        has_mask |= not s["loss_mask"].all()
    assert has_mask
    batch = next(PackedReader(sdir, seq_len=L, seed=3).batches(4))
    assert batch["input_ids"].shape == (4, L + 1)


def test_reader_from_s3_ranged_and_cached(tok_run, s3_bucket, tmp_path):
    from conftest import upload_dir

    upload_dir(tok_run["sdir"], s3_bucket, "ds")
    import itertools

    local = list(PackedReader(tok_run["sdir"], seq_len=96, seed=5, split="valid"))
    ranged = PackedReader(f"s3://{s3_bucket}/ds", seq_len=96, seed=5, split="valid")
    remote = list(itertools.islice(ranged, 12))  # one ranged GET per document piece
    cached = PackedReader(f"s3://{s3_bucket}/ds/dataset.json", seq_len=96, seed=5, split="valid",
                          cache_dir=str(tmp_path))
    assert len(local) == len(ranged) == len(cached) > 12
    for x, y, z in zip(local, remote, cached):
        np.testing.assert_array_equal(x["input_ids"], y["input_ids"])
        np.testing.assert_array_equal(x["loss_mask"], y["loss_mask"])
        np.testing.assert_array_equal(x["input_ids"], z["input_ids"])
    assert os.path.exists(os.path.join(str(tmp_path), s3_bucket, "ds", "shards", "valid", "shard-00000.bin"))


def test_cli_inspect_and_tokenizer_train(tok_run, capsys, tmp_path):
    from lmrefinery.cli import main

    assert main(["inspect", str(tok_run["sdir"]), "--samples", "3", "--verify", "--show-mask", "--chars", "0"]) == 0
    out = capsys.readouterr().out
    assert "all shard checksums match" in out and "mixing (proportions)" in out
    decoded = out.split("sampled documents from train")[1]
    assert decoded.count("--- shards/train/") == 3
    originals = tok_run["data"]["en"] + tok_run["data"]["zh"]
    blocks = [b.split("\n", 1)[1].rstrip("\n") for b in decoded.split("--- ")[1:]]
    for b in blocks:
        if "<|user|>" not in b:
            assert b.replace("<|endoftext|>", "") in originals
    # a corrupted shard: --verify reports it
    import shutil

    bad = str(tmp_path / "bad")
    shutil.copytree(tok_run["sdir"], bad)
    with open(os.path.join(bad, "shards", "train", "shard-00000.bin"), "r+b") as f:
        f.seek(10)
        f.write(b"\xff\xff")
    assert main(["inspect", bad, "--samples", "0", "--verify"]) == 1
    assert "CHECKSUM MISMATCH" in capsys.readouterr().out
    inp = str(tok_run["base"] / "in")
    tdir = str(tmp_path / "tok")
    assert main(["tokenizer", "train", "--input", f"{inp}/en.jsonl", f"{inp}/zh.jsonl", "--output", tdir,
                 "--vocab-size", "600", "--sample-docs", "60"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["vocab_size"] == 600 and set(rep["tokens_per_char_heldout"]) == {"en", "zh"}
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tdir)
    assert len(hf) == 600 and hf.chat_template and hf.eos_token == "<|endoftext|>"


def test_stage_writes_shards_to_s3(tok_run, s3_bucket):
    """Same recipe with the output on S3 (local engine): the same shards, byte for byte."""
    inp = str(tok_run["base"] / "in")
    out = f"s3://{s3_bucket}/run"
    Runner(load_recipe(_recipe(inp, out, "local", 1,
                               {"tokenizer": os.path.join(tok_run["sdir"], "tokenizer")})), quiet=True).run()
    m, base = load_dataset_manifest(f"{out}/stages/01-tokenize")
    assert m["splits"] == tok_run["manifest"]["splits"]
    assert storage.exists(f"{base}/tokenizer/tokenizer.json")
    s = m["splits"]["train"]["shards"][0]
    sh = IndexedShard(f"{base}/{s['prefix']}")
    local = IndexedShard(os.path.join(tok_run["sdir"], s["prefix"]))
    np.testing.assert_array_equal(sh.get(0), local.get(0))
    np.testing.assert_array_equal(sh.get_mask(1, 2, 5), local.get_mask(1, 2, 5))


def test_balance_upsampling_reaches_exports_and_shards(tok_run, tmp_path):
    """instruct_balance with `upsample` keeps one row per conversation (in = kept +
    rejected) and records its multiplicity; instruct_version exports the repeats and
    tokenize writes each repeated conversation that many times."""
    from collections import Counter

    from lmrefinery.core.schema import meta_loads
    from lmrefinery.instruct.export import read as read_export

    chats = tok_run["data"]["chats"]
    src = tmp_path / "in.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for i, m in enumerate(chats[:15]):
            f.write(json.dumps({"id": f"c{i}", "messages": m, "category": "math" if i < 3 else "chat"},
                               ensure_ascii=False) + "\n")
    out = str(tmp_path / "run")
    tok_dir = os.path.join(tok_run["sdir"], "tokenizer")
    stats = Runner(load_recipe({
        "name": "up", "output": out, "engine": "local", "report": False, "seed": 3,
        "inputs": [{"name": "sft", "paths": [str(src)], "format": "openai_messages"}],
        "stages": ["read",
                   {"stage": "instruct_balance", "by": ["category"], "floors": {"math": 8}, "upsample": True},
                   {"stage": "instruct_version", "formats": ["messages"]},
                   {"stage": "tokenize", "params": {"tokenizer": tok_dir, "valid_fraction": 0.0,
                                                    "mix": {"mode": "none"}}}]}), quiet=True).run()
    bal = stats["stages"][1]
    assert bal["in"] == bal["kept"] == 15 and not bal["rejected"]
    rows = []
    for f in sorted(os.listdir(os.path.join(out, "stages", "01-instruct_balance", "data"))):
        rows.extend(storage.read_parquet(os.path.join(out, "stages", "01-instruct_balance", "data", f)).to_pylist())
    reps = {r["id"]: meta_loads(r["meta"]).get("repeat", 1) for r in rows}
    cats = {r["id"]: meta_loads(r["meta"])["category"] for r in rows}
    assert sum(reps[i] for i in reps if cats[i] == "math") == 8
    assert sorted(reps[i] for i in reps if cats[i] == "math") == [2, 3, 3]
    assert all(reps[i] == 1 for i in reps if cats[i] == "chat")
    report = json.load(open(os.path.join(out, "stages", "01-instruct_balance", "balance_report.json")))
    assert report["after"]["category"] == {"chat": 12, "math": 8} and report["repeat_copies"] == 5
    # the version's export holds the repeats as rows of their own, marked with their parent
    vroot = os.path.join(out, "dataset", "versions")
    ver = json.load(open(os.path.join(vroot, "LATEST.json")))["version"]
    man = json.load(open(os.path.join(vroot, ver, "manifest.json")))
    assert man["records"] == 20
    exported = []
    for f in man["files"]:
        if f["path"].endswith(".messages.jsonl"):
            exported += read_export(os.path.join(vroot, ver, f["path"]), "messages")
    assert len(exported) == 20
    by_content = Counter(json.dumps(e["messages"], ensure_ascii=False) for e in exported)
    assert sorted(by_content.values()) == [1] * 12 + [2, 3, 3]
    # tokenize: each conversation written as many times as it is repeated
    st = [s for s in stats["stages"] if s["stage"] == "tokenize"][0]
    assert st["counters"]["tokenize:instances"] == 20 and st["counters"]["tokenize:upsampled_copies"] == 5
    seqs = Counter(tuple(t.tolist()) for t, _ in _docs(os.path.join(out, "stages", "03-tokenize"), "train"))
    assert sum(seqs.values()) == 20 and sorted(seqs.values()) == [1] * 12 + [2, 3, 3]


def test_crash_then_valid_fraction_zero_writes_no_validation_shard(tok_run, tmp_path, monkeypatch):
    """Issue 19: a crashed tokenize attempt's scratch and shards belong to its fingerprint;
    the re-run with valid_fraction 0 must not find a validation shard of the old split."""
    import glob

    from lmrefinery.tokenize import stage as tstage

    inp = str(tok_run["base"] / "in")
    tok = {"tokenizer": os.path.join(tok_run["sdir"], "tokenizer")}
    out = str(tmp_path / "o")
    real_write = tstage.write_shard

    def write_then_crash(t):
        r = real_write(t)
        if t.split == "valid":
            raise KeyboardInterrupt("killed right after writing a validation shard")
        return r

    monkeypatch.setattr(tstage, "write_shard", write_then_crash)
    rec = _recipe(inp, out, "local", 1, tok)
    with pytest.raises(KeyboardInterrupt):
        Runner(load_recipe(rec), quiet=True).run()
    monkeypatch.undo()
    sdir = os.path.join(out, "stages", "01-tokenize")
    assert glob.glob(os.path.join(sdir, "shards", "valid", "*"))  # the crash left one behind
    rec["stages"][1]["params"]["valid_fraction"] = 0.0
    Runner(load_recipe(rec), quiet=True).run()
    m, _ = load_dataset_manifest(sdir)
    assert m["splits"]["valid"]["documents"] == 0
    assert not glob.glob(os.path.join(sdir, "shards", "valid", "*"))
