"""Tool-calling SFT: Glaive/LLaMA-Factory ShareGPT files (function_call /
observation turns + a `tools` string) and OpenAI `tool_calls` messages read
into one schema; the call is an assistant turn with loss, the observation a
tool turn without; the tools' schemas are rendered into the system turn by the
chat template (ours for shards and the HF template of exported models, which
agree); `inspect --show-mask` shows the call trained."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lmrefinery.instruct.common import load_records, messages

TOOLS = [{"name": "calculate_area", "description": "Calculate the area of a given shape",
          "parameters": {"type": "object", "properties": {"shape": {"type": "string"},
                                                          "dimensions": {"type": "array", "items": {"type": "number"}}},
                         "required": ["shape", "dimensions"]}},
         {"name": "get_exchange_rate", "description": "汇率查询",
          "parameters": {"type": "object", "properties": {"base": {"type": "string"}, "target": {"type": "string"}}}}]


def _glaive_records() -> list[dict]:
    """Conversations in the layout of LLaMA-Factory's glaive_toolcall_*_demo.json."""
    recs = []
    for shape, dims, area in [("rectangle", [5, 3], 15), ("circle", [4], 50.24), ("square", [7], 49)]:
        recs.append({"conversations": [
            {"from": "human", "value": f"I need the area of a {shape} with dimensions {dims}."},
            {"from": "function_call", "value": json.dumps({"name": "calculate_area",
                                                            "arguments": {"shape": shape, "dimensions": dims}})},
            {"from": "observation", "value": json.dumps({"area": area})},
            {"from": "gpt", "value": f"The area of the {shape} is {area} square units."}],
            "tools": json.dumps(TOOLS)})
    recs.append({"conversations": [{"from": "human", "value": "美元兑人民币的汇率是多少？"},
                                   {"from": "function_call", "value": json.dumps(
                                       {"name": "get_exchange_rate", "arguments": {"base": "USD", "target": "CNY"}},
                                       ensure_ascii=False)},
                                   {"from": "observation", "value": "{\"rate\": 7.1}"},
                                   {"from": "gpt", "value": "当前1美元约兑换7.1元人民币。"}],
                 "tools": json.dumps(TOOLS, ensure_ascii=False)})
    recs.append({"conversations": [{"from": "human", "value": "Write a definition of photoshop."},
                                   {"from": "gpt", "value": "Photoshop is an image editor made by Adobe."}],
                 "tools": "[]"})
    return recs


@pytest.fixture(scope="module")
def tok_dir(shared_corpora, tmp_path_factory):
    from lmrefinery.tokenize.tokenizer import save_hf, train_bpe

    S = os.path.join(shared_corpora, "instructions")
    texts = [json.dumps(r, ensure_ascii=False) for r in json.load(open(os.path.join(S, "alpaca_data_5k_subset.json")))[:800]]
    texts += [json.dumps(TOOLS, ensure_ascii=False), "<tool_call> </tool_call> <tool_response> </tool_response>"]
    return save_hf(train_bpe(texts, vocab_size=1200), str(tmp_path_factory.mktemp("tok") / "tokenizer"))


@pytest.fixture(scope="module")
def glaive_rows(tmp_path_factory):
    p = tmp_path_factory.mktemp("glaive") / "glaive_toolcall_demo.json"
    p.write_text(json.dumps(_glaive_records(), ensure_ascii=False, indent=2))
    return load_records(str(p))      # sniffed as sharegpt


def test_glaive_and_openai_read_into_one_schema(glaive_rows, tmp_path):
    assert len(glaive_rows) == 5
    msgs = messages(glaive_rows[0])
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
    assert msgs[1]["tool_calls"] == [{"name": "calculate_area", "arguments": {"shape": "rectangle",
                                                                              "dimensions": [5, 3]}}]
    assert glaive_rows[0]["meta"]["tools"] == TOOLS and "tools" not in glaive_rows[4]["meta"]   # "[]" -> none
    oai = {"tools": [{"type": "function", "function": t} for t in TOOLS], "messages": [
        {"role": "user", "content": "I need the area of a rectangle with dimensions [5, 3]."},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "calculate_area", "arguments": json.dumps({"shape": "rectangle", "dimensions": [5, 3]})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"area": 15})},
        {"role": "assistant", "content": "The area of the rectangle is 15 square units."}]}
    (tmp_path / "oai.jsonl").write_text(json.dumps(oai) + "\n")
    row = load_records(str(tmp_path / "oai.jsonl"))[0]
    m = messages(row)
    assert m[1]["tool_calls"] == [{"name": "calculate_area", "id": "call_1",
                                   "arguments": {"shape": "rectangle", "dimensions": [5, 3]}}]
    assert row["meta"]["tools"] == TOOLS and m[2]["role"] == "tool"
    from lmrefinery.instruct.filters import PairFilter

    assert all(PairFilter()(r) is None for r in glaive_rows + [row])   # a call is an answer, not an empty one


