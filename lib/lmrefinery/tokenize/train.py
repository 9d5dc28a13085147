"""Round 0 of tokenize, with `train:`: a byte-level BPE trained on a sample of the
stage's input, written next to the shards.

Three small rounds, so that no task ever holds more than the sample:
  count      (per part) documents per (source, lang) group; the driver turns the
             counts into quotas (`sample_quotas`);
  candidates (per part) rows whose hash is under an oversampled threshold of their
             group, cut to `max_chars_per_doc`, written to `_work/toksample/`;
  train      (one task) the `quota` smallest hashes of each group, then BPE.
"""
from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..core import storage
from ..core.schema import messages_of
from .params import TrainTokenizer
from .work import U64, TokenizeRun, h64, lang_key, part_file, read_work, write_work


@dataclass(frozen=True)
class SampleTask:
    """One input part in the count and candidates rounds (`fractions`: per group, the
    share of the hash range sampled; empty while counting)."""

    run: TokenizeRun
    part: int
    input: str
    fractions: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainTask:
    run: TokenizeRun
    n_parts: int
    quotas: dict[str, int]


def _settings(run: TokenizeRun) -> TrainTokenizer:
    assert run.params.train is not None, "the train rounds run only with `train:`"
    return run.params.train


def _sample_rows(seed: int, tb: pa.Table) -> Iterator[tuple[int, int, str]]:
    """(row, sampling hash, group) of every row of a part."""
    for r, (i, s, lg) in enumerate(zip(tb.column("id").to_pylist(), tb.column("source").to_pylist(),
                                        tb.column("lang").to_pylist())):
        yield r, h64(seed, "toksample", i), f"{s}/{lang_key(lg)}"


def count_groups(t: SampleTask) -> dict[str, int]:
    tb = storage.read_parquet(t.input, columns=["id", "source", "lang"])
    counts: dict[str, int] = defaultdict(int)
    for _, _, g in _sample_rows(t.run.seed, tb):
        counts[g] += 1
    return dict(counts)


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


def write_candidates(t: SampleTask) -> int:
    """The part's rows under their group's sampling threshold -> `_work/toksample/`;
    returns how many."""
    p = t.run.params
    tb = storage.read_parquet(t.input, columns=["id", "source", "lang", "text", "meta"])
    rows, hashes, groups = [], [], []
    for r, h, g in _sample_rows(t.run.seed, tb):
        if h / U64 < t.fractions.get(g, 0.0):
            rows.append(r)
            hashes.append(h)
            groups.append(g)
    texts = []
    if rows:
        sub = tb.take(pa.array(rows, pa.int64()))
        for txt, meta in zip(sub.column("text").to_pylist(), sub.column("meta").to_pylist()):
            msgs = messages_of(meta) if p.conversations and meta and '"messages"' in meta else []
            if msgs:
                txt = "\n".join(m.get("content") or "" for m in msgs)
            texts.append((txt or "")[: _settings(t.run).max_chars_per_doc])
    write_work(pa.table({"group": pa.array(groups, pa.string()), "hash": pa.array(hashes, pa.uint64()),
                         "text": pa.array(texts, pa.string())}),
               t.run.work_file("toksample", part_file(t.part)))
    return len(rows)


def _quota_texts(t: TrainTask) -> tuple[list[str], dict[str, int]]:
    """The sample: per group, the texts of its `quota` smallest hashes."""
    tabs = [read_work(t.run.work_file("toksample", part_file(i))) for i in range(t.n_parts)]
    texts: list[str] = []
    taken: dict[str, int] = defaultdict(int)
    if tabs:
        tb = pa.concat_tables(tabs).sort_by([("group", "ascending"), ("hash", "ascending")])
        for g, txt in zip(tb.column("group").to_pylist(), tb.column("text").to_pylist()):
            if taken[g] < t.quotas.get(g, 0):
                taken[g] += 1
                if txt:
                    texts.append(txt)
    return texts, taken


def train_on_sample(t: TrainTask) -> dict[str, Any]:
    """Train the BPE on the sample and save it in `tok_dir`; returns the sample's stats."""
    from .tokenizer import install_tokenizer, save_hf, train_bpe

    p = _settings(t.run)
    texts, taken = _quota_texts(t)
    tok = train_bpe(texts, vocab_size=p.vocab_size, min_frequency=p.min_frequency, specials=p.specials)
    stats = {"sample_docs": len(texts), "sample_chars": sum(len(x) for x in texts),
             "groups": dict(sorted(taken.items())), "vocab_size": tok.get_vocab_size()}
    out = t.run.tok_dir
    if storage.is_s3(out):
        local = tempfile.mkdtemp(prefix="lmr-tok-")
        save_hf(tok, local, specials=p.specials, extra={"trained_on": stats})
        install_tokenizer(local, out)
    else:
        save_hf(tok, out, specials=p.specials, extra={"trained_on": stats})
    return stats


def train_tokenizer_rounds(job: Any, run: TokenizeRun) -> dict[str, Any]:
    """count -> quotas -> candidates -> train; returns the sample's stats for dataset.json."""
    parts = [SampleTask(run, i, x) for i, x in enumerate(job.inputs)]
    counts: dict[str, int] = defaultdict(int)
    for part_counts in job.map(count_groups, parts, "tok-count"):
        for g, c in part_counts.items():
            counts[g] += c
    quotas = sample_quotas(dict(counts), _settings(run).sample_docs)
    # oversample so that, with high probability, every group has its quota among the candidates
    fractions = {g: min(1.0, (1.3 * q + 32) / counts[g]) for g, q in quotas.items() if counts[g]}
    job.map(write_candidates, [SampleTask(run, x.part, x.input, fractions) for x in parts], "tok-sample")
    stats: dict[str, Any] = job.map(train_on_sample, [TrainTask(run, len(parts), quotas)], "tok-train")[0]
    return stats
