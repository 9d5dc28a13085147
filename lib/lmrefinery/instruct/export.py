"""Export instruction records.

Formats (``write(rows, path, fmt)`` / ``read(path, fmt)``, round-trip safe):
* ``alpaca`` - JSONL ``{"instruction", "input", "output", "system"?, "history"?}``;
  ``input`` is the record's own input (kept on the user turn by the readers),
  a multi-turn conversation keeps its earlier turns in ``history`` as
  [[user, assistant], ...] (the LLaMA-Factory convention);
* ``messages`` - JSONL ``{"messages": [{"role", "content"}], "id", ...}`` (OpenAI fine-tuning);
* ``json`` - one JSON array of the alpaca objects;
* ``csv`` - columns id, instruction, input, output (multi-turn: messages JSON in ``messages``);
* ``txt`` - one conversation per line, its turns joined by the separator
  (default ``<sep>``): ``user<sep>assistant[<sep>user<sep>assistant...]``; a
  system prompt makes the field count odd and comes first. Backslash, CR, LF
  and every other line separator (VT, FF, FS, GS, RS, NEL, U+2028, U+2029) are
  escaped (``\\\\``, ``\\r``, ``\\n``, ``\\uXXXX``), so a line is a record for any
  reader. Conversations with tool turns, turns out of user/assistant order or
  no final answer cannot be written as txt: ``txt_line`` raises
  ``NotRepresentable`` naming the record, ``write`` leaves them out and counts
  them (``skipped_not_representable`` in the version manifest's file list);
* ``parquet`` - the document rows themselves (meta JSON included), the input the
  tokenisation stage turns into instruction shards with loss masks.
"""
from __future__ import annotations

import csv
import io
import json

from ..core import storage
from ..core.schema import meta_loads
from .common import messages, rows_to_table, table_to_rows

FORMATS = ("alpaca", "messages", "json", "csv", "txt", "parquet")
EXT = {"alpaca": "alpaca.jsonl", "messages": "messages.jsonl", "json": "json", "csv": "csv", "txt": "txt",
       "parquet": "parquet"}


def split_input(user: dict) -> tuple[str, str]:
    """(instruction, input) of a user turn: the reader's ``input`` when the
    content still ends with it, else the whole content and no input."""
    content, inp = user.get("content") or "", user.get("input") or ""
    if inp and content.endswith("\n\n" + inp):
        return content[: -len(inp) - 2], inp
    return content, ""


def to_alpaca(row: dict) -> dict:
    msgs = messages(row)
    system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
    turns = [m for m in msgs if m["role"] in ("user", "assistant")]
    pairs, cur = [], None
    for m in turns:
        if m["role"] == "user":
            if cur is not None:
                pairs.append((cur, {"content": ""}))
            cur = m
        else:
            pairs.append((cur or {"content": ""}, m))
            cur = None
    if cur is not None:
        pairs.append((cur, {"content": ""}))
    last_user, last_out = pairs[-1] if pairs else ({"content": ""}, {"content": ""})
    ins, inp = split_input(last_user)
    d = {"id": row.get("id"), "instruction": ins, "input": inp, "output": last_out.get("content") or ""}
    if system:
        d["system"] = system
    if len(pairs) > 1:
        d["history"] = [[u.get("content") or "", a.get("content") or ""] for u, a in pairs[:-1]]
    return d


def from_alpaca(d: dict) -> list[dict]:
    msgs = []
    if d.get("system"):
        msgs.append({"role": "system", "content": d["system"]})
    for u, a in d.get("history") or []:
        msgs.append({"role": "user", "content": u})
        msgs.append({"role": "assistant", "content": a})
    user = {"role": "user", "content": d.get("instruction", "")}
    if d.get("input"):
        user = {"role": "user", "content": f"{user['content']}\n\n{d['input']}", "input": d["input"]}
    msgs.append(user)
    msgs.append({"role": "assistant", "content": d.get("output", "")})
    return msgs


# every character str.splitlines() breaks on; JSON writes the ASCII ones as escapes already
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def _safe_json(text: str) -> str:
    """JSON text with NEL, U+2028 and U+2029 escaped, so line-based readers see one record per line."""
    return text.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _json_line(obj: dict) -> str:
    return _safe_json(json.dumps(obj, ensure_ascii=False)) + "\n"


