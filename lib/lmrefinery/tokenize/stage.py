"""The `tokenize` stage: curated documents -> a tokenizer, mixed and globally
shuffled Megatron token shards, and a dataset manifest.

Rounds of engine map tasks over files (engine-neutral, bounded memory):
  0. train   - (only with `train:`) one task samples documents across
               (source, language) groups by hash and trains a byte-level BPE;
               otherwise the given tokenizer is copied next to the shards.
  1. encode  - per input part: batched encoding (EOS appended, never
               truncated; conversations in meta["messages"] rendered with the
               chat template plus a loss mask), the train/valid split by a hash
               of the document's content, token counts -> `_work/enc/`.
  -  plan    - the driver reads only (source, split, tokens, hash) columns and
               decides per-source copies (mixing) and the shard count.
  2. scatter - per input part: each document becomes 0..k instances; each
               instance gets a shuffle key = hash(seed, id, copy) and goes to
               the shard owning that key range; the part's rows are committed
               (kept with n_tokens/split/copies, or rejected with a reason).
  3. write   - per shard: sort its instances by key, write `.bin`/`.idx`
               (+ `.mask` companion for instruction data).
The global order is the key order, so shards are identical for any number of
workers and either engine.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field, model_validator

from ..core import manifest as mf
from ..core import storage
from ..core.parts import finish_part
from ..core.recipe import StrictModel
from ..core.schema import messages_of, meta_loads
from ..core.stage import BatchResult, Stage, StageDataError, StageParams, register
from .indexed import IndexedWriter, dtype_for_vocab
from .reader import DATASET_MANIFEST

U64 = float(1 << 64)


class TrainTokenizer(StrictModel):
    vocab_size: int = Field(32000, ge=300, le=1 << 20)
    sample_docs: int = Field(20000, ge=1, description="documents sampled across (source, lang) groups")
    min_frequency: int = Field(2, ge=1)
    max_chars_per_doc: int = Field(20000, ge=100, description="longer sampled documents are cut for training")
    specials: dict[str, str] = Field(default_factory=dict, description="override eos/bos/pad/eot token strings")


class Mixing(StrictModel):
    mode: Literal["none", "proportions", "epochs"] = "none"
    weights: dict[str, float] = Field(default_factory=dict,
                                      description="source -> target token share (proportions) or epochs")
    total_tokens: int | None = Field(None, ge=1,
                                     description="proportions: train tokens wanted (default: natural total)")
    on_empty_source: Literal["error", "warn"] = Field(
        "error", description="a source with a positive weight but no train documents left: error stops the run; "
                             "warn tokenizes the others (weights rescaled) and records it in dataset.json")


class EmptySourceError(StageDataError):
    """A mixed source lost every document before tokenize."""


def empty_sources(names: list[str], mode: str, weights: dict[str, float], input_weights: dict[str, float]) -> list[str]:
    """Sources given a positive mixing weight (in `mix.weights` or an input's `weight`) that
    have no train documents."""
    if mode == "none":
        return []
    wanted = {s for s, w in {**input_weights, **weights}.items() if w and w > 0}
    return sorted(wanted - set(names))


class TokenizeParams(StageParams):
    tokenizer: str | None = Field(None, description="HF tokenizer dir or tokenizer.json to use")
    train: TrainTokenizer | None = Field(None, description="train a byte-level BPE on this stage's input first")
    eos_token: str | None = None
    add_bos: bool = False
    shard_tokens: int = Field(50_000_000, ge=1, description="target tokens per shard")
    valid_fraction: float = Field(0.005, ge=0.0, lt=1.0, description="documents held out by content hash")
    mix: Mixing = Field(default_factory=Mixing)
    conversations: bool = Field(True, description="rows with meta.messages -> chat template + loss mask")
    encode_batch: int = Field(1024, ge=1)

    @model_validator(mode="after")
    def _one_tokenizer(self):
        if (self.tokenizer is None) == (self.train is None):
            raise ValueError("give exactly one of `tokenizer` (a path) or `train` (settings to train one)")
        return self


# ---------------------------------------------------------------- helpers
def _h64(*parts) -> int:
    return xxhash.xxh3_64_intdigest("\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass"))


_ENCODERS: dict = {}


def get_encoder(tok_dir: str, add_bos: bool, eos_token: str | None):
    from .tokenizer import fetch_tokenizer, load_encoder

    key = (tok_dir, add_bos, eos_token, os.getpid())
    if key not in _ENCODERS:
        local = tok_dir
        if storage.is_s3(tok_dir):
            local = fetch_tokenizer(tok_dir, tempfile.mkdtemp(prefix="lmr-tok-"))
        _ENCODERS[key] = load_encoder(local, add_bos=add_bos, eos_token=eos_token)
    return _ENCODERS[key]


def _list_array(arrays: list[np.ndarray], typ) -> pa.Array:
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, np.int32 if lengths.sum() < 2**31 else np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    values = pa.array(flat.astype(typ.to_pandas_dtype(), copy=False), typ)
    if offsets.dtype == np.int64:
        return pa.LargeListArray.from_arrays(pa.array(offsets), values)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def write_work(table: pa.Table, uri: str) -> None:
    """Scratch files under `_work/` (deleted at the end of the stage): lz4, and on
    local disk no fsync - a crash reruns the stage anyway."""
    import io

    import pyarrow.parquet as pq

    if storage.is_s3(uri):
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="lz4", use_dictionary=False, write_statistics=False)
        storage.write_bytes(uri, sink.getvalue())
        return
    os.makedirs(os.path.dirname(uri), exist_ok=True)
    tmp = f"{uri}.tmp-{os.getpid()}"
    pq.write_table(table, tmp, compression="lz4", use_dictionary=False, write_statistics=False)
    os.replace(tmp, uri)


def read_work(uri: str, columns=None) -> pa.Table:
    import pyarrow.parquet as pq

    if storage.is_s3(uri):
        return storage.read_parquet(uri, columns=columns)
    return pq.read_table(uri, columns=columns, use_threads=False)


def _lang_key(lang: str | None) -> str:
    if not lang:
        return "und"
    return lang.split("-")[0].split("_")[0].lower()


# ---------------------------------------------------------------- round 0: tokenizer
# Three small rounds so that no task ever holds more than the sample:
#   count (per part) -> quotas per (source, lang) group on the driver ->
#   candidates (per part: rows whose hash is under an oversampled threshold) ->
#   train (one task: the `quota` smallest hashes of each group, then BPE).
def _sample_rows(t: dict, tb: pa.Table):
    seed = t["seed"]
    for r, (i, s, lg) in enumerate(zip(tb.column("id").to_pylist(), tb.column("source").to_pylist(),
                                        tb.column("lang").to_pylist())):
        yield r, _h64(seed, "toksample", i), f"{s}/{_lang_key(lg)}"


def _count_task(t: dict) -> dict:
    tb = storage.read_parquet(t["input"], columns=["id", "source", "lang"])
    counts: dict[str, int] = defaultdict(int)
    for _, _, g in _sample_rows(t, tb):
        counts[g] += 1
    return {"part": t["part"], "counts": dict(counts)}


def sample_quotas(counts: dict[str, int], total: int) -> dict[str, int]:
    """An equal share per group; what a small group cannot use goes to the others."""
    quota = {g: 0 for g in counts}
    left = min(total, sum(counts.values()))
    open_groups = sorted(counts)
    while left > 0 and open_groups:
        share = max(1, left // len(open_groups))
        nxt = []
        for g in open_groups:
            take = min(share, counts[g] - quota[g], left)
            quota[g] += take
            left -= take
            if quota[g] < counts[g]:
                nxt.append(g)
            if left == 0:
                break
        open_groups = nxt
    return quota


def _candidates_task(t: dict) -> dict:
    p = t["params"]
    tb = storage.read_parquet(t["input"], columns=["id", "source", "lang", "text", "meta"])
    frac = t["fractions"]
    rows, hashes, groups = [], [], []
    for r, h, g in _sample_rows(t, tb):
        if h / U64 < frac.get(g, 0.0):
            rows.append(r)
            hashes.append(h)
            groups.append(g)
    texts = []
    if rows:
        sub = tb.take(pa.array(rows, pa.int64()))
        for txt, meta in zip(sub.column("text").to_pylist(), sub.column("meta").to_pylist()):
            msgs = messages_of(meta) if p["conversations"] and meta and '"messages"' in meta else []
            if msgs:
                txt = "\n".join(m.get("content") or "" for m in msgs)
            texts.append((txt or "")[: p["train"]["max_chars_per_doc"]])
    write_work(pa.table({"group": pa.array(groups, pa.string()), "hash": pa.array(hashes, pa.uint64()),
                         "text": pa.array(texts, pa.string())}),
               storage.join(t["work"], "toksample", f"p{t['part']:05d}.parquet"))
    return {"part": t["part"], "candidates": len(rows)}


def _train_task(t: dict) -> dict:
    from .tokenizer import install_tokenizer, save_hf, train_bpe

    p = t["params"]["train"]
    tabs = [read_work(storage.join(t["work"], "toksample", f"p{i:05d}.parquet")) for i in range(t["n_parts"])]
    tb = pa.concat_tables(tabs).sort_by([("group", "ascending"), ("hash", "ascending")]) if tabs else None
    texts, taken = [], defaultdict(int)
    if tb is not None:
        for g, txt in zip(tb.column("group").to_pylist(), tb.column("text").to_pylist()):
            if taken[g] < t["quotas"].get(g, 0):
                taken[g] += 1
                if txt:
                    texts.append(txt)
    tok = train_bpe(texts, vocab_size=p["vocab_size"], min_frequency=p["min_frequency"], specials=p["specials"])
    stats = {"sample_docs": len(texts), "sample_chars": sum(len(x) for x in texts),
             "groups": dict(sorted(taken.items())), "vocab_size": tok.get_vocab_size()}
    out = t["tok_dir"]
    if storage.is_s3(out):
        local = tempfile.mkdtemp(prefix="lmr-tok-")
        save_hf(tok, local, specials=p["specials"], extra={"trained_on": stats})
        install_tokenizer(local, out)
    else:
        save_hf(tok, out, specials=p["specials"], extra={"trained_on": stats})
    return stats


def train_tokenizer_rounds(job, base: dict) -> dict:
    p = base["params"]["train"]
    parts = [dict(base, input=x, part=i) for i, x in enumerate(job.inputs)]
    counts: dict[str, int] = defaultdict(int)
    for r in job.map(_count_task, parts, "tok-count"):
        for g, c in r["counts"].items():
            counts[g] += c
    quotas = sample_quotas(dict(counts), p["sample_docs"])
    # oversample so that, with high probability, every group has its quota among the candidates
    fractions = {g: min(1.0, (1.3 * q + 32) / counts[g]) for g, q in quotas.items() if counts[g]}
    job.map(_candidates_task, [dict(x, fractions=fractions) for x in parts], "tok-sample")
    return job.map(_train_task, [dict(base, quotas=quotas, n_parts=len(parts))], "tok-train")[0]


# ---------------------------------------------------------------- round 1: encode
ENC_SCHEMA_COLS = ["id", "source", "lang", "split", "n_tokens", "n_chars", "mixkey", "repeat", "tokens", "mask"]


def doc_repeat(meta: str | None) -> int:
    """A document's own repeat count: ``meta.repeat`` (set by `instruct_balance` with
    `upsample` to meet a floor), else 1. Train copies are mixing copies x this."""
    if not meta or '"repeat"' not in meta:
        return 1
    import json

    try:
        v = json.loads(meta).get("repeat")
    except (ValueError, AttributeError):
        return 1
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else 1


def _encode_task(t: dict) -> dict:
    t0 = time.time()
    p = t["params"]
    enc = get_encoder(t["tok_dir"], p["add_bos"], p["eos_token"])
    tb = storage.read_parquet(t["input"], columns=["id", "text", "source", "lang", "meta"])
    ids = tb.column("id").to_pylist()
    texts = tb.column("text").to_pylist()
    all_metas = tb.column("meta").to_pylist()
    metas = all_metas if p["conversations"] else [None] * tb.num_rows
    n = tb.num_rows
    repeat = np.array([doc_repeat(m) for m in all_metas], np.int64)
    toks: list[np.ndarray | None] = [None] * n
    masks: list[np.ndarray | None] = [None] * n
    content: list[str] = [""] * n
    plain_idx, plain_txt = [], []
    has_mask = False
    for r in range(n):
        msgs = messages_of(metas[r]) if metas[r] and '"messages"' in metas[r] else []
        if msgs and any((m.get("content") or "").strip() for m in msgs):
            tools = meta_loads(metas[r]).get("tools") if '"tools"' in metas[r] else None
            ids_, m_ = enc.encode_conversation(msgs, tools=tools)
            toks[r], masks[r] = ids_, m_
            content[r] = "\x1e".join(f"{m.get('role')}\x1f{m.get('content') or ''}" for m in msgs)
            has_mask = True
        elif texts[r] and texts[r].strip():
            plain_idx.append(r)
            plain_txt.append(texts[r])
            content[r] = texts[r]
    B = p["encode_batch"]
    for s in range(0, len(plain_txt), B):
        for r, a in zip(plain_idx[s:s + B], enc.encode_texts(plain_txt[s:s + B])):
            toks[r] = a
    empty = np.zeros(n, bool)
    for r in range(n):
        if toks[r] is None or len(toks[r]) <= 1:
            empty[r] = True
            toks[r] = np.zeros(0, np.int32)
    vf = p["valid_fraction"]
    seed = t["seed"]
    split = ["valid" if vf > 0 and xxhash.xxh3_64_intdigest(content[r].encode("utf-8", "surrogatepass"), seed=seed)
             / U64 < vf else "train" for r in range(n)]
    n_tok = np.array([len(a) for a in toks], np.int64)
    n_chars = np.array([len(texts[r] or "") for r in range(n)], np.int64)
    mixkey = [_h64(seed, "mix", i) for i in ids]
    mask_col = [m if m is not None else None for m in masks]
    out = pa.table({
        "id": pa.array(ids, pa.string()), "source": tb.column("source"), "lang": tb.column("lang"),
        "split": pa.array(split, pa.string()), "empty": pa.array(empty), "n_tokens": pa.array(n_tok),
        "n_chars": pa.array(n_chars), "mixkey": pa.array(mixkey, pa.uint64()), "repeat": pa.array(repeat),
        "tokens": _list_array(toks, pa.int32()),
        "mask": pa.array([None if m is None else m.tolist() for m in mask_col], pa.list_(pa.uint8())),
    })
    write_work(out, storage.join(t["work"], "enc", f"p{t['part']:05d}.parquet"))
    # tokens per character by language, measured on plain documents (EOS not counted)
    tpc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    langs = tb.column("lang").to_pylist()
    for r in plain_idx:
        if not empty[r]:
            acc = tpc[_lang_key(langs[r])]
            acc[0] += int(n_tok[r]) - 1 - (1 if p["add_bos"] else 0)
            acc[1] += len(texts[r])
    return {"part": t["part"], "rows": n, "empty": int(empty.sum()), "has_mask": has_mask,
            "tpc": {k: v for k, v in tpc.items()}, "seconds": round(time.time() - t0, 3),
            "tokens": int(n_tok[~empty].sum())}


# ---------------------------------------------------------------- plan (driver)
def plan_mixing(table: pa.Table, mix: dict, input_weights: dict[str, float], max_scan: int = 200_000) -> dict:
    """Decide how many copies of each train document to write.

    `table` has the train documents' source, n_tokens and mixkey (and optionally
    repeat, a document's own multiplicity: its tokens count that many times and
    each of its mixing copies is written that many times). A source with
    factor f (target tokens / natural tokens) gets floor(f) copies of every
    document. The fractional part f - floor(f) is a token budget, filled in hash
    order: the longest prefix that fits (every document with mixkey <= threshold),
    then first fit over the next `max_scan` documents, then one more document if
    overshooting lands closer than stopping short. The share is hit within half a
    document and the choice depends only on the seed and the documents.
    Plan per source: {"base", "threshold", "extra": [mixkeys beyond the prefix], "factor"}."""
    srcs = table.column("source")
    ntok_all = table.column("n_tokens").to_numpy()
    if "repeat" in table.column_names:   # a document repeated k times weighs k times its tokens
        ntok_all = ntok_all * table.column("repeat").to_numpy()
    keys_all = table.column("mixkey").to_numpy()
    names = sorted(x for x in pc.unique(srcs).to_pylist() if x is not None) if table.num_rows else []
    idx = {s: np.flatnonzero(pc.equal(srcs, s).to_numpy(zero_copy_only=False)) for s in names}
    natural = {s: int(ntok_all[ix].sum()) for s, ix in idx.items()}
    total = sum(natural.values())
    mode = mix["mode"]
    lost = empty_sources(names, mode, mix["weights"], input_weights)
    if lost and mix.get("on_empty_source", "error") == "error":
        raise EmptySourceError(
            f"tokenize: mixed source(s) {lost} have no train documents left (every document was rejected by an "
            "earlier stage; stats.json and `lmrefinery rejects` show by which). Fix the recipe (e.g. give that "
            "source its own stages with `sources:`), or set tokenize mix.on_empty_source: warn to go on without "
            "them, the other weights rescaled")
    if lost:
        print(f"WARNING tokenize: mixed source(s) {lost} have no train documents; the other weights are "
              "rescaled (mix.on_empty_source: warn)", file=sys.stderr, flush=True)
    weights = {s: float(mix["weights"].get(s, input_weights.get(s, 0.0 if mode == "proportions" else 1.0)))
               for s in names} if mode != "none" else {s: 1.0 for s in names}
    if mode == "proportions":
        wsum = sum(weights.values())
        if wsum <= 0:
            raise ValueError("mix: proportions need positive weights for at least one source")
        target = {s: w / wsum for s, w in weights.items()}
        want = mix.get("total_tokens") or total
        factor = {s: (target[s] * want / natural[s]) if natural[s] else 0.0 for s in names}
    else:
        factor = {s: weights[s] for s in names}
        target = None
    plan, achieved_tokens = {}, {}
    for s, ix in idx.items():
        f = max(0.0, factor[s])
        base = int(math.floor(f + 1e-9))
        budget = (f - base) * natural[s]
        order = ix[np.argsort(keys_all[ix], kind="stable")]
        ntok = ntok_all[order].astype(np.int64)
        incl = np.cumsum(ntok)
        take = int(np.searchsorted(incl, budget + 1e-9, side="right")) if budget > 0 else 0
        used = int(incl[take - 1]) if take else 0
        threshold = int(keys_all[order[take - 1]]) if take else -1
        extra, left_out = [], []
        if budget > 0 and budget - used >= 1:
            for j in range(take, min(len(order), take + max_scan)):
                n = int(ntok[j])
                if used + n <= budget:
                    extra.append(int(keys_all[order[j]]))
                    used += n
                    if budget - used < 1:
                        break
                else:
                    left_out.append(j)
            if left_out and budget - used >= 1:
                j = min(left_out, key=lambda x: (int(ntok[x]), x))
                if used + int(ntok[j]) - budget < budget - used:
                    extra.append(int(keys_all[order[j]]))
                    used += int(ntok[j])
        plan[s] = {"base": base, "threshold": threshold, "extra": sorted(extra), "factor": round(f, 6)}
        achieved_tokens[s] = base * natural[s] + used
    out_total = sum(achieved_tokens.values())
    return {"mode": mode, "weights": weights, "plan": plan, "empty_sources": lost,
            "natural": {s: {"documents": len(idx[s]), "tokens": natural[s]} for s in names},
            "target": {s: round(v, 6) for s, v in sorted(target.items())} if target else None,
            "achieved": {s: round(achieved_tokens[s] / out_total, 6) if out_total else 0.0 for s in names},
            "output_tokens": {s: int(v) for s, v in sorted(achieved_tokens.items())}}


def copies_of(source: str, mixkey: int, plan: dict) -> int:
    """Copies of a train document under a mixing plan (`plan["extra"]` may be a set)."""
    pl = plan.get(source)
    if pl is None:
        return 1
    return pl["base"] + (1 if mixkey <= pl["threshold"] or mixkey in pl["extra"] else 0)


# ---------------------------------------------------------------- round 2: scatter + commit parts
def _shard_of(key: int, n: int) -> int:
    return (key * n) >> 64


def _scatter_task(t: dict) -> dict:
    t0 = time.time()
    enc = read_work(storage.join(t["work"], "enc", f"p{t['part']:05d}.parquet"))
    ids = enc.column("id").to_pylist()
    srcs = enc.column("source").to_pylist()
    split = enc.column("split").to_pylist()
    empty = enc.column("empty").to_pylist()
    mixkey = enc.column("mixkey").to_pylist()
    ntok = enc.column("n_tokens").to_pylist()
    rep = enc.column("repeat").to_pylist() if "repeat" in enc.column_names else [1] * enc.num_rows
    seed = t["seed"]
    plan = {k: dict(v, extra=set(v["extra"])) for k, v in t["plan"].items()}
    n_shards = t["n_shards"]
    inst: dict[tuple[str, int], list] = defaultdict(list)  # (split, shard) -> [(key, row, copy)]
    copies = np.zeros(enc.num_rows, np.int32)
    reasons: list[str | None] = [None] * enc.num_rows
    extra = 0
    for r in range(enc.num_rows):
        if empty[r]:
            reasons[r] = "tokenize:empty"
            continue
        c = 1 if split[r] == "valid" else copies_of(srcs[r], mixkey[r], plan) * rep[r]
        copies[r] = c
        if c == 0:
            reasons[r] = "mix:downsampled"
            continue
        extra += c - 1
        for k in range(c):
            key = _h64(seed, "shuffle", ids[r], k)
            inst[(split[r], _shard_of(key, n_shards[split[r]]))].append((key, r, k))
    # one take for all instances, ordered by (split, shard); then a slice per shard file
    groups = sorted(inst)
    rows = [r for g in groups for _, r, _ in inst[g]]
    taken = enc.select(["id", "source", "tokens", "mask"]).take(pa.array(rows, pa.int64())) if rows else None
    at = 0
    for g in groups:
        items = inst[g]
        sub = taken.slice(at, len(items))
        at += len(items)
        sub = sub.add_column(0, "key", pa.array([k for k, _, _ in items], pa.uint64())) \
            .add_column(2, "copy", pa.array([c for _, _, c in items], pa.int32()))
        sp, j = g
        write_work(sub, storage.join(t["work"], "scat", sp, f"s{j:05d}", f"p{t['part']:05d}.parquet"))
    # commit this part: the input rows, kept with their token accounting, or rejected
    tb = storage.read_parquet(t["input"])
    tb = tb.drop_columns([c for c in ("n_tokens", "split", "copies") if c in tb.column_names])
    tb = tb.append_column("n_tokens", enc.column("n_tokens")).append_column("split", enc.column("split")) \
        .append_column("copies", pa.array(copies, pa.int32()))
    counters = {"tokenize:instances": int(copies.sum()), "tokenize:upsampled_copies": int(extra),
                "tokenize:tokens_out": int(sum(ntok[r] * int(copies[r]) for r in range(enc.num_rows)))}
    res = BatchResult.split(tb, t["stage"], reasons, counters)
    return finish_part(t, [res], tb.num_rows, t0)


# ---------------------------------------------------------------- round 3: write shards
def _write_task(t: dict) -> dict:
    d = storage.join(t["work"], "scat", t["split"], f"s{t['shard']:05d}")
    files = [storage.join(d, f"p{p:05d}.parquet") for p in range(t["n_parts"])]
    tabs = [read_work(f) for f in files if storage.exists(f)]
    if not tabs:
        return {"split": t["split"], "shard": t["shard"], "documents": 0, "tokens": 0}
    tb = pa.concat_tables(tabs).sort_by([("key", "ascending"), ("id", "ascending"), ("copy", "ascending")])
    prefix = storage.join(t["stage_dir"], "shards", t["split"], f"shard-{t['shard']:05d}")
    w = IndexedWriter(prefix, np.dtype(t["dtype"]), with_mask=t["with_mask"])
    tok = tb.column("tokens").combine_chunks()
    lengths = pc.list_value_length(tok).to_numpy()
    flat = pc.list_flatten(tok).to_numpy()
    mflat = None
    if t["with_mask"]:
        mcol = tb.column("mask").to_pylist()
        mflat = np.concatenate([np.asarray(m, np.uint8) if m is not None else np.ones(int(n), np.uint8)
                                for m, n in zip(mcol, lengths)]) if len(lengths) else np.zeros(0, np.uint8)
    try:
        w.add_many(flat, lengths, mflat)
    except BaseException:
        w.abort()
        raise
    info = w.close()
    by_src: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s, n in zip(tb.column("source").to_pylist(), lengths):
        by_src[s][0] += 1
        by_src[s][1] += int(n)
    rel = storage.relpath(prefix, t["stage_dir"])
    files_ = {".bin": info["bin"], ".idx": info["idx"]}
    if t["with_mask"]:
        files_[".mask.bin"] = info["mask_bin"]
        files_[".mask.idx"] = info["mask_idx"]
    return {"split": t["split"], "shard": t["shard"], "prefix": rel, "documents": info["sequences"],
            "tokens": info["tokens"],
            "files": {k: {"bytes": v["bytes"], "sha256": v["sha256"]} for k, v in files_.items()},
            "by_source": {s: {"documents": v[0], "tokens": v[1]} for s, v in sorted(by_src.items())}}


# ---------------------------------------------------------------- the stage
@register
class TokenizeStage(Stage):
    name = "tokenize"
    kind = "global"
    Params = TokenizeParams
    params: TokenizeParams
    description = ("Tokenize (train or load a byte-level BPE), mix sources, shuffle globally and write "
                   "Megatron .bin/.idx shards (+ loss-mask companions for conversations) and dataset.json.")

    def execute(self, job) -> list[dict]:
        from .tokenizer import file_sha256, install_tokenizer, tokenizer_json_of

        params = self.params.model_dump()
        sdir = job.stage_dir
        work = job.work_dir
        tok_dir = storage.join(sdir, "tokenizer")
        seed = int(job.ctx.get("seed", 0))
        n = len(job.inputs)
        base = dict(params=params, work=work, stage=self.name, stage_dir=sdir, fingerprint=job.fingerprint,
                    seed=seed, tok_dir=tok_dir)
        train_stats = None
        if params["train"]:
            train_stats = train_tokenizer_rounds(job, base)
            tok_source = "trained"
        else:
            install_tokenizer(params["tokenizer"], tok_dir)
            tok_source = os.path.abspath(params["tokenizer"]) if not storage.is_s3(params["tokenizer"]) \
                else params["tokenizer"]
        enc_res = job.map(_encode_task, [dict(base, input=p, part=i) for i, p in enumerate(job.inputs)], "encode")

        # plan: mixing and shard counts from the small columns only
        cols = ["source", "split", "empty", "n_tokens", "mixkey", "repeat"]
        meta = [read_work(storage.join(work, "enc", f"p{i:05d}.parquet"), columns=cols) for i in range(n)]
        allm = pa.concat_tables(meta) if meta else pa.table({c: [] for c in cols})
        ok = allm.filter(pc.invert(allm.column("empty")))
        train = ok.filter(pc.equal(ok.column("split"), "train"))
        valid = ok.filter(pc.equal(ok.column("split"), "valid"))
        input_weights = {i["name"]: i["weight"] for i in job.ctx.get("inputs", []) if i.get("weight") is not None}
        mixing = plan_mixing(train, params["mix"], input_weights)
        train_out = sum(mixing["output_tokens"].values())
        valid_tokens = int(pc.sum(valid.column("n_tokens")).as_py() or 0)
        n_shards = {"train": max(1, math.ceil(train_out / params["shard_tokens"])),
                    "valid": max(1, math.ceil(valid_tokens / params["shard_tokens"]))}
        with_mask = any(r["has_mask"] for r in enc_res)
        enc_local = get_encoder(tok_dir, params["add_bos"], params["eos_token"])
        dtype = dtype_for_vocab(enc_local.vocab_size)

        parts = job.map(_scatter_task, [dict(base, input=p, part=i, plan=mixing["plan"], n_shards=n_shards,
                                             input_desc=storage.relpath(p, job.ctx["output_root"]))
                                        for i, p in enumerate(job.inputs)], "scatter")
        wtasks = [dict(base, split=sp, shard=j, n_parts=n, dtype=dtype.name, with_mask=with_mask)
                  for sp in ("train", "valid") for j in range(n_shards[sp])]
        shards = job.map(_write_task, wtasks, "write")

        # dataset manifest
        splits = {}
        for sp in ("train", "valid"):
            got = [s for s in shards if s["split"] == sp and s["documents"] > 0]
            by_src: dict[str, dict] = defaultdict(lambda: {"documents": 0, "tokens": 0})
            for s in got:
                for k, v in s["by_source"].items():
                    by_src[k]["documents"] += v["documents"]
                    by_src[k]["tokens"] += v["tokens"]
            splits[sp] = {"documents": sum(s["documents"] for s in got), "tokens": sum(s["tokens"] for s in got),
                          "by_source": dict(sorted(by_src.items())),
                          "shards": [{k: s[k] for k in ("prefix", "documents", "tokens", "files", "by_source")}
                                     for s in got]}
        tpc_acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in enc_res:
            for lg, (nt, nc) in r["tpc"].items():
                tpc_acc[lg][0] += nt
                tpc_acc[lg][1] += nc
        tj = tokenizer_json_of(tok_dir) if not storage.is_s3(tok_dir) else storage.join(tok_dir, "tokenizer.json")
        enc0 = enc_local
        mixing_out = {k: v for k, v in mixing.items() if k != "plan"}
        mixing_out["factors"] = {s: p["factor"] for s, p in sorted(mixing["plan"].items())}
        dataset = {
            "format": "megatron-mmidx", "version": 1, "seed": seed, "run": job.ctx.get("run_name"),
            "dtype": dtype.name, "has_loss_mask": with_mask, "shard_tokens": params["shard_tokens"],
            "valid_fraction": params["valid_fraction"],
            "tokenizer": {"path": "tokenizer", "source": tok_source, "sha256": file_sha256(tj),
                          "vocab_size": enc0.vocab_size, "eos_id": enc0.eos_id, "bos_id": enc0.bos_id,
                          "pad_id": enc0.pad_id, "eot_id": enc0.eot_id, "add_bos": params["add_bos"],
                          "trained_on": train_stats},
            "tokens_per_char": {lg: round(nt / nc, 4) for lg, (nt, nc) in sorted(tpc_acc.items()) if nc},
            "splits": splits, "mixing": mixing_out,
            "documents": {"in": sum(p["in"] for p in parts),
                          "empty": sum(p["rejected"].get("tokenize:empty", 0) for p in parts),
                          "downsampled": sum(p["rejected"].get("mix:downsampled", 0) for p in parts),
                          "upsampled_copies": sum(p.get("counters", {}).get("tokenize:upsampled_copies", 0)
                                                  for p in parts)},
        }
        mf.write_json(storage.join(sdir, DATASET_MANIFEST), dataset)
        storage.delete_prefix(work)
        if parts:
            parts[0] = dict(parts[0], artifacts={"dataset": DATASET_MANIFEST, "tokenizer": "tokenizer",
                                                 "shards": {sp: [s["prefix"] for s in splits[sp]["shards"]]
                                                            for sp in splits},
                                                 "tokens": {sp: splits[sp]["tokens"] for sp in splits}})
        return parts


__all__ = ["TokenizeStage", "TokenizeParams", "plan_mixing", "copies_of"]
