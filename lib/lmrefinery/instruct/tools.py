"""Tool calling in conversations (the Hermes / Qwen / LLaMA-Factory layout).

Stored schema (what the readers produce):
* a function call is an **assistant** turn with ``tool_calls``:
  ``[{"name": str, "arguments": object-or-str, "id"?: str}]`` and optional text
  in ``content`` - it gets loss, like any assistant turn;
* an observation (the function's result) is a **tool** turn - never loss;
* the available functions are ``meta["tools"]``: a list of JSON schemas
  (``{"name", "description", "parameters"}``; OpenAI's ``{"type": "function",
  "function": {...}}`` wrappers are unwrapped).

Rendering (``lower_messages``) turns that into plain role/content turns, the
same text the Jinja chat templates (``tokenize.tokenizer.chat_template`` and
``train.chat.CHAT_TEMPLATE``) produce from ``messages`` + ``tools``:
the tools block is appended to the system prompt (a system turn is added when
there is none), each call is ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``
after the assistant's text, each observation is wrapped in
``<tool_response>\\n...\\n</tool_response>``.
"""
from __future__ import annotations

import json
from typing import Any

TOOLS_HEADER = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_FOOTER = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>")


def _maybe_json(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def normalise_tools(tools: Any) -> list[dict]:
    """A tools list from a JSON string or a list; OpenAI ``{"type": "function", "function": f}`` -> f."""
    tools = _maybe_json(tools)
    if not tools:
        return []
    if not isinstance(tools, list):
        raise ValueError(f"tools must be a list of function schemas, got {type(tools).__name__}")
    out = []
    for t in tools:
        t = _maybe_json(t)
        if isinstance(t, dict) and isinstance(t.get("function"), dict):
            t = t["function"]
        if not isinstance(t, dict) or "name" not in t:
            raise ValueError(f"a tool schema without a name: {str(t)[:80]}")
        out.append(t)
    return out


def normalise_call(call: Any) -> dict:
    """One call from Glaive/ShareGPT text, OpenAI ``tool_calls`` items or legacy ``function_call``."""
    call = _maybe_json(call)
    if isinstance(call, dict) and isinstance(call.get("function"), dict):
        out = {"name": call["function"].get("name"), "arguments": _maybe_json(call["function"].get("arguments"))}
        if call.get("id"):
            out["id"] = call["id"]
        return out
    if isinstance(call, dict) and "name" in call:
        out = {"name": call["name"], "arguments": _maybe_json(call.get("arguments", call.get("parameters", {})))}
        if call.get("id"):
            out["id"] = call["id"]
        return out
    raise ValueError(f"not a function call: {str(call)[:80]}")


def calls_from_text(value: str) -> list[dict]:
    """A ShareGPT ``function_call`` turn: one JSON object or a list of them."""
    v = _maybe_json(value)
    if isinstance(v, list):
        return [normalise_call(c) for c in v]
    return [normalise_call(v)]


def call_text(call: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": call["name"], "arguments": call.get("arguments")},
                                        ensure_ascii=False) + "\n</tool_call>"


def tools_block(tools: list[dict]) -> str:
    return TOOLS_HEADER + "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools) + TOOLS_FOOTER


def lower_messages(messages: list[dict], tools: Any = None) -> list[dict]:
    """Plain ``{"role", "content"}`` turns with tools, calls and observations rendered as text."""
    tools = normalise_tools(tools)
    out = []
    msgs = list(messages)
    if tools:
        if msgs and msgs[0].get("role") == "system":
            sys_text = msgs.pop(0).get("content") or ""
            out.append({"role": "system", "content": sys_text + "\n\n" + tools_block(tools)})
        else:
            out.append({"role": "system", "content": tools_block(tools)})
    for m in msgs:
        role, content = m["role"], m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            parts = ([content] if content else []) + [call_text(normalise_call(c)) for c in m["tool_calls"]]
            out.append({"role": "assistant", "content": "\n".join(parts)})
        elif role == "tool":
            out.append({"role": "tool", "content": "<tool_response>\n" + content + "\n</tool_response>"})
        else:
            out.append({"role": role, "content": content})
    return out


def has_tools(messages: list[dict]) -> bool:
    return any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)
