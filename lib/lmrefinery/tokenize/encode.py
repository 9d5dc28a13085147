"""Round 1 of tokenize, per input part: batched encoding (EOS appended, never
truncated; conversations in meta["messages"] rendered with the chat template plus
a loss mask), the train/valid split by a hash of the document's content, token
counts -> `_work/enc/`. The driver gets a small `EncodeSummary` back."""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

from ..core import storage
from ..core.schema import messages_of, meta_loads
from .work import U64, TokenizeRun, h64, lang_key, part_file, write_work

_ENCODERS: dict[tuple[str, bool, str | None, int], Any] = {}


def get_encoder(tok_dir: str, add_bos: bool, eos_token: str | None) -> Any:
    """The ChatEncoder of `tok_dir`, loaded once per process (fetched first from s3://)."""
    from .tokenizer import fetch_tokenizer, load_encoder

    key = (tok_dir, add_bos, eos_token, os.getpid())
    if key not in _ENCODERS:
        local = tok_dir
        if storage.is_s3(tok_dir):
            local = fetch_tokenizer(tok_dir, tempfile.mkdtemp(prefix="lmr-tok-"))
        _ENCODERS[key] = load_encoder(local, add_bos=add_bos, eos_token=eos_token)
    return _ENCODERS[key]


@dataclass(frozen=True)
class EncodeTask:
    run: TokenizeRun
    part: int
    input: str


@dataclass(frozen=True)
class EncodeSummary:
    part: int
    rows: int
    empty: int
    has_mask: bool
    tpc: dict[str, list[int]]   # language -> [tokens, characters] of plain documents
    seconds: float
    tokens: int


@dataclass
class _Encoded:
    """One part's documents encoded: tokens (and loss masks) per row, the text their
    split hash is taken over, and which rows were plain text."""

    toks: list[np.ndarray]
    masks: list[np.ndarray | None]
    content: list[str]
    plain_idx: list[int]
    has_mask: bool


def doc_repeat(meta: str | None) -> int:
    """A document's own repeat count: ``meta.repeat`` (set by `instruct_balance` with
    `upsample` to meet a floor), else 1. Train copies are mixing copies x this."""
    if not meta or '"repeat"' not in meta:
        return 1
    try:
        v = json.loads(meta).get("repeat")
    except (ValueError, AttributeError):
        return 1
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else 1


def _list_array(arrays: list[np.ndarray], typ: pa.DataType) -> pa.Array:
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, np.int32 if lengths.sum() < 2**31 else np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    values = pa.array(flat.astype(typ.to_pandas_dtype(), copy=False), typ)
    if offsets.dtype == np.int64:
        return pa.LargeListArray.from_arrays(pa.array(offsets), values)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _encode_rows(enc: Any, texts: list[str | None], metas: list[str | None], batch: int) -> _Encoded:
    """Conversations through the chat template (with a loss mask), plain texts in batches."""
    n = len(texts)
    toks: list[np.ndarray | None] = [None] * n
    masks: list[np.ndarray | None] = [None] * n
    content = [""] * n
    plain_idx: list[int] = []
    plain_txt: list[str] = []
    has_mask = False
    for r in range(n):
        meta, text = metas[r], texts[r]
        msgs = messages_of(meta) if meta and '"messages"' in meta else []
        if meta and msgs and any((m.get("content") or "").strip() for m in msgs):
            tools = meta_loads(meta).get("tools") if '"tools"' in meta else None
            toks[r], masks[r] = enc.encode_conversation(msgs, tools=tools)
            content[r] = "\x1e".join(f"{m.get('role')}\x1f{m.get('content') or ''}" for m in msgs)
            has_mask = True
        elif text and text.strip():
            plain_idx.append(r)
            plain_txt.append(text)
            content[r] = text
    for s in range(0, len(plain_txt), batch):
        for r, a in zip(plain_idx[s:s + batch], enc.encode_texts(plain_txt[s:s + batch])):
            toks[r] = a
    out = [a if a is not None else np.zeros(0, np.int32) for a in toks]
    return _Encoded(out, masks, content, plain_idx, has_mask)


def _tokens_per_char(e: _Encoded, empty: np.ndarray, n_tok: np.ndarray, langs: list[str | None],
                     texts: list[str | None], add_bos: bool) -> dict[str, list[int]]:
    """Tokens per character by language, measured on plain documents (EOS not counted)."""
    tpc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in e.plain_idx:
        if not empty[r]:
            acc = tpc[lang_key(langs[r])]
            acc[0] += int(n_tok[r]) - 1 - (1 if add_bos else 0)
            acc[1] += len(texts[r] or "")
    return dict(tpc)


def encode_part(t: EncodeTask) -> EncodeSummary:
    t0 = time.time()
    p, seed = t.run.params, t.run.seed
    enc = get_encoder(t.run.tok_dir, p.add_bos, p.eos_token)
    tb = storage.read_parquet(t.input, columns=["id", "text", "source", "lang", "meta"])
    n = tb.num_rows
    ids = tb.column("id").to_pylist()
    texts = tb.column("text").to_pylist()
    all_metas = tb.column("meta").to_pylist()
    e = _encode_rows(enc, texts, all_metas if p.conversations else [None] * n, p.encode_batch)
    empty = np.array([len(a) <= 1 for a in e.toks], bool)
    toks = [np.zeros(0, np.int32) if empty[r] else e.toks[r] for r in range(n)]
    vf = p.valid_fraction
    split = ["valid" if vf > 0 and xxhash.xxh3_64_intdigest(e.content[r].encode("utf-8", "surrogatepass"),
                                                             seed=seed) / U64 < vf else "train" for r in range(n)]
    n_tok = np.array([len(a) for a in toks], np.int64)
    out = pa.table({
        "id": pa.array(ids, pa.string()), "source": tb.column("source"), "lang": tb.column("lang"),
        "split": pa.array(split, pa.string()), "empty": pa.array(empty), "n_tokens": pa.array(n_tok),
        "n_chars": pa.array(np.array([len(x or "") for x in texts], np.int64)),
        "mixkey": pa.array([h64(seed, "mix", i) for i in ids], pa.uint64()),
        "repeat": pa.array(np.array([doc_repeat(m) for m in all_metas], np.int64)),
        "tokens": _list_array(toks, pa.int32()),
        "mask": pa.array([None if m is None else m.tolist() for m in e.masks], pa.list_(pa.uint8())),
    })
    write_work(out, t.run.work_file("enc", part_file(t.part)))
    tpc = _tokens_per_char(e, empty, n_tok, tb.column("lang").to_pylist(), texts, p.add_bos)
    return EncodeSummary(part=t.part, rows=n, empty=int(empty.sum()), has_mask=e.has_mask, tpc=tpc,
                         seconds=round(time.time() - t0, 3), tokens=int(n_tok[~empty].sum()))
