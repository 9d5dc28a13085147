"""`lmrefinery eval`: perplexity equals a hand computation with transformers on tiny
randomly initialised models (Llama and GPT-2 configs) saved as HF directories, with a
BPE tokenizer trained here on shared book text; `trainer.tokens` derives max_steps."""
from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest


def _paragraphs(shared: str, n: int) -> list[str]:
    with open(os.path.join(shared, "books", "pg11_alice_in_wonderland_en.txt"), encoding="utf-8") as f:
        text = f.read()
    paras = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    return [p for p in paras if len(p) > 80][:n]


@pytest.fixture(scope="module")
def tiny_models(shared_corpora, tmp_path_factory):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from lmrefinery.tokenize.tokenizer import save_hf, train_bpe
    from lmrefinery.train.export import load_tokenizer

    root = tmp_path_factory.mktemp("eval_models")
    tok_dir = save_hf(train_bpe(_paragraphs(shared_corpora, 400), vocab_size=600), str(root / "tok"))
    tok = load_tokenizer(tok_dir)
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=256))
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=64))
    out = {}
    for name, m in (("llama", llama), ("gpt2", gpt2)):
        d = str(root / name)
        m.save_pretrained(d)
        tok.save_pretrained(d)
        out[name] = d
    docs = _paragraphs(shared_corpora, 460)[400:]   # not in the tokenizer's training text
    texts = root / "docs.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    return {"dirs": out, "docs": docs, "jsonl": str(texts), "root": root}


