"""Ray Train pretraining and instruction tuning on real text, tiny Llama, local Ray
with 2 CPU workers. One straight pretraining run is the reference that the
stop/resume run and the failure/restart run must reproduce exactly."""
from __future__ import annotations

import glob
import json
import math
import os
import re

import numpy as np
import pytest

STEPS = 120         # pretraining steps of the reference run
HALF = 60
SEQ = 64


def _book_docs(shared: str) -> list[str]:
    docs = []
    for name in ("pg11_alice_in_wonderland_en.txt", "pg1342_pride_and_prejudice_en_with_pg_header.txt"):
        text = open(os.path.join(shared, "books", name), encoding="utf-8").read().replace("\r\n", "\n")
        paras = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
        docs += [p for p in paras if len(p) > 60][:500]
    with open(os.path.join(shared, "wiki", "wiki_demo_en_plaintext.txt"), encoding="utf-8") as f:
        for line in f.read().splitlines()[:8]:
            docs += [line[i:i + 1500] for i in range(0, min(len(line), 15000), 1500)]
    return docs


def _alpaca(shared: str) -> list[list[dict]]:
    with open(os.path.join(shared, "instructions", "alpaca_data_5k_subset.json"), encoding="utf-8") as f:
        rows = json.load(f)
    convs = []
    for r in rows:
        if len(r["output"]) > 400:
            continue
        user = r["instruction"] + (("\n\n" + r["input"]) if r["input"] else "")
        convs.append([{"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}])
    return convs


def _write_split(tok_fn, items, prefix: str, masks: bool):
    from lmrefinery.tokenize.indexed import IndexedWriter

    w = IndexedWriter(prefix, np.uint16, with_mask=masks)
    for it in items:
        ids, mask = tok_fn(it)
        w.add(ids, mask) if masks else w.add(ids)
    return w.close()


@pytest.fixture(scope="module")
def corpus(shared_corpora, tmp_path_factory):
    """The tokenize stage's own pieces: a byte-level BPE tokenizer trained here on the
    books/wiki/instruction text and saved as an HF directory with its chat template,
    pretraining shards (train: 2 shards, valid: 1) and instruction shards with
    assistant-only loss masks, written with IndexedWriter in the dataset.json layout."""
    from lmrefinery.tokenize.tokenizer import load_encoder, save_hf, train_bpe

    root = tmp_path_factory.mktemp("train_corpus")
    docs = _book_docs(shared_corpora)
    convs = _alpaca(shared_corpora)
    bpe = train_bpe(docs + [c[0]["content"] + " " + c[1]["content"] for c in convs[:1500]], vocab_size=1024)
    tok_dir = save_hf(bpe, str(root / "tokenizer"))
    enc = load_encoder(tok_dir)

    rng = np.random.default_rng(0)
    order = rng.permutation(len(docs))
    nval = len(docs) // 12
    pre = root / "pretrain"
    pre.mkdir()
    man = {"splits": {}, "tokenizer": {"vocab_size": enc.vocab_size}}
    for split, idx, nshards in (("valid", order[:nval], 1), ("train", order[nval:], 2)):
        shards = []
        for k, part in enumerate(np.array_split(idx, nshards)):
            encoded = enc.encode_texts([docs[j] for j in part])   # EOS appended
            _write_split(lambda a: (a, None), encoded, str(pre / f"{split}-{k:05d}"), False)
            shards.append({"prefix": f"{split}-{k:05d}"})
        man["splits"][split] = {"shards": shards}
    (pre / "dataset.json").write_text(json.dumps(man))

    sft = root / "sft"
    sft.mkdir()
    for split, items in (("valid", convs[:24]), ("train", convs[100:1300])):
        _write_split(enc.encode_conversation, items, str(sft / f"{split}-00000"), True)
        man["splits"][split] = {"shards": [{"prefix": f"{split}-00000"}]}
    (sft / "dataset.json").write_text(json.dumps(man))
    return {"root": str(root), "tokenizer": tok_dir, "pretrain": str(pre), "sft": str(sft)}


def _pretrain_recipe(corpus, output: str, name: str, data: dict | None = None, **trainer):
    from lmrefinery.train.config import load_train_recipe

    t = dict(workers=2, micro_batch_size=16, max_steps=STEPS, lr=6e-3, warmup_steps=10, log_every=10,
             eval_every=30, eval_batches=4, checkpoint_every=20, keep_last=2, max_failures=2)
    t.update(trainer)
    return load_train_recipe({"name": name, "kind": "pretrain", "output": output, "tokenizer": corpus["tokenizer"],
                              "model": {"preset": "tiny"},
                              "data": {"train": corpus["pretrain"], "seq_len": SEQ, **(data or {})},
                              "trainer": t})


@pytest.fixture(scope="module", autouse=True)
def _train_on_a_fresh_ray(fresh_ray_cluster):
    """Every test here runs Ray Train on a freshly started local Ray (see conftest)."""
    return fresh_ray_cluster


@pytest.fixture(scope="module")
def reference_run(fresh_ray_cluster, corpus, tmp_path_factory):
    from lmrefinery.train.metrics import read_metrics
    from lmrefinery.train.trainer import run_training

    out = str(tmp_path_factory.mktemp("runs"))
    rep = run_training(_pretrain_recipe(corpus, out, "straight"))
    return rep, read_metrics(rep["run_dir"])


def _steps(rows):
    return {r["step"]: r for r in rows if "loss" in r}


def _unigram_entropy(prefixes) -> float:
    from lmrefinery.tokenize.indexed import IndexedShard

    ids = np.concatenate([np.concatenate(list(IndexedShard(p))) for p in prefixes])
    p = np.bincount(ids)
    p = p[p > 0] / len(ids)
    return float(-(p * np.log(p)).sum())


def len_vocab(corpus) -> int:
    with open(os.path.join(corpus["pretrain"], "dataset.json")) as f:
        return json.load(f)["tokenizer"]["vocab_size"]


def test_pretrain_loss_falls_and_validation_perplexity(reference_run, corpus):
    rep, rows = reference_run
    assert rep["finished"] and rep["starts"] == [None]
    steps = _steps(rows)
    assert sorted(steps) == list(range(10, STEPS + 1, 10))
    first, last = steps[10]["loss"], steps[STEPS]["loss"]
    # below what token frequencies alone give: the model uses context
    h1 = _unigram_entropy([os.path.join(corpus["pretrain"], f"train-0000{k}") for k in range(2)])
    # from ln(vocab) ~ 6.9 at initialisation, to about the corpus' unigram entropy and beyond
    assert last < first - 0.5 and last < h1 + 0.1, (first, last, h1)
    vals = [steps[s] for s in (30, 60, 90, 120)]
    assert all(v["val_ppl"] == pytest.approx(math.exp(v["val_loss"]), rel=1e-3) for v in vals)
    assert all(a["val_loss"] > b["val_loss"] for a, b in zip(vals, vals[1:])), vals
    assert vals[-1]["val_ppl"] < 0.95 * vals[0]["val_ppl"] and vals[-1]["val_ppl"] < 0.5 * len_vocab(corpus)
    for r in steps.values():
        assert r["tokens_per_s"] > 0 and r["grad_norm"] > 0 and 0 < r["lr"] <= 6e-3
        assert r["consumed_samples"] == r["step"] * 32
    # cosine schedule with warm-up: peak after warm-up, decays towards 10% at the end
    assert steps[10]["lr"] == pytest.approx(6e-3) and steps[120]["lr"] < steps[60]["lr"] < steps[20]["lr"]
    assert steps[120]["lr"] == pytest.approx(6e-4, rel=0.05)
    assert rep["best_val"]["val_ppl"] == pytest.approx(math.exp(rep["best_val"]["val_loss"]), rel=1e-3)
    # keep_last=2 checkpoints survive; the best-by-validation weights are kept separately
    ck = sorted(d for d in os.listdir(rep["run_dir"]) if d.startswith("checkpoint_0"))
    assert ck == ["checkpoint_0000100", "checkpoint_0000120"]
    assert os.path.isfile(os.path.join(rep["run_dir"], "model-best", "model.safetensors"))


def test_export_loads_generates_and_renders_chat(reference_run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmrefinery.train.config import load_train_recipe
    from lmrefinery.train.data import valid_batches
    from lmrefinery.train.step import batch_loss as _loss

    rep, rows = reference_run
    d = rep["model"]
    assert {"model.safetensors", "config.json", "tokenizer.json", "generation_config.json"} <= set(os.listdir(d))
    model = AutoModelForCausalLM.from_pretrained(d)
    tok = AutoTokenizer.from_pretrained(d)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 2
    enc = tok("Alice was beginning to get very tired", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]
    assert tok.decode(out[0, enc["input_ids"].shape[1]:]).strip()
    chat = tok.apply_chat_template([{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Who is Alice?"}],
                                   tokenize=False, add_generation_prompt=True)
    # the tokenizer stage's chat format travels with the model
    assert chat == "<|system|>Be brief.<|end|><|user|>Who is Alice?<|end|><|assistant|>"
    with open(os.path.join(d, "generation_config.json")) as f:
        stops = json.load(f)["eos_token_id"]
    assert sorted(stops) == sorted({tok.eos_token_id, tok.convert_tokens_to_ids("<|end|>")})
    # the exported weights are the final checkpoint's: the same validation loss when recomputed here
    with open(os.path.join(d, "lmrefinery.json")) as f:
        recipe = load_train_recipe(json.load(f)["recipe"])
    tot, n = 0.0, 0
    with torch.no_grad():
        for r in range(2):
            for b in valid_batches(recipe, rank=r, world=2)[:4]:
                s, k = _loss(model, b, torch.device("cpu"), None, True)
                tot, n = tot + float(s), n + k
    assert tot / n == pytest.approx(_steps(rows)[STEPS]["val_loss"], rel=1e-4)


def test_stop_resume_and_worker_failure_reproduce_straight_run(reference_run, corpus, s3_bucket, tmp_path):
    """Shards and run storage on S3 (shards read through a local cache): stop at HALF (as if
    killed), run the same command again (resumes from the step-HALF checkpoint), and in that
    second run a worker raises at step 90, so Ray restarts the group from the step-80
    checkpoint. Same data, same losses as the straight run on local shards."""
    from conftest import upload_dir
    from lmrefinery.core import storage
    from lmrefinery.train.metrics import read_metrics
    from lmrefinery.train.trainer import run_training
    from train_hooks import FAIL_MARKER, FailOnceAt, ship_by_value

    upload_dir(corpus["pretrain"], s3_bucket, "tokens")
    data = {"train": f"s3://{s3_bucket}/tokens", "cache_dir": str(tmp_path / "cache")}
    out = f"s3://{s3_bucket}/runs"
    first = run_training(_pretrain_recipe(corpus, out, "resumed", data=data, stop_at_step=HALF))
    assert not first["finished"] and "model" not in first
    assert max(_steps(read_metrics(first["run_dir"]))) == HALF
    ship_by_value()
    second = run_training(_pretrain_recipe(corpus, out, "resumed", data=data), callbacks=[FailOnceAt(90)])
    assert second["finished"]
    assert second["starts"] == [None, HALF, 80]   # fresh, resumed by re-running, restarted by Ray
    assert storage.exists(storage.join(second["run_dir"], FAIL_MARKER))
    rows = read_metrics(second["run_dir"])
    ref, got = _steps(reference_run[1]), _steps(rows)
    assert sorted(got) == sorted(ref)
    for s in ref:  # the same samples in the same order, and the same trajectory
        assert got[s]["data_fingerprint"] == ref[s]["data_fingerprint"], s
        assert got[s]["consumed_samples"] == ref[s]["consumed_samples"]
        assert got[s]["loss"] == pytest.approx(ref[s]["loss"], abs=2e-5), s
    assert got[STEPS]["val_loss"] == pytest.approx(ref[STEPS]["val_loss"], abs=2e-5)
    assert storage.exists(storage.join(second["run_dir"], "model", "model.safetensors"))
    ck = {p.split("/")[-2] for p in storage.list_files(second["run_dir"] + "/") if "/checkpoint_0" in p}
    assert ck == {"checkpoint_0000100", "checkpoint_0000120"}
    cached = {os.path.basename(p) for p in storage.list_files(str(tmp_path / "cache"))}
    assert {"train-00000.bin", "train-00001.idx", "valid-00000.bin"} <= cached


def test_sft_beats_base_on_heldout_prompts(reference_run, corpus, tmp_path):
    from lmrefinery.train.config import load_train_recipe
    from lmrefinery.train.trainer import run_training

    base = reference_run[0]["model"]
    recipe = load_train_recipe({
        "name": "sft", "kind": "sft", "output": str(tmp_path / "runs"), "tokenizer": corpus["tokenizer"],
        "model": {"init": base}, "data": {"train": corpus["sft"], "seq_len": 128},
        "trainer": {"workers": 2, "micro_batch_size": 16, "max_steps": 300, "lr": 5e-3, "warmup_steps": 10,
                    "log_every": 50, "eval_every": 100, "eval_batches": 2, "checkpoint_every": 300},
        "sft": {"eval_prompts": 24, "max_new_tokens": 24, "samples_in_report": 3}})
    rep = run_training(recipe)
    assert rep["finished"]
    ev = rep["sft_eval"]
    assert ev["prompts"] == 24 and ev["tuned"]["n"] == 24 and ev["base"]["n"] == 24
    assert ev["tuned"]["rougeL"] > ev["base"]["rougeL"], ev
    assert len(ev["tuned"]["samples"]) == 3 and all(s["reference"] for s in ev["tuned"]["samples"])
    assert rep["best_val"]["val_loss"] < rep["first"]["loss"]
    saved = json.load(open(os.path.join(rep["run_dir"], "train_report.json")))
    assert saved["sft_eval"]["tuned"]["rougeL"] == ev["tuned"]["rougeL"]


def test_local_backend_sft_scores_tuned_and_base_in_process(reference_run, corpus, tmp_path):
    """trainer.backend=local instruction tuning: the generation eval (a Ray task under
    backend ray) runs in this process and scores both the tuned model and its start."""
    from lmrefinery.train.config import load_train_recipe
    from lmrefinery.train.trainer import run_training

    recipe = load_train_recipe({
        "name": "sft-local", "kind": "sft", "output": str(tmp_path / "runs"), "tokenizer": corpus["tokenizer"],
        "model": {"init": reference_run[0]["model"]}, "data": {"train": corpus["sft"], "seq_len": 128},
        "trainer": {"backend": "local", "workers": 1, "micro_batch_size": 8, "max_steps": 20, "lr": 5e-3,
                    "warmup_steps": 2, "log_every": 10, "eval_every": 20, "eval_batches": 1, "checkpoint_every": 20},
        "sft": {"eval_prompts": 4, "max_new_tokens": 8, "samples_in_report": 1}})
    rep = run_training(recipe)
    assert rep["finished"] and rep["backend"] == "local"
    ev = rep["sft_eval"]
    assert ev["prompts"] == 4 and ev["tuned"]["n"] == 4 and ev["base"]["n"] == 4
    assert len(ev["tuned"]["samples"]) == 1


def test_fsdp2_with_grad_accumulation_matches_ddp(reference_run, corpus, tmp_path):
    """FSDP2 (fully_shard per decoder layer) with 2 micro-batches of 8 per step follows the
    DDP reference run (1 micro-batch of 16) over its first 20 steps: same samples, same
    token-weighted loss (stop_at_step ends it early; the schedule is the same)."""
    from lmrefinery.train.metrics import read_metrics
    from lmrefinery.train.trainer import run_training

    rep = run_training(_pretrain_recipe(corpus, str(tmp_path / "runs"), "fsdp", strategy="fsdp", stop_at_step=20,
                                        micro_batch_size=8, grad_accum=2))
    assert not rep["finished"]
    got, ref = _steps(read_metrics(rep["run_dir"])), _steps(reference_run[1])
    assert sorted(got) == [10, 20]
    assert [got[s]["consumed_samples"] for s in (10, 20)] == [ref[s]["consumed_samples"] for s in (10, 20)]
    # identical over the first 10 steps; afterwards summation-order differences (reduce-scatter
    # vs all-reduce, two micro-batches vs one) grow a little on this loss plateau
    assert got[10]["loss"] == pytest.approx(ref[10]["loss"], abs=1e-5)
    assert got[10]["grad_norm"] == pytest.approx(ref[10]["grad_norm"], rel=1e-3)
    assert got[20]["loss"] == pytest.approx(ref[20]["loss"], abs=0.03)


def test_document_masking_isolates_packed_documents():
    """With doc_mask, a document packed after another is scored exactly as if alone."""
    import torch

    from lmrefinery.train.model import build_model
    from lmrefinery.train.step import batch_loss as _loss

    model = build_model("scratch", "tiny", 300, seed=1).eval()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 300, (20,), generator=g), torch.randint(0, 300, (13,), generator=g)
    ids = torch.cat([a, b])
    packed = {"input_ids": ids[None, :-1], "targets": ids[None, 1:].clone(),
              "position_ids": torch.cat([torch.arange(20), torch.arange(13)])[None, :-1]}
    packed["targets"][0, :20] = -100                   # score only predictions inside b
    alone = {"input_ids": b[None, :-1], "targets": b[None, 1:], "position_ids": torch.arange(12)[None]}
    cpu = torch.device("cpu")
    with torch.no_grad():
        masked, n1 = _loss(model, packed, cpu, None, True)
        single, n2 = _loss(model, alone, cpu, None, True)
        leaky, _ = _loss(model, packed, cpu, None, False)
    assert n1 == n2 == 12
    assert float(masked) == pytest.approx(float(single), rel=1e-5)
    assert abs(float(leaky) - float(single)) > 1e-3  # without the mask, b sees a


def test_chinese_references_are_scored_per_character():
    from rouge_score import rouge_scorer

    from lmrefinery.train.evaluate import is_chinese, score

    ref, hyp = "三國志演義是一部歷史小說。", "三國志是一部小說。"
    assert is_chinese(ref)
    res = score([hyp], [ref])
    assert res["bleu_tokenize"] == "zh" and res["chinese_references"] == 1
    # LCS over characters (punctuation dropped): all 8 of the hypothesis', 8 of the reference's 12
    assert res["rougeL"] == pytest.approx(2 * 1.0 * (8 / 12) / (1.0 + 8 / 12), rel=1e-6)
    # rouge-score's own tokenizer drops CJK entirely, which is why we replace it
    assert rouge_scorer.RougeScorer(["rougeL"]).score(ref, hyp)["rougeL"].fmeasure == 0.0
    assert score(["the cat sat"], ["the cat sat down"])["bleu_tokenize"] == "13a"


def test_cli_rejects_unknown_recipe_key(tmp_path, capsys):
    from lmrefinery.cli import main

    p = tmp_path / "r.yaml"
    p.write_text("name: x\noutput: /tmp/x\ntokenizer: t\ndata: {train: d}\ntrainer: {workers: 1}\n")
    assert main(["train", str(p), "--set", "trainer.max_stpes=5"]) == 2
    assert "unknown key 'trainer.max_stpes'" in capsys.readouterr().err


def test_report_says_which_weights_model_holds(reference_run, corpus, tmp_path):
    """model/ holds the last step's weights by default (the best-by-validation ones in
    model-best/); trainer.keep=best (--keep best) swaps them, and the report says so."""
    from lmrefinery.train.cli import format_report
    from lmrefinery.train.trainer import run_training

    rep, _ = reference_run
    h = rep["model_holds"]
    assert h["weights"] == "last" and h["step"] == STEPS and h["keep"] == "last"
    # best weights are kept at steps that both evaluate (30) and checkpoint (20)
    assert h["other"]["weights"] == "best" and h["other"]["step"] % 60 == 0
    assert rep["model_best"].endswith("model-best") and "holds the last step: step 120" in format_report(rep)
    best = run_training(_pretrain_recipe(corpus, str(tmp_path), "keep-best", max_steps=40, eval_every=10,
                                         checkpoint_every=10, keep="best"))
    hb = best["model_holds"]
    assert hb["weights"] == "best" and hb["step"] == best["best_val"]["step"] == hb["best_step"]
    assert hb["other"] == {"path": best["model_last"], "weights": "last", "step": 40}
    with open(os.path.join(best["model"], "lmrefinery.json")) as f:
        assert json.load(f)["trainer_state"]["step"] == hb["step"]
    assert "holds the best validation loss" in format_report(best)


def test_data_and_path_errors_fail_on_the_driver_before_any_worker(corpus, tmp_path, capsys):
    """A deterministic data error is raised on the driver (exit 2, naming the key), so
    Ray Train never starts workers that would fail and be retried max_failures times."""
    import ray

    from lmrefinery.cli import main
    from lmrefinery.tokenize.reader import PackedReader

    def n(split):
        return PackedReader(corpus["pretrain"], seq_len=SEQ, split=split, shuffle_docs=False,
                            shuffle_samples=False).num_samples

    nval, ntrain = n("valid"), n("train")
    assert ntrain > nval + 1
    was_up = ray.is_initialized()
    out = tmp_path / "out"

    def run(*sets):
        p = tmp_path / "r.yaml"
        p.write_text(f"name: x\noutput: {out}\ntokenizer: {corpus['tokenizer']}\n"
                     f"data: {{train: {corpus['pretrain']}, seq_len: {SEQ}}}\ntrainer: {{workers: 1, max_failures: 3}}\n")
        code = main(["train", str(p), *[a for s in sets for a in ("--set", s)]])
        return code, capsys.readouterr().err

    code, err = run(f"trainer.workers={nval + 1}")
    assert code == 2 and "key 'data.valid'" in err and f"has {nval} packed samples" in err
    assert f"need at least {nval + 1}" in err and corpus["pretrain"] in err
    code, err = run("data.seq_len=100000000")
    assert code == 2 and "key 'data.train'" in err and "only 0 packed samples" in err
    code, err = run(f"data.train={tmp_path / 'missing'}")
    assert code == 2 and "key 'data.train'" in err and str(tmp_path / "missing") in err
    code, err = run("tokenizer=gpt2")
    assert code == 2 and "key 'tokenizer'" in err and "Hub ids are not supported offline" in err
    assert ray.is_initialized() == was_up and not out.exists()  # nothing started, nothing written


# ---------------------------------------------------------------- experiment tracking sinks
def _wandb_history(path: str) -> list[dict]:
    """History rows of an offline W&B run file (LevelDB log framing of protobuf records:
    a 7-byte header, 32 KiB blocks, records of crc32 + length + type + data)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, block, buf, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, n, typ = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if typ == 0:
            pos += (block - pos % block) % block
            continue
        chunk, pos = data[pos:pos + n], pos + n
        if typ in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf + chunk)
            buf = b""
            if rec.WhichOneof("record_type") == "history":
                out.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
        else:
            buf += chunk
    return out


def test_tracking_sinks_tensorboard_mlflow_wandb(corpus, tmp_path, monkeypatch):
    """The rank-0 metrics writer feeds real TensorBoard event files, a real MLflow
    tracking store (SQLite) and a real offline W&B run; a restart from step 10
    replaces what came after it in TensorBoard and continues the same MLflow run."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lmrefinery.train.metrics import MLFLOW_RUN_FILE, MetricsWriter, read_metrics

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    ml_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recipe = _pretrain_recipe(corpus, str(tmp_path / "runs"), "track")
    recipe = recipe.model_copy(update={"logging": recipe.logging.model_copy(update={
        "tensorboard": True, "mlflow_uri": ml_uri, "wandb_project": "lmr-test", "console": False})})

    def row(step, loss, **kw):
        return {"step": step, "loss": loss, "lr": 1e-3, "grad_norm": 0.5, "tokens_per_s": 1000.0, **kw}

    w = MetricsWriter(recipe, True)
    assert [k for k, _ in w.sinks] == ["tb", "mlflow", "wandb"]
    w.log(row(10, 4.0))
    w.log(row(20, 3.5, val_loss=3.6, val_ppl=36.6))
    w.close()
    run_id = json.loads(open(os.path.join(recipe.run_dir, MLFLOW_RUN_FILE)).read())["run_id"]
    # a restart from the step-10 checkpoint: step 20 is trained again, then 30
    w2 = MetricsWriter(recipe, True, resume_step=10)
    w2.log(row(20, 3.4))
    w2.log(row(30, 3.1))
    w2.close()
    assert [r["step"] for r in read_metrics(recipe.run_dir)] == [10, 20, 30]

    ea = EventAccumulator(os.path.join(recipe.run_dir, "tensorboard"))
    ea.Reload()
    assert [(e.step, round(e.value, 4)) for e in ea.Scalars("train/loss")] == [(10, 4.0), (20, 3.4), (30, 3.1)]
    assert [(e.step, round(e.value, 4)) for e in ea.Scalars("train/val_loss")] == []  # purged with step 20
    assert [e.step for e in ea.Scalars("train/tokens_per_s")] == [10, 20, 30]

    client = MlflowClient(tracking_uri=ml_uri)
    exp = client.get_experiment_by_name("track")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id] and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["preset"] == "tiny" and runs[0].data.params["max_steps"] == str(STEPS)
    hist = sorted((m.step, round(m.value, 4)) for m in client.get_metric_history(run_id, "loss"))
    assert hist == [(10, 4.0), (20, 3.4), (20, 3.5), (30, 3.1)]
    assert [round(m.value, 4) for m in client.get_metric_history(run_id, "val_ppl")] == [36.6]

    files = sorted(glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-track.wandb")))
    assert len(files) == 2   # one offline file per writer session, both for run id "track"
    first, second = (_wandb_history(f) for f in files)
    assert [(h["_step"], h["loss"]) for h in first] == [(10, 4.0), (20, 3.5)]
    assert [(h["_step"], h["loss"]) for h in second] == [(20, 3.4), (30, 3.1)]


def test_recipe_paths_made_absolute_for_workers(tmp_path, monkeypatch):
    """Ray Train workers do not share the submitting shell's working directory: local
    paths in a recipe are resolved when it is loaded; URIs and 'scratch' are left alone."""
    from lmrefinery.train.config import load_train_recipe
    from lmrefinery.train.export import load_tokenizer

    monkeypatch.chdir(tmp_path)
    r = load_train_recipe({"name": "p", "output": "runs", "tokenizer": "tok/tokenizer.json",
                           "data": {"train": ["a/dataset.json", "s3://b/x"], "valid": "v", "cache_dir": "~/c"}})
    assert r.output == str(tmp_path / "runs") and r.tokenizer == str(tmp_path / "tok" / "tokenizer.json")
    assert r.data.train == [str(tmp_path / "a" / "dataset.json"), "s3://b/x"]
    assert r.data.valid == str(tmp_path / "v") and r.data.cache_dir == os.path.expanduser("~/c")
    assert r.model.init == "scratch" and r.chat_template is None
    with pytest.raises(FileNotFoundError, match="tokenizer: .* does not exist"):
        load_tokenizer(r.tokenizer)


# ---------------------------------------------------------------- secrets never leave the process
_SCAN = r'''
import json, os, sys
from lmrefinery.train.config import load_train_recipe
from lmrefinery.train.trainer import run_training
import ray
rep = run_training(load_train_recipe(json.load(open(sys.argv[1]))))
print("LMR_SESSION_DIR " + ray._private.worker._global_node.get_session_dir_path(), flush=True)
print("LMR_REPORT " + json.dumps(rep, default=str), flush=True)
'''


def _files_containing(root: str, needles: list[bytes]) -> list[str]:
    hits = []
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            try:
                with open(p, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            hits += [f"{p}: {n[:4]!r}..." for n in needles if n in data]
    return hits


def test_credentials_never_reach_run_files_reports_or_ray_logs(corpus, tmp_path, monkeypatch):
    """A training run with planted credential values in its environment: every file of the
    run folder, the report, the job's own output and every file of Ray's session folder
    (runtime_env_agent.log and the worker logs included) is scanned for them."""
    import secrets
    import subprocess
    import sys

    from lmrefinery.train.trainer import worker_env

    planted = {"AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
               "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30), "AWS_SESSION_TOKEN": secrets.token_urlsafe(40),
               "HF_TOKEN": "hf_" + secrets.token_hex(16), "LMR_DB_PASSWORD": secrets.token_hex(12)}
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AWS_ENDPOINT_URL")} | planted
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    out = tmp_path / "run"
    rec = {"name": "scan", "kind": "pretrain", "output": str(out), "tokenizer": corpus["tokenizer"],
           "model": {"preset": "tiny"}, "data": {"train": corpus["pretrain"], "seq_len": SEQ},
           "trainer": {"workers": 1, "micro_batch_size": 8, "max_steps": 4, "warmup_steps": 1, "log_every": 2,
                       "eval_every": 2, "eval_batches": 1, "checkpoint_every": 2, "keep_last": 1}}
    (tmp_path / "r.json").write_text(json.dumps(rec))
    proc = subprocess.run([sys.executable, "-c", _SCAN, str(tmp_path / "r.json")], env=env, capture_output=True,
                          text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    session = next(line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("LMR_SESSION_DIR "))
    needles = [v.encode() for v in planted.values()]
    assert os.path.isfile(os.path.join(session, "logs", "runtime_env_agent.log")) or os.listdir(session)
    leaks = (_files_containing(str(out), needles) + _files_containing(session, needles)
             + [f"job output: {n[:4]!r}" for n in needles if n.decode() in log])
    assert leaks == [], leaks
    # settings still travel; the planted secrets never do
    for k, v in planted.items():
        monkeypatch.setenv(k, v)
    w = worker_env()
    assert not set(planted) & set(w) and w["RAY_TRAIN_ENABLE_PRINT_PATCH"] == "0"


def test_failure_injection_is_a_test_callback_not_a_recipe_key(tmp_path):
    """A recipe cannot ask a worker to fail; tests pass a callback to run_training instead."""
    from lmrefinery.core.recipe import RecipeError
    from lmrefinery.train.callbacks import StepEnd, TrainCallback
    from lmrefinery.train.config import load_train_recipe
    from train_hooks import FailOnceAt

    base = {"name": "r", "output": str(tmp_path), "tokenizer": str(tmp_path / "tok"), "data": {"train": "x"}}
    load_train_recipe(base)
    with pytest.raises(RecipeError, match="fail_at_step"):
        load_train_recipe(dict(base, trainer={"fail_at_step": 3}))
    hook = FailOnceAt(3)
    assert isinstance(hook, TrainCallback)
    hook.on_step_end(StepEnd(step=3, rank=0, world=2, resumed_from=None, run_dir=str(tmp_path)))  # not the last rank
    hook.on_step_end(StepEnd(step=2, rank=1, world=2, resumed_from=None, run_dir=str(tmp_path)))  # not the step
    with pytest.raises(RuntimeError, match="injected failure at step 3"):
        hook.on_step_end(StepEnd(step=3, rank=1, world=2, resumed_from=None, run_dir=str(tmp_path)))
    assert (tmp_path / "_injected_failure").exists()
    hook.on_step_end(StepEnd(step=3, rank=1, world=2, resumed_from=None, run_dir=str(tmp_path)))  # once per run folder


def test_local_backend_follows_ray_train_and_restarts_without_ray(corpus, s3_bucket, tmp_path):
    """trainer.backend=local: one worker in this process, run storage on S3. Against a
    1-worker Ray Train run of 40 steps: a first local run, in a Python where `import ray`
    fails, stops at step 20 (as if killed); the same command again resumes there, a failure
    injected at step 30 restarts it from the step-20 checkpoint. Same samples and losses as
    Ray Train, the model exported, keep_last=1 checkpoint left."""
    import subprocess
    import sys

    from lmrefinery.core import storage
    from lmrefinery.core.recipe import RecipeError
    from lmrefinery.train.config import load_train_recipe
    from lmrefinery.train.metrics import read_metrics
    from lmrefinery.train.session import LOCAL_INDEX
    from lmrefinery.train.trainer import run_training
    from train_hooks import FAIL_MARKER, FailOnceAt

    short = dict(workers=1, max_steps=40, checkpoint_every=20, eval_every=20, keep_last=1)
    ray_rep = run_training(_pretrain_recipe(corpus, str(tmp_path / "ray"), "one", **short))
    local = _pretrain_recipe(corpus, f"s3://{s3_bucket}/local-runs", "one", backend="local", **short)
    stopped = local.model_copy(update={"trainer": local.trainer.model_copy(update={"stop_at_step": 20})})
    (tmp_path / "stopped.json").write_text(stopped.model_dump_json())
    code = ("import sys, json; sys.modules['ray'] = None\n"   # any `import ray` raises ImportError
            "from lmrefinery.train.config import load_train_recipe\n"
            "from lmrefinery.train.trainer import run_training\n"
            f"rep = run_training(load_train_recipe(json.load(open({str(tmp_path / 'stopped.json')!r}))))\n"
            "assert not rep['finished'] and 'ray' not in {m.split('.')[0] for m in sys.modules if sys.modules[m]}\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    second = run_training(local, callbacks=[FailOnceAt(30)])
    run = second["run_dir"]
    assert second["finished"] and second["backend"] == "local"
    assert second["starts"] == [None, 20, 20]   # fresh, resumed by re-running, restarted after the failure
    assert storage.exists(storage.join(run, FAIL_MARKER))
    ref, got = _steps(read_metrics(ray_rep["run_dir"])), _steps(read_metrics(run))
    assert sorted(got) == sorted(ref) == [10, 20, 30, 40]
    for s in ref:
        assert got[s]["data_fingerprint"] == ref[s]["data_fingerprint"], s
        assert got[s]["loss"] == pytest.approx(ref[s]["loss"], abs=2e-5), s
    assert got[40]["val_loss"] == pytest.approx(ref[40]["val_loss"], abs=2e-5)
    assert storage.exists(storage.join(second["model"], "model.safetensors"))
    kept = json.loads(storage.read_bytes(storage.join(run, LOCAL_INDEX)))["checkpoints"]
    assert [c["name"] for c in kept] == ["checkpoint_0000040"] and kept[0]["metrics"]["step"] == 40
    assert {p.split("/")[-2] for p in storage.list_files(run + "/") if "/checkpoint_0" in p} == {"checkpoint_0000040"}
    with pytest.raises(RecipeError, match="backend=local runs one worker"):
        load_train_recipe(dict(local.model_dump(mode="json"), trainer=dict(short, backend="local", workers=2)))
