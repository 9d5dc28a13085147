"""The chat format: a ChatML-style Jinja template stored with every exported model,
and the one function that turns a conversation into token ids plus an
assistant-only loss mask (what instruction shards hold)."""
from __future__ import annotations

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# {% generation %} marks assistant content for `return_assistant_tokens_mask`; the
# end-of-turn token is inside it, so the model learns to stop.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{{ '<|im_start|>' + m['role'] + '\\n' }}"
    "{%- if m['role'] == 'assistant' -%}"
    "{% generation %}{{ m['content'] | trim + '<|im_end|>' }}{% endgeneration %}"
    "{%- else -%}"
    "{{ m['content'] | trim + '<|im_end|>' }}"
    "{%- endif -%}"
    "{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def encode_conversation(tok, messages: list[dict], max_len: int | None = None) -> tuple[list[int], list[int]]:
    """(ids, mask) for a conversation: mask[i] = 1 where token i is assistant content or
    its end-of-turn token. Uses the tokenizer's chat template (ours by default)."""
    msgs = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                  chat_template=tok.chat_template or CHAT_TEMPLATE)
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    if max_len:
        ids, mask = ids[:max_len], mask[:max_len]
    return ids, mask


def prompt_ids(tok, messages: list[dict]) -> list[int]:
    msgs = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
    out = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=True,
                                  chat_template=tok.chat_template or CHAT_TEMPLATE)
    return list(out["input_ids"])
