"""Shared helpers for instruction records (row dicts with ``meta`` as a dict)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from .. import segment
from ..core.schema import BASE_COLUMNS, conversation_doc, doc_id, docs_to_table, meta_loads, render_messages


def conf_folder():
    """Templates, taxonomy and phrase lists: ``$LMR_INSTRUCT_CONF`` if set (it
    must exist), else the package's ``instruct/data``."""
    from ..core.resources import config_folder

    return config_folder(None, "LMR_INSTRUCT_CONF", __package__, "data")


def conf_file(*parts: str):
    """One file of the instruction data folder (a Traversable); an error naming it if absent."""
    from ..core.resources import MissingResource

    f = conf_folder().joinpath(*parts)
    if not f.is_file():
        raise MissingResource(f"instruction data file {'/'.join(parts)} not found in {conf_folder()}")
    return f


# ---------------------------------------------------------------- rows <-> tables
def table_to_rows(table: pa.Table) -> list[dict]:
    rows = table.to_pylist()
    for r in rows:
        r["meta"] = meta_loads(r.get("meta"))
    return rows


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Base columns only; extra keys of a row are folded into meta by docs_to_table."""
    out = []
    for r in rows:
        d = {k: r.get(k) for k in BASE_COLUMNS}
        out.append(d)
    return docs_to_table(out)


def read_jsonl(path: str) -> list[dict]:
    from ..core import storage

    out = []
    for line in storage.read_bytes(path).decode("utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def write_jsonl(path: str, rows: Iterable[dict]) -> int:
    from ..core import storage

    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in rows]
    storage.write_bytes(path, ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    return len(lines)


class UnreadableInput(ValueError):
    """An input file the instruct commands cannot use (the CLI exits 2 naming it)."""


RAW_FORMATS = ("alpaca", "alpaca_bilingual", "belle", "dolly", "self_instruct", "sharegpt", "openai_messages")


def sniff_format(obj: Any) -> str | None:
    """Reader format of one raw record (or ``rows`` for our own row dumps), from its keys."""
    if not isinstance(obj, dict):
        return None
    keys = set(obj)
    if "meta" in keys and "id" in keys:
        return "rows"
    if keys & {"conversations", "conversation"}:
        return "sharegpt"
    if isinstance(obj.get("messages"), list):
        return "openai_messages"
    if "en_instruction" in keys:
        return "alpaca_bilingual"
    if "instances" in keys:
        return "self_instruct"
    if "instruction" in keys and "response" in keys:
        return "dolly"
    if "question" in keys and keys & {"std_answer", "answer", "output"}:
        return "belle"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    return None


def _first_object(spec: dict) -> Any:
    from ..ingest.formats import Quarantine
    from ..ingest.instructions import iter_objects

    first_bad = None
    for item in iter_objects(spec):
        if isinstance(item, Quarantine):
            if item.pos == "file":
                raise UnreadableInput(f"{item.reason}: {item.detail}")
            first_bad = first_bad or item
            continue
        return item[1]
    if first_bad is not None:
        raise UnreadableInput(f"no readable record; first problem: {first_bad.reason}: {first_bad.detail}")
    return None


def read_raw_file(path: str, fmt: str = "auto", licence: str | None = None) -> tuple[list[dict], dict]:
    """One instruction file in a reader format (or our row dumps) -> (rows, quarantine counts).
    Ids, source and meta as the recipe's read stage gives them."""
    from collections import Counter

    from ..core.schema import doc_id
    from ..ingest.formats import Quarantine, Record
    from ..ingest.instructions import read_instruction_file

    name = os.path.splitext(os.path.basename(path))[0]
    spec: dict[str, Any] = {"path": path, "rel": os.path.basename(path), "input": name, "format": fmt, "options": {},
            "fields": {}, "licence": licence}
    if fmt == "auto":
        first = _first_object(spec)
        if first is None:
            raise UnreadableInput("no records in the file")
        sniffed = sniff_format(first)
        if sniffed is None:
            raise UnreadableInput(f"records of an unknown shape; pass --format ({', '.join(RAW_FORMATS)})")
        fmt = sniffed
    rows: list[dict] = []
    if fmt == "rows":
        for r in read_jsonl(path) if not _is_json_array(path) else json.loads(_read_text(path)):
            r["meta"] = r["meta"] if isinstance(r.get("meta"), dict) else meta_loads(r.get("meta"))
            rows.append(r)
        return rows, {}
    spec["format"] = fmt
    bad: Counter[str] = Counter()
    for item in read_instruction_file(spec, fmt):
        if isinstance(item, Quarantine):
            bad[item.reason] += 1
            continue
        assert isinstance(item, Record)
        d = item.doc
        d["id"] = doc_id(name, spec["rel"], item.pos)
        d["source"] = name
        d["meta"].update(file=spec["rel"], pos=item.pos)
        rows.append(d)
    return rows, dict(bad)


def _read_text(path: str) -> str:
    from ..core import storage

    return storage.read_bytes(path).decode("utf-8-sig")


def _is_json_array(path: str) -> bool:
    return _read_text(path).lstrip()[:1] == "["