def _hand_nll(model_dir: str, docs: list[str], context: int) -> tuple[float, int]:
    """Each document: tokenizer ids + EOS, cut into independent chunks of `context`
    tokens; inside a chunk token j is scored from tokens < j (HF labels shift)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    nll, n = 0.0, 0
    for text in docs:
        ids = tok(text)["input_ids"] + [tok.eos_token_id]
        for b in range(0, len(ids), context):
            chunk = torch.tensor([ids[b:b + context]])
            if chunk.shape[1] < 2:
                continue
            with torch.no_grad():
                out = model(input_ids=chunk, labels=chunk)   # mean over chunk_len - 1 targets
            k = chunk.shape[1] - 1
            nll += float(out.loss) * k
            n += k
    return nll, n


@pytest.mark.parametrize("arch,context", [("llama", 256), ("llama", 24), ("gpt2", 64)])
def test_perplexity_equals_hand_computation(tiny_models, arch, context):
    from lmrefinery.evals.perplexity import perplexity

    d = tiny_models["dirs"][arch]
    docs = tiny_models["docs"][:12]
    res = perplexity(d, texts=docs, name="alice", context=context, batch_tokens=300)
    nll, n = _hand_nll(d, docs, context)
    assert res.docs == 12 and res.tokens == n and n > 12 * 10
    assert res.context == context and res.stride == context
    assert res.nll == pytest.approx(nll, rel=1e-5)
    assert res.ppl == pytest.approx(math.exp(nll / n), rel=1e-5)
    # a random model is close to uniform over the vocabulary
    assert 0.5 * math.log(600) < res.nats_per_token < 2 * math.log(600)


def test_sliding_window_scores_every_token_once_with_more_context(tiny_models):
    from transformers import AutoTokenizer

    from lmrefinery.evals.perplexity import perplexity, windows

    assert windows(10, 4, 2) == [(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
    assert windows(1, 4, 4) == [] and windows(5, 8, 8) == [(0, 5, 1)]
    d, docs = tiny_models["dirs"]["llama"], tiny_models["docs"][:6]
    tok = AutoTokenizer.from_pretrained(d)
    lens = [len(tok(t)["input_ids"]) + 1 for t in docs]
    assert max(lens) > 64
    a = perplexity(d, texts=docs, context=32, stride=32)
    b = perplexity(d, texts=docs, context=32, stride=8)
    assert b.tokens == sum(n - 1 for n in lens)      # overlapping windows: every token but the first
    assert a.tokens == sum(max(0, min(32, n - k) - 1) for n in lens for k in range(0, n, 32))  # len - 1 each
    assert a.nll / a.tokens != pytest.approx(b.nll / b.tokens, rel=1e-6)


def test_token_split_and_cli_write_json_and_table(tiny_models, tmp_path, capsys):
    from lmrefinery.cli import main
    from lmrefinery.evals.perplexity import encode_texts, perplexity
    from lmrefinery.tokenize.indexed import IndexedWriter
    from lmrefinery.train.export import load_tokenizer

    d, docs = tiny_models["dirs"]["llama"], tiny_models["docs"][:10]
    tok = load_tokenizer(d)
    w = IndexedWriter(str(tmp_path / "valid-00000"), np.uint16)
    for ids in encode_texts(tok, docs):
        w.add(ids)
    w.close()
    (tmp_path / "dataset.json").write_text(json.dumps({"splits": {"valid": {"shards": [{"prefix": "valid-00000"}]}}}))
    out = tmp_path / "eval.json"
    rc = main(["eval", d, "--text", f"alice={tiny_models['jsonl']}", "--tokens", f"split={tmp_path}:valid",
               "--max-docs", "10", "--context", "64", "--out", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "alice" in table and "split" in table and "nats/token" in table
    rep = json.loads(out.read_text())
    by = {p["name"]: p for p in rep["perplexity"]}
    # the same documents as text and as stored ids give the same numbers
    assert by["alice"]["docs"] == by["split"]["docs"] == 10
    assert by["alice"]["tokens"] == by["split"]["tokens"]
    assert by["alice"]["nll"] == pytest.approx(by["split"]["nll"], rel=1e-6)
    direct = perplexity(d, texts=docs, context=64)
    assert by["alice"]["ppl"] == pytest.approx(direct.ppl, rel=1e-6)


def test_cli_eval_needs_some_data(tiny_models, capsys):
    from lmrefinery.cli import main

    assert main(["eval", tiny_models["dirs"]["gpt2"]]) == 2
    assert "--text" in capsys.readouterr().err


def _train_recipe(**trainer):
    from lmrefinery.train.config import load_train_recipe

    return load_train_recipe({"name": "t", "output": "/tmp/x", "tokenizer": "/tmp/tok",
                              "data": {"train": "/tmp/d", "seq_len": 64},
                              "trainer": dict(workers=2, micro_batch_size=4, grad_accum=2, **trainer)})


def test_trainer_tokens_sets_max_steps_and_must_agree_with_it():
    from lmrefinery.core.recipe import RecipeError
    from lmrefinery.train.config import TrainRecipe

    per_step = 4 * 2 * 2 * 64
    r = _train_recipe(tokens=10 * per_step)
    assert r.trainer.max_steps == 10
    assert _train_recipe(tokens=10 * per_step + 1).trainer.max_steps == 11     # ceil: at least the budget
    assert _train_recipe(tokens=5).trainer.max_steps == 1
    assert _train_recipe(tokens=3 * per_step, max_steps=3).trainer.max_steps == 3
    with pytest.raises(RecipeError, match="trainer.tokens=.*max_steps=4"):
        _train_recipe(tokens=3 * per_step, max_steps=4)
    # the recipe as shipped to Ray Train workers reloads unchanged
    again = TrainRecipe(**r.model_dump(mode="json"))
    assert again.trainer.max_steps == 10 and again.trainer.tokens == 10 * per_step
    assert _train_recipe(max_steps=7).trainer.max_steps == 7


def test_eval_job_entrypoint_prints_result_line(tiny_models, tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "job.json"
    p = subprocess.run([sys.executable, os.path.join(root, "jobs", "evaluate.py"), tiny_models["dirs"]["gpt2"],
                        "--text", f"alice={tiny_models['jsonl']}", "--max-docs", "5", "--out", str(out)],
                       capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    line = next(x for x in p.stdout.splitlines() if x.startswith("LMR_RESULT "))
    res = json.loads(line.split(" ", 1)[1])
    saved = json.loads(out.read_text())["perplexity"][0]
    assert res["perplexity"]["alice"]["ppl"] == pytest.approx(saved["ppl"]) and saved["docs"] == 5
    bad = subprocess.run([sys.executable, os.path.join(root, "jobs", "evaluate.py"), str(tmp_path / "nope"),
                          "--text", tiny_models["jsonl"]], capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode in (1, 2) and "LMR_FAILED" in bad.stdout


def test_instruction_eval_scores_per_language_with_few_shot(tiny_models, shared_corpora, tmp_path):
    """Greedy answers of the tiny model scored per language; with its own answers as the
    references every metric is perfect, with the real references it is not."""
    from lmrefinery.evals.generation import instruction_eval

    with open(os.path.join(shared_corpora, "instructions", "belle_open_source_1k.jsonl"), encoding="utf-8") as f:
        rows = [dict(json.loads(x), lang="zh") for x in f.read().splitlines()[:4]]  # some BELLE tasks are English
    with open(os.path.join(shared_corpora, "instructions", "alpaca_data_5k_subset.json"), encoding="utf-8") as f:
        short = [r for r in json.load(f) if len(r["output"]) < 200]
    rows += short[:4]
    shots = short[10:12]
    real, pool = tmp_path / "real.jsonl", tmp_path / "shots.jsonl"
    real.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    pool.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in shots))
    d = tiny_models["dirs"]["llama"]
    # a shot never repeats a prompt that is scored
    assert instruction_eval(d, str(real), shots=1, shots_from=str(real), max_new_tokens=2)["shots"] == 0
    res = instruction_eval(d, str(real), shots=1, shots_from=str(pool), max_new_tokens=12)
    assert res["shots"] == 1 and res["items"] == 8
    by = res["by_language"]
    assert by["zh"]["n"] == 4 and by["en"]["n"] == 4 and by["all"]["n"] == 8
    assert by["zh"]["bleu_tokenize"] == "zh" and by["en"]["bleu_tokenize"] == "13a"
    assert by["all"]["exact_match"] == 0.0
    hyps = [s["generated"] for s in res["samples"]]
    own = tmp_path / "own.jsonl"
    own.write_text("".join(json.dumps(dict(r, output=h), ensure_ascii=False) + "\n"
                           for r, h in zip(rows[:5], hyps) if h.strip()))
    mine = instruction_eval(d, str(own), shots=1, shots_from=str(pool), max_new_tokens=12)["by_language"]
    assert mine["all"]["exact_match"] == 1.0 and mine["all"]["rougeL"] == pytest.approx(1.0)
