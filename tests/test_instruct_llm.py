"""LLM-backed instruction generation with a real (tiny, untrained) Llama model:
built from a config with a BPE tokenizer trained here on the shared corpora,
served through the transformers backend in-process and through the
OpenAI-compatible server (`lmrefinery instruct serve`) on loopback. The model
writes gibberish, so these tests check the mechanics: prompts and requests,
parsing that turns gibberish into rejects with reasons, the response cache
(a re-run sends nothing), provenance on records, retries and error paths."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from lmrefinery.instruct.backends import CachedBackend, ChatRequest, OpenAIBackend, TransformersBackend
from lmrefinery.instruct.common import make_record, pair
from lmrefinery.instruct.rouge import RougePool
from lmrefinery.instruct.self_instruct import (
    SelfInstructConfig,
    instruction_reject,
    load_seed_tasks,
    parse_instances,
    parse_instructions,
    parse_yes_no,
    run_self_instruct,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {"temperature": 0.8, "top_p": 0.9, "max_tokens": 16}


@pytest.fixture(scope="module")
def seeds(shared_corpora):
    return load_seed_tasks(os.path.join(shared_corpora, "instructions", "self_instruct_seed_tasks.jsonl"))


# ---------------------------------------------------------------- parsing and filters (no model)
def test_parsing_and_published_filters(shared_corpora):
    got = parse_instructions(" Suggest a name for a bakery.\nTask 10: Write a haiku about rain.\n"
                             "Task 11: Sort these numbers.\nInput: 3, 1, 2\nOutput: 1, 2, 3")
    assert got == ["Suggest a name for a bakery.", "Write a haiku about rain.", "Sort these numbers."]
    assert parse_instructions("") == [] and parse_instructions("   ") == []
    assert parse_instances("Class label: positive\nSentence: I love it.\nClass label: negative\n"
                           "Sentence: Awful.", True, "en") == [{"input": "I love it.", "output": "positive"},
                                                               {"input": "Awful.", "output": "negative"}]
    assert parse_instances("Example 1\nInput: 2+2\nOutput: 4\nExample 2\nInput: 3+3\nOutput: 6", False, "en") == \
        [{"input": "2+2", "output": "4"}, {"input": "3+3", "output": "6"}]
    assert parse_instances("Output: Paris is the capital.", False, "en") == [{"input": "", "output":
                                                                               "Paris is the capital."}]
    assert parse_instances("random words without structure", False, "en") == []
    assert parse_yes_no(" Yes", "en") is True and parse_yes_no("No.", "en") is False
    assert parse_yes_no("maybe", "en") is None and parse_yes_no("是", "zh") is True

    pool = RougePool(0.7)
    for s in load_seed_tasks(os.path.join(shared_corpora, "instructions", "self_instruct_seed_tasks.jsonl")):
        pool.add(s.instruction)
    cases = {
        "Hi there": "too_short",
        " ".join(["word"] * 151): "too_long",
        "Draw a cat sitting on a mat, please.": "blocklist:draw",
        "Describe the image in the attached file carefully.": "blocklist:image",
        "Write a program that prints the first ten primes.": "blocklist:write a program",
        "\"Quote\" the following sentence in full please.": "starts_with_punctuation",
        "Über alles: explain the phrase in simple terms.": "starts_non_ascii",
        # a seed instruction, lightly changed: ROUGE-L >= 0.7 against the pool
        "Is there anything I can eat for breakfast that doesn't include eggs, yet includes protein?":
            "rouge_l_too_similar",
    }
    for text, want in cases.items():
        assert instruction_reject(text, "en", pool)[0] == want, text
    assert instruction_reject("Name three rivers in South America and their lengths.", "en", pool)[0] is None
    zh = RougePool(0.7)
    zh.add("给出下面词语的同义词")
    assert instruction_reject("请给出下面词语的同义词", "zh", zh)[0] == "rouge_l_too_similar"
    assert instruction_reject("用三句话介绍一下长城的历史", "zh", zh)[0] is None
    assert instruction_reject("请根据这张图片写一段描述", "zh", zh)[0] == "blocklist:图片"
    # the pool scores candidates with a vectorised bound: exact LCS only for a few entries
    assert pool.exact_checks < 30


# ---------------------------------------------------------------- Self-Instruct, local transformers
def _expected_requests(res, cfg) -> int:
    accepted = res.stats["accepted_tasks"] + sum(1 for r in res.rejects if r["reason"] in
                                                 ("no_instances_parsed",) or r["reason"].startswith("backend_error")
                                                 and "instruction" in r)
    return cfg.rounds * cfg.num_prompts + 2 * accepted


def test_self_instruct_transformers_and_cache(tiny_model, seeds, tmp_path):
    cfg = SelfInstructConfig(lang="en", rounds=2, num_prompts=2, seed=3, gen_params=SMALL,
                             inst_params=SMALL, clf_params={"temperature": 0.0, "max_tokens": 3})
    cache = str(tmp_path / "cache.sqlite")
    b1 = CachedBackend(TransformersBackend(tiny_model), cache)
    res = run_self_instruct(seeds, b1, cfg)
    assert res.stats["prompts"] == 4
    assert b1.stats["requests"] == _expected_requests(res, cfg) and b1.stats["cache_hits"] == 0
    assert res.rejects, "gibberish must end as rejects with reasons"
    known = {"too_short", "too_long", "starts_with_punctuation", "starts_non_ascii", "language_mismatch",
             "rouge_l_too_similar", "unparsable_instructions", "no_instances_parsed"}
    assert all(r["reason"] in known or r["reason"].startswith("blocklist:") for r in res.rejects)
    for r in res.records:
        assert r["meta"]["origin"] == "self_instruct" and len(r["meta"]["parent_ids"]) == 8
    first = b1.stats["requests"]
    b1.close()
    # a re-run with the same seed replays every response from the cache: zero requests
    b2 = CachedBackend(TransformersBackend(tiny_model), cache)
    res2 = run_self_instruct(seeds, b2, cfg)
    assert b2.stats["requests"] == 0 and b2.stats["cache_hits"] == first
    assert [r["reason"] for r in res2.rejects] == [r["reason"] for r in res.rejects]
    assert [r["id"] for r in res2.records] == [r["id"] for r in res.records]
    # another seed samples other prompts: new requests
    res3 = run_self_instruct(seeds, b2, SelfInstructConfig(**{**cfg.__dict__, "seed": 4, "rounds": 1}))
    assert b2.stats["requests"] >= 2 and res3.stats["prompts"] == 2
    b2.close()


# ---------------------------------------------------------------- Ray Data batch inference
def test_ray_data_backend_matches_in_process(tiny_model, tmp_path):
    """Ray Data actors give the in-process backend's text, request for request, and share its
    cache entries. Driven from a process of its own with a private Ray (as a generation job
    runs it): in the suite's long-lived session cluster the actor pool once sat idle after
    start-up until the test timed out (cause not established; see docs/instruct.md)."""
    from lmrefinery.instruct.backends import RayDataBackend

    reqs = [ChatRequest([{"role": "user", "content": f"Write a short poem about the number {i}."}],
                        dict(SMALL, seed=i if i % 2 else None)) for i in range(7)]
    reqs.append(ChatRequest([{"role": "user", "content": "用一句话介绍长城。"}], {"temperature": 0.0, "max_tokens": 12}))
    want = TransformersBackend(tiny_model).chat(reqs)
    cache = str(tmp_path / "c.sqlite")
    c1 = CachedBackend(TransformersBackend(tiny_model), cache)   # the first 4 answered in process
    c1.chat(reqs[:4])
    c1.close()
    requests_json, out_json = tmp_path / "requests.json", tmp_path / "answers.json"
    requests_json.write_text(json.dumps([{"messages": r.messages, "params": r.params} for r in reqs]), "utf-8")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "ray_data_backend_run.py"), tiny_model,
                          str(requests_json), cache, str(out_json)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    got = json.loads(out_json.read_text("utf-8"))
    assert got["texts"] == [w.text for w in want]
    assert all(e is None for e in got["errors"]) and all(got["texts"])
    assert got["empty"] == 0
    # same identity as the in-process backend: the 4 cached answers come from the cache
    assert got["cached_texts"] == [w.text for w in want]
    assert got["cache_stats"]["cache_hits"] == 4 and got["cache_stats"]["requests"] == 4
    with pytest.raises(ValueError, match="engine"):
        RayDataBackend(tiny_model, engine="tgi")
    with pytest.raises(FileNotFoundError, match="model_dir"):
        RayDataBackend(str(tmp_path / "nope"), engine="transformers")


def test_vllm_backend_refuses_without_vllm(tiny_model):
    from lmrefinery.instruct.backends import make_backend, vllm_available

    if vllm_available():
        pytest.skip("vllm is installed here: the refusal path does not apply")
    with pytest.raises(RuntimeError, match="needs the vllm package"):
        make_backend({"type": "vllm", "model_dir": tiny_model})


# ---------------------------------------------------------------- the OpenAI-compatible server
@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    ready = str(tmp_path_factory.mktemp("srv") / "port")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib"), LMR_TEST_SERVER_KEY="sekret-123")
    proc = subprocess.Popen([sys.executable, "-m", "lmrefinery.cli", "instruct", "serve", tiny_model, "--port", "0",
                             "--model-name", "tiny", "--ready-file", ready, "--api-key-env", "LMR_TEST_SERVER_KEY"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(1200):
        if os.path.exists(ready) and open(ready).read().strip():
            break
        if proc.poll() is not None:
            pytest.fail("server exited: " + proc.stderr.read().decode()[-2000:])
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("server did not start")
    url = f"http://127.0.0.1:{int(open(ready).read())}"
    yield url
    proc.terminate()
    proc.wait(20)


def _served(url) -> int:
    with urllib.request.urlopen(url + "/stats", timeout=10) as r:
        return json.loads(r.read())["requests"]


def test_self_instruct_over_http(server, shared_corpora, tmp_path, monkeypatch):
    monkeypatch.setenv("LMR_TEST_SERVER_KEY", "sekret-123")
    with urllib.request.urlopen(server + "/v1/models", timeout=10) as r:
        assert json.loads(r.read())["data"][0]["id"] == "tiny"
    http = OpenAIBackend(server, "tiny", api_key_env="LMR_TEST_SERVER_KEY", concurrency=2,
                         requests_per_minute=6000, max_retries=2, backoff=0.05)
    assert "sekret" not in repr(http)
    cfg = SelfInstructConfig(lang="zh", rounds=1, num_prompts=3, seed=1, gen_params=SMALL, inst_params=SMALL,
                             clf_params={"temperature": 0.0, "max_tokens": 3})
    before = _served(server)
    b = CachedBackend(http, str(tmp_path / "http-cache.sqlite"))
    zh_seeds = load_seed_tasks(os.path.join(shared_corpora, "instructions", "belle_zh_seed_tasks.jsonl"))
    res = run_self_instruct(zh_seeds, b, cfg)
    sent = _served(server) - before
    assert sent == b.stats["requests"] == _expected_requests(res, cfg) and http.stats["retries"] == 0
    assert res.rejects
    # the re-run is free: the server sees nothing
    b2 = CachedBackend(OpenAIBackend(server, "tiny", api_key_env="LMR_TEST_SERVER_KEY"),
                       str(tmp_path / "http-cache.sqlite"))
    res2 = run_self_instruct(zh_seeds, b2, cfg)
    assert _served(server) - before == sent and b2.stats["requests"] == 0
    assert [r["reason"] for r in res2.rejects] == [r["reason"] for r in res.rejects]
    # without the key the server refuses (401, not retried); a bad request is a 400, not retried
    monkeypatch.delenv("LMR_TEST_SERVER_KEY")
    nokey = OpenAIBackend(server, "tiny", api_key_env="LMR_TEST_SERVER_KEY", max_retries=3, backoff=0.01)
    out = nokey.chat([ChatRequest([{"role": "user", "content": "hi"}], {"max_tokens": 2})])[0]
    assert out.error == "http_401" and nokey.stats["http_calls"] == 1


def _post(url, path, body, stream=False):
    """(status, JSON body) or, for a stream, (status, [parsed SSE data events])."""
    import urllib.error

    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer sekret-123"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            if not stream:
                return r.status, json.loads(r.read())
            assert r.headers["Content-Type"] == "text/event-stream"
            events = [line[len(b"data: "):].decode() for line in r.read().split(b"\n\n") if line.startswith(b"data: ")]
            return r.status, [e if e == "[DONE]" else json.loads(e) for e in events]
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_server_streams_and_serves_completions(server):
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "写一首关于秋天的诗"}],
            "temperature": 0.0, "max_tokens": 24}
    code, plain = _post(server, "/v1/chat/completions", chat)
    assert code == 200
    code, events = _post(server, "/v1/chat/completions", dict(chat, stream=True), stream=True)
    assert code == 200 and events[-1] == "[DONE]" and len(events) >= 4
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == plain["choices"][0]["message"]["content"] and streamed
    assert chunks[-1]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert chunks[-1]["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]
    # /v1/completions: raw prompt, same text streamed or not; a stop string cuts both alike
    comp = {"model": "tiny", "prompt": "秋天的", "temperature": 0.0, "max_tokens": 20}
    code, c1 = _post(server, "/v1/completions", comp)
    assert code == 200 and c1["object"] == "text_completion" and c1["choices"][0]["text"]
    code, ev = _post(server, "/v1/completions", dict(comp, stream=True), stream=True)
    assert code == 200 and ev[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in ev[:-1]) == c1["choices"][0]["text"]
    stop = c1["choices"][0]["text"][3:5]
    code, c2 = _post(server, "/v1/completions", dict(comp, stop=stop))
    code, ev2 = _post(server, "/v1/completions", dict(comp, stop=stop, stream=True), stream=True)
    cut = c1["choices"][0]["text"].split(stop, 1)[0]
    assert c2["choices"][0]["text"] == cut == "".join(e["choices"][0]["text"] for e in ev2[:-1])
    assert c2["choices"][0]["finish_reason"] == "stop"
    # what the server does not implement is a 400 naming the field
    for path, body, needle in (("/v1/chat/completions", dict(chat, n=2), "'n'"),
                               ("/v1/completions", dict(comp, logprobs=5), "'logprobs'"),
                               ("/v1/completions", dict(comp, prompt=["a", "b"]), "'prompt'"),
                               ("/v1/completions", {"model": "tiny"}, "'prompt' is required")):
        code, err = _post(server, path, body)
        assert code == 400 and needle in err["error"]["message"], (body, err)


def test_http_client_retries_and_gives_up():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed again: nothing listens there
    b = OpenAIBackend(f"http://127.0.0.1:{port}", "m", api_key_env=None, max_retries=2, backoff=0.01,
                      concurrency=2)
    res = b.chat([ChatRequest([{"role": "user", "content": "x"}]), ChatRequest([{"role": "user", "content": "y"}])])
    assert all(r.error and r.error.startswith("gave_up:connection") for r in res)
    assert b.stats["http_calls"] == 6 and b.stats["retries"] == 4


# ---------------------------------------------------------------- Evol-Instruct and LLM augmentation
def test_evol_elimination_rules_and_run(tiny_model, tmp_path):
    from lmrefinery.instruct.evol import EvolConfig, evolve, evolved_reject

    parent = "Give three tips for staying healthy."
    assert evolved_reject(parent, "give three tips, for staying healthy", "Eat well and sleep.") == \
        "evol_no_information_gain"
    assert evolved_reject(parent, "Give three tips for staying healthy on night shifts.", "x",
                          equal_judgement="Equal") == "evol_no_information_gain"
    assert evolved_reject(parent, "#Rewritten Prompt#: Give tips for athletes.", "Stretch.") == \
        "evol_copied_prompt_words"
    assert evolved_reject(parent, "Give three tips for staying healthy while travelling.",
                          "Sorry, I cannot help with that.") == "evol_response_sorry"
    assert evolved_reject(parent, "Give three tips for staying healthy while travelling.", "the, and of ... !") == \
        "evol_response_only_stopwords"
    assert evolved_reject(parent, "Give three tips for staying healthy while travelling by train.",
                          "Walk the aisle, drink water and sleep on schedule.") is None

    rows = [make_record([{"role": "user", "content": q}, {"role": "assistant", "content": a}], "t", origin="source",
                        id_parts=(i,), category="open_qa")
            for i, (q, a) in enumerate([("Explain photosynthesis.", "Plants turn light into sugar."),
                                        ("如何学习一门新语言？", "多听多说多练。"),
                                        ("List two prime numbers.", "2 and 3.")])]
    b = CachedBackend(TransformersBackend(tiny_model), str(tmp_path / "evol.sqlite"))
    kept, rejects, stats = evolve(rows, b, EvolConfig(depth=1, seed=0, evolve_params=SMALL, answer_params=SMALL))
    assert len(kept) + len(rejects) == 3 and b.stats["requests"] == 6
    for r in kept:
        assert r["meta"]["origin"] == "evol_instruct" and r["meta"]["parent_id"] in {x["id"] for x in rows}
        assert r["meta"]["evol_method"] in {"constraints", "deepen", "concretize", "reasoning", "complicate_input",
                                            "breadth"} and r["meta"]["evol_depth"] == 1
    assert all(x["reason"].startswith("evol_") for x in rejects)


def test_llm_augmentation_protects_code(tiny_model, tmp_path):
    from lmrefinery.instruct.augment import llm_augment, protect, restore

    text = "Explain this:\n```python\nx = [i * i for i in range(3)]\n```\nand `len(x)`."
    masked, codes = protect(text)
    assert "```" not in masked and len(codes) == 2 and restore(masked, codes) == text
    assert restore("no placeholders here", codes) is None
    rows = [make_record([{"role": "user", "content": text}, {"role": "assistant", "content": "It squares."}], "t",
                        origin="source", id_parts=(1,)),
            make_record([{"role": "user", "content": "Name a colour of the sky."},
                         {"role": "assistant", "content": "Blue."}], "t", origin="source", id_parts=(2,))]
    b = CachedBackend(TransformersBackend(tiny_model), str(tmp_path / "aug.sqlite"))
    made, rejects = llm_augment(rows, b, "paraphrase", params=SMALL)
    # gibberish cannot carry the placeholders back: the code record is rejected, never altered
    assert [(x["parent_id"], x["reason"]) for x in rejects if x["reason"] == "code_block_lost"] == \
        [(rows[0]["id"], "code_block_lost")]
    for m in made:
        assert m["meta"]["origin"] == "paraphrase" and m["meta"]["parent_id"] == rows[1]["id"]
        assert pair(m)[1] == "Blue."
    made2, rejects2 = llm_augment(rows, b, "back_translation", params=SMALL)
    assert len(made2) + len(rejects2) == 2 and b.stats["requests"] == 2 + 4


def test_augmentation_gate_variants_and_cli_flags(tiny_model, tmp_path, shared_corpora):
    """The tiny model writes gibberish: every variant is refused by the gate with a reason
    (before the gate, 4/4 were accepted); N variants per row are requested; the CLI passes
    --max-tokens/--temperature/--seed/--variants through."""
    from lmrefinery.instruct.augment import VariantGate, llm_augment
    from lmrefinery.instruct.common import load_records

    S = os.path.join(shared_corpora, "instructions")
    rows = load_records(os.path.join(S, "alpaca_chinese_bilingual_part_0.json"))[:4]   # 2 en + 2 zh
    b = CachedBackend(TransformersBackend(tiny_model), str(tmp_path / "gate.sqlite"))
    made, rejects = llm_augment(rows, b, "paraphrase", params=SMALL, n_variants=2, seed=1)
    assert made == [] and len(rejects) == 8 and b.stats["requests"] == 8
    gate_reasons = {"lang_changed", "too_different", "too_similar", "length_ratio", "refusal_boilerplate",
                    "duplicate_variant", "unchanged", "empty_output", "backend_error_or_empty"}
    assert {x["reason"] for x in rejects} <= gate_reasons and {x["variant"] for x in rejects} == {0, 1}
    gate = VariantGate()
    src = "Give three tips for staying healthy."
    assert gate(src, "Offer three suggestions for staying healthy.", "paraphrase") is None
    assert gate(src, "foo bar baz qux quux corge grault", "paraphrase") == "too_different"
    assert gate(src, "给出保持健康的三个建议。", "paraphrase") == "lang_changed"
    assert gate(src, "Sure! Here is the paraphrased instruction: give three tips for staying well.",
                "paraphrase") == "refusal_boilerplate"
    assert gate(src, "Give three tips for staying healthy!", "paraphrase") == "too_similar"
    assert gate("给出保持健康的三个建议。", "请提供三个保持健康的建议。", "paraphrase") is None
    # the CLI honours the generation flags: 6-token variants, two per row
    inp = tmp_path / "rows.json"
    inp.write_text(json.dumps([{"instruction": "Give three tips for staying healthy.", "input": "", "output": "x y"},
                               {"instruction": "Name two primary colours.", "input": "", "output": "Red, blue."}]))
    out = tmp_path / "aug.jsonl"
    r = subprocess.run([sys.executable, "-m", "lmrefinery.cli", "instruct", "augment", "--input", str(inp),
                        "--kind", "paraphrase", "--backend", "transformers", "--model-dir", tiny_model,
                        "--max-tokens", "6", "--temperature", "0.5", "--seed", "3", "--variants", "2",
                        "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["augmented"] + stats["rejected"] == 4 and stats["backend"]["requests"] == 4
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rej = [json.loads(x) for x in open(str(out) + ".rejects.jsonl")]
    lens = [len(tok(x["instruction"], add_special_tokens=False)["input_ids"]) for x in rej if x.get("instruction")]
    lens16 = [len(tok(x["instruction"], add_special_tokens=False)["input_ids"]) for x in rejects
              if x.get("instruction")]
    # re-encoding decoded byte-level gibberish splits a little more than it was generated
    assert lens and max(lens) <= 12 and sum(lens16) / len(lens16) > sum(lens) / len(lens)


def test_ifd_and_judge_scores_feed_filter_and_balance(tiny_model, tmp_path, shared_corpora):
    """IFD with a local causal LM equals the two losses computed by hand; scores are columns
    that instruct_filter (max_ifd, min_judge_score) and instruct_balance (prefer) use."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmrefinery.instruct.balance import balance
    from lmrefinery.instruct.common import load_records
    from lmrefinery.instruct.filters import PairFilter
    from lmrefinery.instruct.scoring import IFDScorer, judge_scores, parse_judge, with_scores

    rows = load_records(os.path.join(shared_corpora, "instructions", "alpaca_data_5k_subset.json"))[:12]
    scored = with_scores(rows, IFDScorer(tiny_model, batch_size=5).score(rows))
    assert all(r["meta"]["ifd"] > 0 for r in scored)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ins, resp = pair(rows[0])

    def loss(ctx, tgt):
        ids = torch.tensor([ctx + tgt])
        labels = torch.tensor([[-100] * len(ctx) + tgt])
        with torch.no_grad():
            return model(input_ids=ids, labels=labels).loss.item()
    a = tok(resp, add_special_tokens=False)["input_ids"]
    c = loss(tok(ins + "\n", add_special_tokens=False)["input_ids"], a)
    u = loss([tok.eos_token_id], a)
    m = scored[0]["meta"]
    assert m["loss_with_instruction"] == pytest.approx(c, rel=1e-4)
    assert m["loss_response_only"] == pytest.approx(u, rel=1e-4)
    assert m["ifd"] == pytest.approx(math.exp(c - u), rel=1e-4)
    # the filter uses the column; rows without it pass
    cut = sorted(r["meta"]["ifd"] for r in scored)[6]
    f = PairFilter(check_lang=False, max_ifd=cut)
    reasons = [f(r) for r in scored]
    assert reasons.count("ifd_too_high") == 6 and f(rows[0]) is None
    # balance keeps the best-scored rows of a capped group
    kept, _ = balance(scored, ["source"], caps={"*": 4}, prefer="-ifd")
    assert sorted(r["meta"]["ifd"] for r in kept) == sorted(r["meta"]["ifd"] for r in scored)[:4]
    # LLM judge through a backend: the untrained model's reply rarely holds a score -> None, kept raw
    b = CachedBackend(TransformersBackend(tiny_model), str(tmp_path / "judge.sqlite"))
    js = judge_scores(rows[:3], b, SMALL)
    assert all("judge_score" in j and "judge_raw" in j for j in js) and b.stats["requests"] == 3
    assert [parse_judge(x) for x in ("4", "Score: 5/5", "我给3分", "10", "2.5", "none")] == [4, 5, 3, None, None,
                                                                                         None]
    judged = with_scores(rows[:3], [{"judge_score": 2}, {"judge_score": 4}, {}])
    g = PairFilter(check_lang=False, min_judge_score=3)
    assert [g(r) for r in judged] == ["judge_score_too_low", None, None]


