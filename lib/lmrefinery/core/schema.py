"""The document model: one Arrow schema, defined here and nowhere else.

A document is a row. Stages may add signal columns (``lang_score``,
``quality_*``...) but never drop a base column. Rejected rows carry the same
columns plus ``reject_stage`` and ``reject_reason``.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

DOC_FIELDS: list[pa.Field] = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.string()),
    pa.field("source", pa.string()),
    pa.field("url", pa.string()),
    pa.field("title", pa.string()),
    pa.field("lang", pa.string()),
    pa.field("meta", pa.string()),  # JSON object as text: engine-neutral, never lossy
]
DOC_SCHEMA = pa.schema(DOC_FIELDS)
BASE_COLUMNS = [f.name for f in DOC_FIELDS]
REJECT_REASON = "reject_reason"
REJECT_STAGE = "reject_stage"


def doc_id(*parts: Any) -> str:
    """Stable id from provenance (source name, relative path, record position)
    or content. Same inputs -> same id on every run, on every engine."""
    h = hashlib.blake2b(digest_size=12)
    for p in parts:
        h.update(str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()


def meta_dumps(meta: dict[str, Any] | None) -> str:
    return json.dumps(meta or {}, ensure_ascii=False, sort_keys=True, default=str)


def meta_loads(s: str | None) -> dict[str, Any]:
    if not s:
        return {}
    try:
        v = json.loads(s)
        return v if isinstance(v, dict) else {"value": v}
    except ValueError:
        return {"raw_meta": s}


def docs_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Build a document table from dicts; unknown keys are folded into meta so
    nothing is dropped silently."""
    cols: dict[str, list[Any]] = {n: [] for n in BASE_COLUMNS}
    for r in rows:
        extra = {k: v for k, v in r.items() if k not in cols}
        meta = r.get("meta")
        if isinstance(meta, str):
            meta = meta_loads(meta)
        meta = dict(meta or {})
        meta.update(extra)
        for n in BASE_COLUMNS:
            if n == "meta":
                cols[n].append(meta_dumps(meta))
            else:
                v = r.get(n)
                cols[n].append(None if v is None else str(v))
    return pa.table(cols, schema=DOC_SCHEMA)


def empty_docs() -> pa.Table:
    return DOC_SCHEMA.empty_table()


def conform(table: pa.Table) -> pa.Table:
    """Make sure the base columns exist with the right types and come first;
    extra (signal) columns are kept after them."""
    cols, fields = [], []
    n = table.num_rows
    for f in DOC_FIELDS:
        if f.name in table.column_names:
            c = table.column(f.name)
            if c.type != f.type:
                c = c.cast(f.type)
        else:
            c = pa.nulls(n, f.type) if f.name != "meta" else pa.array(["{}"] * n, pa.string())
        cols.append(c)
        fields.append(f)
    for name in table.column_names:
        if name not in BASE_COLUMNS:
            cols.append(table.column(name))
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def with_reason(table: pa.Table, stage: str, reasons: list[str] | str) -> pa.Table:
    """Rejected rows: the full row plus which stage dropped it and why."""
    n = table.num_rows
    if isinstance(reasons, str):
        reasons = [reasons] * n
    for col in (REJECT_STAGE, REJECT_REASON):
        if col in table.column_names:
            table = table.drop_columns([col])
    table = table.append_column(REJECT_STAGE, pa.array([stage] * n, pa.string()))
    return table.append_column(REJECT_REASON, pa.array(reasons, pa.string()))


def concat(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t is not None]
    if not tables:
        return empty_docs()
    return pa.concat_tables(tables, promote_options="permissive")


# ---------------------------------------------------------------- conversations
# Instruction data travels as ordinary document rows so every stage (lid, pii,
# dedup, ...) works on it unchanged. The conversation itself lives in
# meta["messages"] = [{"role": system|user|assistant|tool, "content": str, ...}];
# `text` is a plain rendering of it for text filters. Provenance keys in meta:
# kind="conversation", category, orig_id, licence, parent_id, origin, pair_id.
ROLES = ("system", "user", "assistant", "tool")


def render_messages(messages: list[dict[str, Any]]) -> str:
    return "\n\n".join(f"{m['role']}: {m.get('content') or ''}" for m in messages)


def conversation_doc(messages: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    for m in messages:
        if m.get("role") not in ROLES:
            raise ValueError(f"unknown role {m.get('role')!r}; expected one of {ROLES}")
    return {"text": render_messages(messages), "lang": meta.pop("lang", None),
            "title": meta.pop("title", None), "url": meta.pop("url", None),
            "meta": {"kind": "conversation", "messages": messages, **meta}}


def messages_of(row_meta: str | dict[str, Any]) -> list[dict[str, Any]]:
    m = meta_loads(row_meta) if isinstance(row_meta, str) else row_meta
    return list(m.get("messages") or [])
