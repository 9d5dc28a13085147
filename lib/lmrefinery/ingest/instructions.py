"""Instruction datasets -> conversation rows.

Every record becomes one (or, for Self-Instruct instances and bilingual
records, several) conversations built with ``conversation_doc``: a list of
``{"role": system|user|assistant|tool, "content": ...}`` messages in
``meta["messages"]``, plus ``category``, ``orig_id``, ``licence`` (from the
recipe input), ``lang`` when known, and ``pair_id`` linking the two halves of a
bilingual record. Files may be a JSON array or JSON Lines, whatever their
extension says (several public sets ship JSONL named ``.json``).

Formats: alpaca, self_instruct, dolly, sharegpt, openai_messages, belle,
alpaca_bilingual, conversation (field-mapped).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import Field

from ..core import storage
from ..core.schema import conversation_doc, doc_id
from .formats import LineOptions, Quarantine, Record, json_array_items, reader, snippet

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "tool", "tool": "tool",
                  "function": "tool", "tool_call": "assistant", "tool_response": "tool"}
# speakers whose turn is a function call: an assistant turn with tool_calls (it gets loss)
CALL_SPEAKERS = {"function_call", "tool_call"}
OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
                "tool": "tool", "function": "tool"}


class BadRecord(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


# ------------------------------------------------------------ containers
def iter_objects(spec: dict) -> Iterator[tuple[str, Any] | Quarantine]:
    """(pos, object) for a JSON array or JSON Lines file (sniffed)."""
    o = spec.get("options") or {}
    rel = spec["rel"]
    rng = spec.get("range")
    if not rng:
        with storage.open_read(spec["path"]) as f:
            head = f.read(4096)
        first = head.lstrip()[:1]
        if first == b"\xef":  # BOM
            first = head.lstrip()[3:4]
        if first in (b"[", b"{") and _is_single_json(spec, head):
            yield from _iter_array(spec)
            return
    from .lines import iter_line_range

    max_bytes = int(o.get("max_doc_bytes", 64 << 20))
    for pos, off, line, err in iter_line_range(spec, max_bytes):
        if err:
            yield Quarantine(err.split(":", 1)[0], pos, f"{rel} {pos}: {err}", snippet(line) if line else None,
                             {"offset": off})
            continue
        assert line is not None  # iter_line_range: a line or an error
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except UnicodeDecodeError as e:
            yield Quarantine("invalid_utf8", pos, f"{rel} {pos}: {e}", snippet(line), {"offset": off})
            continue
        except ValueError as e:
            yield Quarantine("malformed_json", pos, f"{rel} {pos}: {e}", snippet(line), {"offset": off})
            continue
        yield pos, obj


def _is_single_json(spec: dict, head: bytes) -> bool:
    """A JSON array (or a dict holding one) rather than JSON Lines."""
    s = head.lstrip().lstrip(b"\xef\xbb\xbf")
    if s[:1] == b"[":
        return True
    # '{' : JSONL of objects unless the first line alone is not a complete JSON value
    first_line = s.split(b"\n", 1)[0]
    try:
        json.loads(first_line)
        return False
    except ValueError:
        return True


def _iter_array(spec: dict) -> Iterator[tuple[str, Any] | Quarantine]:
    key = (spec.get("options") or {}).get("records_key")
    for item in json_array_items(spec, key, encoding="utf-8-sig", first_list=True):
        yield item if isinstance(item, Quarantine) else (f"item:{item[0]}", item[1])


# ------------------------------------------------------------ helpers
def _s(v) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def _need(rec: dict, key: str) -> str:
    if key not in rec or rec[key] is None:
        raise BadRecord(f"missing_field:{key}", f"record has no {key!r}")
    v = _s(rec[key]).strip()
    if not v:
        raise BadRecord("empty_turn", f"field {key!r} is empty")
    return v


def _user(instruction: str, inp: str) -> str:
    inp = (inp or "").strip()
    return f"{instruction}\n\n{inp}" if inp else instruction


def _user_msg(instruction: str, inp: str) -> dict:
    """The user turn: instruction and input joined for training, the input kept
    on the message (``input``) so Alpaca exports can give it back."""
    m = {"role": "user", "content": _user(instruction, inp)}
    if (inp or "").strip():
        m["input"] = inp.strip()
    return m


def _with_system(rec: dict, msgs: list[dict]) -> list[dict]:
    sys_prompt = _s(rec.get("system")).strip() if isinstance(rec, dict) else ""
    if sys_prompt:
        return [{"role": "system", "content": sys_prompt}] + msgs
    return msgs


def _history(rec: dict) -> list[dict]:
    """Alpaca-style `history`: [[user, assistant], ...] before the current turn."""
    out = []
    for pair in rec.get("history") or []:
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            out += [{"role": "user", "content": _s(pair[0])}, {"role": "assistant", "content": _s(pair[1])}]
    return out


Conv = tuple[str, list[dict[str, Any]] | BadRecord, dict[str, Any]]  # (suffix for pos/id, messages or why not, meta)


# ------------------------------------------------------------ per format
def conv_alpaca(rec: dict, o: dict) -> list[Conv]:
    msgs = _history(rec) + [_user_msg(_need(rec, "instruction"), _s(rec.get("input"))),
                            {"role": "assistant", "content": _need(rec, "output")}]
    return [("", _with_system(rec, msgs), {"category": rec.get("category"), "orig_id": rec.get("id")})]


def conv_belle(rec: dict, o: dict) -> list[Conv]:
    """BELLE training files (instruction/input/output) and its eval set
    (question/std_answer/class, e.g. eval_set.json)."""
    q_key = "instruction" if "instruction" in rec else "question"
    a_key = next((k for k in ("output", "std_answer", "answer") if k in rec), "output")
    instr = _need(rec, q_key)
    msgs = [_user_msg(instr, _s(rec.get("input"))), {"role": "assistant", "content": _need(rec, a_key)}]
    return [("", _with_system(rec, msgs), {"orig_id": rec.get("id"), "category": rec.get("category", rec.get("class")),
                                            "embedded_input": "\n" in instr.strip()})]


def conv_self_instruct(rec: dict, o: dict) -> list[Conv]:
    instr = _need(rec, "instruction")
    inst = rec.get("instances")
    if not isinstance(inst, list) or not inst:
        raise BadRecord("missing_field:instances", "record has no instances")
    out: list[Conv] = []
    for k, it in enumerate(inst):
        if not isinstance(it, dict):
            raise BadRecord("malformed_record", f"instance {k} is not an object")
        msgs = [_user_msg(instr, _s(it.get("input"))), {"role": "assistant", "content": _need(it, "output")}]
        oid = rec.get("id")
        out.append((f"#{k}", msgs, {"orig_id": f"{oid}#{k}" if len(inst) > 1 else oid, "category": rec.get("name"),
                                     "is_classification": bool(rec.get("is_classification")), "instance": k}))
    return out


def conv_dolly(rec: dict, o: dict) -> list[Conv]:
    ctx = _s(rec.get("context")).strip()
    instr = _need(rec, "instruction")
    msgs = [_user_msg(instr, ctx), {"role": "assistant", "content": _need(rec, "response")}]
    return [("", msgs, {"category": rec.get("category"), "orig_id": rec.get("id"), "has_context": bool(ctx)})]


def conv_sharegpt(rec: dict, o: dict) -> list[Conv]:
    key = o.get("messages_key") or next((k for k in ("conversations", "conversation", "items", "messages")
                                          if k in rec), None)
    turns = rec.get(key) if key else None
    if not isinstance(turns, list) or not turns:
        raise BadRecord("missing_field:conversations", "record has no conversations list")
    roles = dict(SHAREGPT_ROLES, **(o.get("role_map") or {}))
    msgs = []
    for k, t in enumerate(turns):
        if not isinstance(t, dict):
            raise BadRecord("malformed_record", f"turn {k} is not an object")
        frm = str(t.get("from", t.get("role", ""))).strip().lower()
        if frm not in roles:
            raise BadRecord("unknown_role", f"turn {k}: unknown speaker {frm!r}")
        content = _s(t.get("value", t.get("content")))
        if frm in CALL_SPEAKERS:
            msgs.append(_call_turn(content, k))
        else:
            msgs.append({"role": roles[frm], "content": content})
    if not any(m["role"] == "assistant" for m in msgs):
        raise BadRecord("no_assistant_turn", "conversation has no assistant turn")
    meta = {"orig_id": rec.get("id"), "category": rec.get("category")}
    meta.update(_tools_meta(rec))
    return [("", _with_system(rec, msgs), meta)]


def _call_turn(text: str, k: int) -> dict:
    from ..instruct.tools import calls_from_text

    try:
        return {"role": "assistant", "content": "", "tool_calls": calls_from_text(text)}
    except ValueError as e:
        raise BadRecord("malformed_tool_call", f"turn {k}: {e}") from None


def _tools_meta(rec: dict) -> dict:
    from ..instruct.tools import normalise_tools

    if not rec.get("tools"):
        return {}
    try:
        tools = normalise_tools(rec["tools"])
    except ValueError as e:
        raise BadRecord("malformed_tools", str(e)) from None
    return {"tools": tools} if tools else {}


def conv_openai(rec: dict, o: dict) -> list[Conv]:
    turns = rec.get("messages")
    if not isinstance(turns, list) or not turns:
        raise BadRecord("missing_field:messages", "record has no messages list")
    msgs = []
    for k, t in enumerate(turns):
        if not isinstance(t, dict):
            raise BadRecord("malformed_record", f"message {k} is not an object")
        role = OPENAI_ROLES.get(str(t.get("role", "")).lower())
        if role is None:
            raise BadRecord("unknown_role", f"message {k}: unknown role {t.get('role')!r}")
        c = t.get("content")
        if isinstance(c, list):  # content parts
            c = "\n".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type", "text") == "text")
        m: dict[str, Any] = {"role": role, "content": _s(c)}
        calls = t.get("tool_calls") or ([t["function_call"]] if t.get("function_call") else [])
        if calls and role == "assistant":
            from ..instruct.tools import normalise_call

            try:
                m["tool_calls"] = [normalise_call(x) for x in calls]
            except ValueError as e:
                raise BadRecord("malformed_tool_call", f"message {k}: {e}") from None
        for extra in ("name", "tool_call_id"):
            if t.get(extra) is not None:
                m[extra] = t[extra]
        msgs.append(m)
    meta = {"orig_id": rec.get("id"), "category": rec.get("category")}
    meta.update(_tools_meta(rec))
    return [("", msgs, meta)]


def conv_bilingual(rec: dict, o: dict) -> list[Conv]:
    prefix = o.get("en_prefix", "en_")
    other = o.get("other_lang", "zh")
    en = {k[len(prefix):]: v for k, v in rec.items() if k.startswith(prefix)}
    native = {k: v for k, v in rec.items() if not k.startswith(prefix)}
    out: list[Conv] = []
    for lang, r in (("en", en), (other, native)):
        try:
            msgs = [_user_msg(_need(r, "instruction"), _s(r.get("input"))),
                    {"role": "assistant", "content": _need(r, "output")}]
        except BadRecord as e:  # one bad half does not take the other with it
            out.append((f":{lang}", e, {"lang": lang}))
            continue
        out.append((f":{lang}", msgs, {"lang": lang, "orig_id": rec.get("id")}))
    return out


def conv_mapped(rec: dict, o: dict, fields: dict) -> list[Conv]:
    """Field mapping: either `messages` (a list; role/content keys and a role map
    in options) or `prompt` + `response` (+ `system`, `input`, `history`)."""
    def get(path):
        v: Any = rec
        for p in path.split("."):
            if not isinstance(v, dict) or p not in v:
                return None
            v = v[p]
        return v

    meta = {k: get(fields[k]) for k in ("category", "lang") if k in fields}
    meta["orig_id"] = get(fields["id"]) if "id" in fields else rec.get("id")
    if "messages" in fields:
        turns = get(fields["messages"])
        if not isinstance(turns, list) or not turns:
            raise BadRecord(f"missing_field:{fields['messages']}", "no message list")
        rk, ck = o.get("role_key", "role"), o.get("content_key", "content")
        roles = dict(SHAREGPT_ROLES, **OPENAI_ROLES, **(o.get("role_map") or {}))
        msgs = []
        for k, t in enumerate(turns):
            role = roles.get(str((t or {}).get(rk, "")).lower())
            if role is None:
                raise BadRecord("unknown_role", f"turn {k}: unknown role {(t or {}).get(rk)!r}")
            msgs.append({"role": role, "content": _s(t.get(ck))})
    else:
        if "prompt" not in fields or "response" not in fields:
            raise ValueError("format 'conversation' needs fields.messages or fields.prompt + fields.response")
        p, r = get(fields["prompt"]), get(fields["response"])
        if p is None or not _s(p).strip():
            raise BadRecord(f"missing_field:{fields['prompt']}", "no prompt")
        if r is None or not _s(r).strip():
            raise BadRecord(f"missing_field:{fields['response']}", "no response")
        inp = _s(get(fields["input"])) if "input" in fields else ""
        msgs = [{"role": "user", "content": _user(_s(p), inp)}, {"role": "assistant", "content": _s(r)}]
        if "system" in fields and _s(get(fields["system"])).strip():
            msgs.insert(0, {"role": "system", "content": _s(get(fields["system"]))})
    return [("", msgs, meta)]


class InstructionOptions(LineOptions):
    """``inputs[].options`` of the instruction formats (each applies where it says)."""
    records_key: str | None = Field(None, description="key of the record array inside a JSON object")
    lang: str | None = Field(None, description="language of the records when they do not say")
    messages_key: str | None = Field(None, description="sharegpt/conversation: key of the turn list")
    role_map: dict[str, str] = Field(default_factory=dict, description="extra source role -> our role")
    role_key: str = Field("role", description="conversation: role key of a turn")
    content_key: str = Field("content", description="conversation: content key of a turn")
    en_prefix: str = Field("en_", description="alpaca_bilingual: prefix of the English fields")
    other_lang: str = Field("zh", description="alpaca_bilingual: language of the unprefixed fields")


FORMATS: dict[str, Callable] = {
    "alpaca": conv_alpaca, "self_instruct": conv_self_instruct, "dolly": conv_dolly, "sharegpt": conv_sharegpt,
    "openai_messages": conv_openai, "belle": conv_belle, "alpaca_bilingual": conv_bilingual,
}


def read_instruction_file(spec: dict, fmt: str) -> Iterator[Record | Quarantine]:
    """Records and quarantines of one file in an instruction format (for the instruct CLI)."""
    yield from _read(spec, fmt)


def _read(spec: dict, fmt: str) -> Iterator[Record | Quarantine]:
    o = spec.get("options") or {}
    rel = spec["rel"]
    lang = o.get("lang")
    for item in iter_objects(spec):
        if isinstance(item, Quarantine):
            yield item
            continue
        pos, rec = item
        if not isinstance(rec, dict):
            yield Quarantine("not_an_object", pos, f"{rel} {pos}: JSON {type(rec).__name__}", snippet(_s(rec)))
            continue
        try:
            convs = conv_mapped(rec, o, spec.get("fields") or {}) if fmt == "conversation" else FORMATS[fmt](rec, o)
            docs: list[tuple[str, Any]] = []
            for suffix, msgs, meta in convs:
                if isinstance(msgs, BadRecord):
                    docs.append((pos + suffix, msgs))
                    continue
                meta = {k: v for k, v in meta.items() if v is not None}
                meta.setdefault("lang", lang)
                if spec.get("licence"):
                    meta["licence"] = spec["licence"]
                if len(convs) > 1 and fmt == "alpaca_bilingual":
                    meta["pair_id"] = doc_id(spec["input"], rel, pos)
                docs.append((pos + suffix, conversation_doc(msgs, format=fmt, **meta)))
        except BadRecord as e:
            yield Quarantine(e.reason, pos, f"{rel} {pos}: {e}", snippet(json.dumps(rec, ensure_ascii=False)))
            continue
        except ValueError as e:  # bad role from conversation_doc, bad mapping
            yield Quarantine("malformed_record", pos, f"{rel} {pos}: {e}",
                             snippet(json.dumps(rec, ensure_ascii=False)))
            continue
        for p, d in docs:
            if isinstance(d, BadRecord):
                yield Quarantine(d.reason, p, f"{rel} {p}: {d}", snippet(json.dumps(rec, ensure_ascii=False)))
            else:
                yield Record(d, p)


def _make(fmt: str):
    def read(spec: dict):
        yield from _read(spec, fmt)
    read.__name__ = f"read_{fmt}"
    read.__doc__ = f"{fmt} instruction records -> conversations"
    return read


for _fmt in list(FORMATS) + ["conversation"]:
    reader(_fmt, options=InstructionOptions)(_make(_fmt))
