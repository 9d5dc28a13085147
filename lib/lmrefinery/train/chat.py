"""The chat format: a ChatML-style Jinja template stored with every exported model,
and the one function that turns a conversation into token ids plus an
assistant-only loss mask (what instruction shards hold)."""
from __future__ import annotations

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# {% generation %} marks assistant content for `return_assistant_tokens_mask`; the
# end-of-turn token is inside it, so the model learns to stop. Function calls are
# assistant content (inside the generation block, so they get loss); tool results
# are a tool turn outside it; the tools' schemas go into the system turn (the
# Hermes / Qwen layout, see instruct/tools.py).
CHAT_TEMPLATE = (
    "{%- set ns = namespace(msgs=messages) -%}"
    "{%- if tools -%}"
    "{{ '<|im_start|>system\\n' }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{ messages[0]['content'] | trim + '\\n\\n' }}{%- set ns.msgs = messages[1:] -%}{%- endif -%}"
    "{{ TOOLS_HEADER }}"
    "{%- for t in tools -%}{{ '\\n' + ((t['function'] if t['function'] is defined else t) | tojson) }}{%- endfor -%}"
    "{{ TOOLS_FOOTER + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- for m in ns.msgs -%}"
    "{{ '<|im_start|>' + m['role'] + '\\n' }}"
    "{%- if m['role'] == 'assistant' -%}"
    "{% generation %}{{ (m['content'] or '') | trim }}"
    "{%- for tc in (m['tool_calls'] or []) -%}"
    "{%- set f = tc['function'] if tc['function'] is defined else tc -%}"
    "{%- if (m['content'] or '') | trim or not loop.first -%}{{ '\\n' }}{%- endif -%}"
    "{{ '<tool_call>\\n' + ({'name': f['name'], 'arguments': f['arguments']} | tojson) + '\\n</tool_call>' }}"
    "{%- endfor -%}"
    "{{ '<|im_end|>' }}{% endgeneration %}"
    "{%- elif m['role'] == 'tool' -%}"
    "{{ '<tool_response>\\n' + (m['content'] or '') | trim + '\\n</tool_response><|im_end|>' }}"
    "{%- else -%}"
    "{{ (m['content'] or '') | trim + '<|im_end|>' }}"
    "{%- endif -%}"
    "{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def _with_tool_text(template: str) -> str:
    import json

    from ..instruct.tools import TOOLS_FOOTER, TOOLS_HEADER

    return template.replace("TOOLS_HEADER", json.dumps(TOOLS_HEADER)).replace("TOOLS_FOOTER", json.dumps(TOOLS_FOOTER))


CHAT_TEMPLATE = _with_tool_text(CHAT_TEMPLATE)


def _msgs(messages: list[dict]) -> list[dict]:
    out = []
    for m in messages:
        d = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            from ..instruct.tools import normalise_call

            d["tool_calls"] = [normalise_call(c) for c in m["tool_calls"]]
        out.append(d)
    return out


def encode_conversation(tok, messages: list[dict], max_len: int | None = None,
                        tools: list | None = None) -> tuple[list[int], list[int]]:
    """(ids, mask) for a conversation: mask[i] = 1 where token i is assistant content (its text
    and function calls) or its end-of-turn token; never on tool results. Uses the tokenizer's
    chat template (ours by default); ``tools`` are rendered into the system turn."""
    from ..instruct.tools import normalise_tools

    out = tok.apply_chat_template(_msgs(messages), tools=normalise_tools(tools) or None, tokenize=True,
                                  return_dict=True, return_assistant_tokens_mask=True,
                                  chat_template=tok.chat_template or CHAT_TEMPLATE)
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    if max_len:
        ids, mask = ids[:max_len], mask[:max_len]
    return ids, mask


def prompt_ids(tok, messages: list[dict], tools: list | None = None) -> list[int]:
    from ..instruct.tools import normalise_tools

    out = tok.apply_chat_template(_msgs(messages), tools=normalise_tools(tools) or None, tokenize=True,
                                  add_generation_prompt=True, return_dict=True,
                                  chat_template=tok.chat_template or CHAT_TEMPLATE)
    return list(out["input_ids"])