def _spans(enc, ids, mask, text: str) -> list[int]:
    """Mask values of the tokens that decode inside each occurrence of ``text``."""
    out, pos = [], 0
    pieces = [enc.decode([int(i)]) for i in ids]
    starts = np.cumsum([0] + [len(p) for p in pieces])
    full = "".join(pieces)
    while (k := full.find(text, pos)) >= 0:
        toks = [i for i in range(len(ids)) if starts[i] < k + len(text) and starts[i + 1] > k]
        out.extend(int(mask[i]) for i in toks)
        pos = k + len(text)
    return out


def test_calls_get_loss_observations_do_not(glaive_rows, tok_dir):
    from lmrefinery.tokenize.cli import render
    from lmrefinery.tokenize.tokenizer import load_encoder

    enc = load_encoder(tok_dir)
    call_tokens = call_trained = obs_tokens = obs_trained = 0
    for r in glaive_rows[:4]:
        ids, mask = enc.encode_conversation(messages(r), tools=r["meta"].get("tools"))
        text = enc.decode(ids)
        assert "<tools>\n" + json.dumps(TOOLS[0], ensure_ascii=False) in text         # schema in the system turn
        assert text.startswith("<|system|># Tools")
        for m in messages(r):
            if m.get("tool_calls"):
                c = "<tool_call>\n" + json.dumps({"name": m["tool_calls"][0]["name"],
                                                  "arguments": m["tool_calls"][0]["arguments"]},
                                                 ensure_ascii=False) + "\n</tool_call>"
                got = _spans(enc, ids, mask, c)
                call_tokens += len(got)
                call_trained += sum(got)
            if m["role"] == "tool":
                got = _spans(enc, ids, mask, m["content"])
                obs_tokens += len(got)
                obs_trained += sum(got)
        assert sum(_spans(enc, ids, mask, "# Tools")) == 0                           # the schema is context
        shown = render(enc, ids, mask, True)                                          # inspect --show-mask
        assert "[[<tool_call>" in shown and "<tool_response>" in shown and "[[<tool_response>" not in shown
    assert call_tokens > 40 and call_trained == call_tokens
    assert obs_tokens > 10 and obs_trained == 0


def test_shard_encoder_matches_the_exported_template(glaive_rows, tok_dir):
    from transformers import AutoTokenizer

    from lmrefinery.tokenize.tokenizer import load_encoder

    enc = load_encoder(tok_dir)
    hf = AutoTokenizer.from_pretrained(tok_dir)
    for r in glaive_rows:
        tools = r["meta"].get("tools")
        ours, _ = enc.encode_conversation(messages(r), tools=tools)
        theirs = hf.apply_chat_template(messages(r), tools=tools, tokenize=True)
        theirs = theirs["input_ids"] if hasattr(theirs, "keys") else theirs
        assert list(ours[:-1]) == list(theirs)
    # with a system prompt the tools block is appended to it
    msgs = [{"role": "system", "content": "Be brief."}] + messages(glaive_rows[0])
    ours, _ = enc.encode_conversation(msgs, tools=TOOLS)
    assert enc.decode(ours).startswith("<|system|>Be brief.\n\n# Tools")
    theirs = hf.apply_chat_template(msgs, tools=TOOLS, tokenize=True)
    theirs = theirs["input_ids"] if hasattr(theirs, "keys") else theirs
    assert list(ours[:-1]) == list(theirs)


def test_sft_chat_template_masks_calls_not_observations(glaive_rows, tok_dir):
    from transformers import PreTrainedTokenizerFast

    from lmrefinery.train.chat import CHAT_TEMPLATE, encode_conversation

    tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    tok.chat_template = CHAT_TEMPLATE
    r = glaive_rows[0]
    ids, mask = encode_conversation(tok, messages(r), tools=r["meta"]["tools"])
    trained = tok.decode([i for i, k in zip(ids, mask) if k])
    untrained = tok.decode([i for i, k in zip(ids, mask) if not k])
    assert '<tool_call>\n{"name": "calculate_area", "arguments": {"shape": "rectangle"' in trained
    assert "The area of the rectangle is 15 square units." in trained
    assert '{"area": 15}' in untrained and '{"area": 15}' not in trained
    assert "<tools>" in untrained and '"name": "calculate_area", "description"' in untrained
    # without tools the template renders as before
    plain, pmask = encode_conversation(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
    assert tok.decode(plain) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
