"""Export instruction records.

Formats (``write(rows, path, fmt)`` / ``read(path, fmt)``, round-trip safe):
* ``alpaca`` - JSONL ``{"instruction", "input", "output", "system"?, "history"?}``;
  a multi-turn conversation keeps its earlier turns in ``history`` as
  [[user, assistant], ...] (the LLaMA-Factory convention);
* ``messages`` - JSONL ``{"messages": [{"role", "content"}], "id", ...}`` (OpenAI fine-tuning);
* ``json`` - one JSON array of the alpaca objects;
* ``csv`` - columns id, instruction, input, output (multi-turn: messages JSON in ``messages``);
* ``txt`` - one record per line, ``instruction<sep>output`` with newlines
  written as the two characters ``\\n`` (separator configurable, default ``<sep>``);
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


def to_alpaca(row: dict) -> dict:
    msgs = messages(row)
    system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
    turns = [m for m in msgs if m["role"] in ("user", "assistant")]
    pairs, cur = [], None
    for m in turns:
        if m["role"] == "user":
            if cur is not None:
                pairs.append((cur, ""))
            cur = m["content"]
        else:
            pairs.append((cur or "", m["content"]))
            cur = None
    if cur is not None:
        pairs.append((cur, ""))
    ins, out = pairs[-1] if pairs else ("", "")
    meta = row.get("meta") or {}
    d = {"id": row.get("id"), "instruction": ins, "input": "", "output": out}
    if system:
        d["system"] = system
    if len(pairs) > 1:
        d["history"] = [list(p) for p in pairs[:-1]]
    return d


def from_alpaca(d: dict) -> list[dict]:
    msgs = []
    if d.get("system"):
        msgs.append({"role": "system", "content": d["system"]})
    for u, a in d.get("history") or []:
        msgs.append({"role": "user", "content": u})
        msgs.append({"role": "assistant", "content": a})
    user = d.get("instruction", "")
    if d.get("input"):
        user = f"{user}\n\n{d['input']}"
    msgs.append({"role": "user", "content": user})
    msgs.append({"role": "assistant", "content": d.get("output", "")})
    return msgs


def _plain_messages(row: dict) -> list[dict]:
    return [{"role": m["role"], "content": m.get("content") or ""} for m in messages(row)]


def write(rows: list[dict], path: str, fmt: str, sep: str = "<sep>") -> dict:
    if fmt == "parquet":
        return storage.write_parquet(rows_to_table(rows), path)
    if fmt == "alpaca":
        data = "".join(json.dumps(to_alpaca(r), ensure_ascii=False) + "\n" for r in rows)
    elif fmt == "messages":
        data = "".join(json.dumps({"id": r.get("id"), "messages": _plain_messages(r)}, ensure_ascii=False) + "\n"
                       for r in rows)
    elif fmt == "json":
        data = json.dumps([to_alpaca(r) for r in rows], ensure_ascii=False, indent=1)
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "instruction", "input", "output", "messages"])
        for r in rows:
            a = to_alpaca(r)
            multi = "history" in a or "system" in a
            w.writerow([r.get("id"), a["instruction"], a["input"], a["output"],
                        json.dumps(_plain_messages(r), ensure_ascii=False) if multi else ""])
        data = buf.getvalue()
    elif fmt == "txt":
        lines = []
        for r in rows:
            a = to_alpaca(r)
            esc = [x.replace("\\", "\\\\").replace("\n", "\\n") for x in (a["instruction"], a["output"])]
            if any(sep in x for x in esc):
                raise ValueError(f"record {r.get('id')}: text contains the separator {sep!r}; choose another")
            lines.append(sep.join(esc))
        data = "".join(line + "\n" for line in lines)
    else:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    raw = data.encode("utf-8")
    storage.write_bytes(path, raw)
    return {"rows": len(rows), "bytes": len(raw), "sha256": storage.sha256(raw)}


def read(path: str, fmt: str, sep: str = "<sep>") -> list[dict]:
    """Back to [{"id", "messages"}] (parquet: full rows with meta)."""
    if fmt == "parquet":
        rows = table_to_rows(storage.read_parquet(path))
        return [{"id": r["id"], "messages": _plain_messages(r), "row": r} for r in rows]
    text = storage.read_bytes(path).decode("utf-8")
    if fmt == "alpaca":
        return [{"id": d.get("id"), "messages": from_alpaca(d)} for d in map(json.loads, text.splitlines()) if d]
    if fmt == "messages":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if fmt == "json":
        return [{"id": d.get("id"), "messages": from_alpaca(d)} for d in json.loads(text)]
    if fmt == "csv":
        out = []
        for d in csv.DictReader(io.StringIO(text)):
            msgs = json.loads(d["messages"]) if d.get("messages") else from_alpaca(d)
            out.append({"id": d["id"], "messages": msgs})
        return out
    if fmt == "txt":
        out = []
        for line in text.splitlines():
            ins, out_ = line.split(sep, 1)
            un = [_unescape(x) for x in (ins, out_)]
            out.append({"id": None, "messages": [{"role": "user", "content": un[0]},
                                                 {"role": "assistant", "content": un[1]}]})
        return out
    raise ValueError(f"unknown export format {fmt!r}")


def _unescape(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append("\n" if s[i + 1] == "n" else s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


__all__ = ["FORMATS", "EXT", "write", "read", "to_alpaca", "from_alpaca", "meta_loads"]