def escape_txt(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch in _LINE_BREAKS:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


class NotRepresentable(ValueError):
    """A conversation a format cannot hold (txt: tool turns, turns out of order, no final answer)."""


def txt_line(row: dict, sep: str) -> str:
    """One conversation as ``[system<sep>]user<sep>assistant[<sep>user<sep>assistant...]``."""
    msgs = _plain_messages(row)
    fields = []
    if msgs and msgs[0]["role"] == "system":
        fields.append(msgs.pop(0)["content"])
    expected = "user"
    for m in msgs:
        if m["role"] != expected:
            raise NotRepresentable(f"record {row.get('id')}: a {m['role']} turn where txt expects {expected}; "
                             "txt holds system? + alternating user/assistant turns (use messages or parquet)")
        fields.append(m["content"])
        expected = "assistant" if expected == "user" else "user"
    if expected != "user" or not msgs:
        raise NotRepresentable(f"record {row.get('id')}: txt needs a conversation ending with an assistant turn")
    esc = [escape_txt(x) for x in fields]
    if any(sep in x for x in esc):
        raise ValueError(f"record {row.get('id')}: text contains the separator {sep!r}; choose another")
    return sep.join(esc)


def _plain_messages(row: dict) -> list[dict]:
    return [{"role": m["role"], "content": m.get("content") or ""} for m in messages(row)]


def has_tool_turns(row: dict) -> bool:
    return any(m["role"] == "tool" or m.get("tool_calls") for m in messages(row))


def write(rows: list[dict], path: str, fmt: str, sep: str = "<sep>") -> dict:
    """Write ``rows`` in ``fmt``. Alpaca-shaped formats (alpaca, json) cannot hold
    tool calls: such conversations are left out and counted in
    ``skipped_tool_conversations`` (messages, csv and parquet keep them)."""
    if fmt == "parquet":
        return storage.write_parquet(rows_to_table(rows), path)
    skipped = 0
    if fmt in ("alpaca", "json"):
        kept = [r for r in rows if not has_tool_turns(r)]
        skipped, rows = len(rows) - len(kept), kept
    n_rows = len(rows)
    lines: list[str] = []
    if fmt == "txt":
        for r in rows:
            try:
                lines.append(txt_line(r, sep))
            except NotRepresentable:
                skipped += 1
    if fmt == "alpaca":
        data = "".join(_json_line(to_alpaca(r)) for r in rows)
    elif fmt == "messages":
        data = "".join(_json_line({"id": r.get("id"), "messages": _plain_messages(r)}) for r in rows)
    elif fmt == "json":
        data = _safe_json(json.dumps([to_alpaca(r) for r in rows], ensure_ascii=False, indent=1))
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "instruction", "input", "output", "messages"])
        for r in rows:
            a = to_alpaca(r)
            multi = "history" in a or "system" in a or has_tool_turns(r)
            w.writerow([r.get("id"), a["instruction"], a["input"], a["output"],
                        json.dumps(_plain_messages(r), ensure_ascii=False) if multi else ""])
        data = buf.getvalue()
    elif fmt == "txt":
        data = "".join(line + "\n" for line in lines)
        n_rows = len(lines)
    else:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    raw = data.encode("utf-8")
    storage.write_bytes(path, raw)
    info = {"rows": n_rows, "bytes": len(raw), "sha256": storage.sha256(raw)}
    if skipped:
        info["skipped_tool_conversations" if fmt != "txt" else "skipped_not_representable"] = skipped
    return info


def read(path: str, fmt: str, sep: str = "<sep>") -> list[dict]:
    """Back to [{"id", "messages"}] (parquet: full rows with meta)."""
    if fmt == "parquet":
        rows = table_to_rows(storage.read_parquet(path))
        return [{"id": r["id"], "messages": _plain_messages(r), "row": r} for r in rows]
    text = storage.read_bytes(path).decode("utf-8")
    lines = [line for line in text.split("\n") if line.strip()]
    if fmt == "alpaca":
        return [{"id": d.get("id"), "messages": from_alpaca(d)} for d in map(json.loads, lines)]
    if fmt == "messages":
        return [json.loads(line) for line in lines]
    if fmt == "json":
        return [{"id": d.get("id"), "messages": from_alpaca(d)} for d in json.loads(text)]
    if fmt == "csv":
        out = []
        for d in csv.DictReader(io.StringIO(text)):
            msgs = json.loads(d["messages"]) if d.get("messages") else from_alpaca(d)
            out.append({"id": d["id"], "messages": msgs})
        return out
    if fmt == "txt":
        return [{"id": None, "messages": parse_txt_line(line, sep)} for line in text.split("\n") if line]
    raise ValueError(f"unknown export format {fmt!r}")


def parse_txt_line(line: str, sep: str) -> list[dict]:
    fields = [_unescape(x) for x in line.split(sep)]
    msgs = []
    if len(fields) % 2:
        msgs.append({"role": "system", "content": fields.pop(0)})
    for k, f in enumerate(fields):
        msgs.append({"role": "user" if k % 2 == 0 else "assistant", "content": f})
    return msgs


def _unescape(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            nxt = s[i + 1]
            if nxt == "u" and i + 6 <= len(s):
                out.append(chr(int(s[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append({"n": "\n", "r": "\r"}.get(nxt, nxt))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


__all__ = ["FORMATS", "EXT", "write", "read", "to_alpaca", "from_alpaca", "meta_loads"]