def test_score_stage_in_a_recipe(tiny_model, tmp_path, shared_corpora):
    from lmrefinery.core import storage
    from lmrefinery.core.recipe import load_recipe
    from lmrefinery.core.runner import Runner
    from lmrefinery.instruct.common import table_to_rows

    S = os.path.join(shared_corpora, "instructions")
    out = str(tmp_path / "run")
    recipe = load_recipe({"name": "score", "output": out, "engine": "local", "report": False,
                          "inputs": [{"name": "seeds", "paths": [f"{S}/self_instruct_seed_tasks.jsonl"],
                                      "format": "self_instruct"}],
                          "stages": ["read", {"stage": "instruct_score", "model_dir": tiny_model, "max_len": 128},
                                     {"stage": "instruct_filter", "check_lang": False, "max_ifd": 1.0}]})
    stats = Runner(recipe, quiet=True).run()
    scored = stats["stages"][1]
    assert scored["kept"] == scored["in"] > 170
    d = os.path.join(out, "stages", "01-instruct_score", "data")
    rows = [r for f in sorted(os.listdir(d)) for r in table_to_rows(storage.read_parquet(os.path.join(d, f)))]
    assert all(r["meta"]["ifd"] > 0 for r in rows)
    filt = stats["stages"][2]
    n_high = sum(1 for r in rows if r["meta"]["ifd"] >= 1.0)
    assert filt["rejected"].get("ifd_too_high", 0) == n_high