def load_records(path: str, fmt: str = "auto") -> list[dict]:
    """Conversation rows from every file under ``path``: Parquet parts a stage
    wrote, our JSONL row dumps, or raw instruction files in any reader format
    (sniffed from the first record unless ``fmt`` names one). A file that
    cannot be read, or yields no record, is an ``UnreadableInput`` naming it."""
    from ..core import storage

    try:
        files = storage.list_files(path)
    except FileNotFoundError as e:
        raise UnreadableInput(f"{path}: no such file or folder") from e
    files = [f for f in files if not os.path.basename(f).startswith("_")]
    if not files:
        raise UnreadableInput(f"{path}: no such file or folder")
    rows: list[dict] = []
    for f in files:
        if f.endswith(".parquet"):
            got = table_to_rows(storage.read_parquet(f))
            bad: dict = {}
        elif f.endswith((".jsonl", ".json")) or fmt != "auto":
            try:
                got, bad = read_raw_file(f, fmt)
            except (ValueError, UnicodeDecodeError) as e:
                raise UnreadableInput(f"{f}: {e}") from e
        else:
            continue
        if not got:
            why = ", ".join(f"{k} {v}" for k, v in sorted(bad.items())) or "empty file"
            raise UnreadableInput(f"{f}: no usable record ({why})")
        rows.extend(got)
    if not rows:
        raise UnreadableInput(f"{path}: no .parquet/.json/.jsonl file with records")
    return rows


# ---------------------------------------------------------------- conversations
def messages(row: dict) -> list[dict]:
    return list((row.get("meta") or {}).get("messages") or [])


def pair(row: dict) -> tuple[str, str]:
    """(instruction, response): the first user turn and the first assistant turn after it."""
    ins, resp = "", ""
    seen_user = False
    for m in messages(row):
        if m["role"] == "user" and not seen_user:
            ins, seen_user = m.get("content") or "", True
        elif m["role"] == "assistant" and seen_user:
            resp = m.get("content") or ""
            if m.get("tool_calls"):   # a function call is the answer: its rendered text
                from .tools import lower_messages

                resp = lower_messages([m])[0]["content"]
            break
    return ins, resp


def make_record(messages_: list[dict], source: str, *, origin: str, parent_id: str | None = None,
                id_parts: tuple = (), lang: str | None = None, **meta: Any) -> dict:
    """A new conversation row (generated, constructed or augmented) with provenance."""
    d = conversation_doc(messages_, lang=lang, origin=origin, **({"parent_id": parent_id} if parent_id else {}),
                         **meta)
    d["id"] = doc_id(source, origin, parent_id or "", *id_parts, content_hash(messages_))
    d["source"] = source
    return d


def content_hash(msgs: list[dict]) -> str:
    h = hashlib.sha256()
    for m in msgs:
        h.update(m["role"].encode())
        h.update(b"\x1f")
        h.update((m.get("content") or "").encode("utf-8", "surrogatepass"))
        h.update(b"\x1e")
    return h.hexdigest()[:24]


def set_messages(row: dict, msgs: list[dict]) -> dict:
    row["meta"]["messages"] = msgs
    row["text"] = render_messages(msgs)
    return row


# ---------------------------------------------------------------- text helpers
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_WORD = re.compile(r"[A-Za-z0-9\u00c0-\u024f\u0400-\u04ff]+(?:'[A-Za-z]+)?")


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text or ""))


def cjk_ratio(text: str) -> float:
    t = [c for c in (text or "") if not c.isspace()]
    return sum(1 for c in t if _CJK.match(c)) / len(t) if t else 0.0


def tokens(text: str, lang: str | None = None) -> list[str]:
    """Words for ROUGE, length checks and n-grams: Latin/Cyrillic words
    lower-cased; Chinese segmented with jieba (punctuation dropped)."""
    text = unicodedata.normalize("NFKC", text or "")
    if (lang or "").startswith("zh") or (lang is None and has_cjk(text)):
        out = []
        for w in segment.words(text):
            w = w.strip().lower()
            if w and any(ch.isalnum() for ch in w):
                out.append(w)
        return out
    return [w.lower() for w in _WORD.findall(text)]


def word_count(text: str) -> int:
    """Words for English; for CJK text, each Han character counts as one word-equivalent / 1.5."""
    if has_cjk(text):
        return len(tokens(text, "zh"))
    return len(text.split())


_CODE_BLOCK = re.compile(r"(```.*?(?:```|$)|`[^`\n]+`)", re.S)


def split_code(text: str) -> list[tuple[bool, str]]:
    """[(is_code, chunk)]: fenced blocks and inline code are code and must not be changed."""
    out, pos = [], 0
    for m in _CODE_BLOCK.finditer(text or ""):
        if m.start() > pos:
            out.append((False, text[pos:m.start()]))
        out.append((True, m.group(0)))
        pos = m.end()
    if pos < len(text or ""):
        out.append((False, text[pos:]))
    return out


def stable_hash(*parts: Any) -> int:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "big")


def unit_hash(*parts: Any) -> float:
    """Deterministic number in [0, 1) from the parts."""
    return stable_hash(*parts) / 2.0 ** 64
