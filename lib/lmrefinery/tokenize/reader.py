"""The packed-sample reader a trainer consumes.

    from lmrefinery.tokenize.reader import PackedReader

    r = PackedReader("runs/x/stages/05-tokenize/dataset.json", seq_len=1024, seed=0, epoch=0,
                     start_sample=0, rank=0, world_size=1, split="train")
    for s in r:               # or r.batches(8) for stacked arrays
        s["input_ids"]        # int64[seq_len + 1]; inputs = [:-1], labels = [1:]
        s["loss_mask"]        # uint8[seq_len + 1]; 1 = token is a training target (use [1:])
        s["position_ids"]     # int64[seq_len + 1]; restart at 0 at every document start
        s["doc_ids"]          # int32[seq_len + 1]; segment number inside the sample (0, 0, 1, 1, 1, 2 ...)
        s["cu_seqlens"]       # int32[n_segments + 1]; segment offsets (flash-attn varlen style), last = seq_len + 1
        s["index"]            # global sample position in this epoch (what `start_sample` counts)

``source``: a dataset manifest (``dataset.json``), the directory that holds one
(a tokenize stage dir, local or ``s3://``), or a list of shard prefixes
(``.../shard-00000`` without ``.bin``).

Semantics (all deterministic, no state kept between processes):

* Epoch ``e``'s token stream is every document of the split, in an order that
  is a permutation seeded by ``(seed, e)`` (``shuffle_docs``), concatenated
  (documents already end with EOS). Sample ``k`` is the window
  ``stream[k*seq_len : k*seq_len + seq_len + 1]`` (one token of overlap so a
  sample holds ``seq_len`` input/label pairs, as in Megatron's GPTDataset);
  there are ``(tokens - 1) // seq_len`` samples, the tail is dropped.
* The visiting order of samples is a second permutation seeded by
  ``(seed, e)`` (``shuffle_samples``). Position ``p`` in that order is the
  "global sample index"; ``start_sample`` = number of samples already consumed
  by *all* ranks together (Megatron's ``consumed_samples``).
* Rank ``r`` of ``world_size`` yields positions ``start_sample + r``,
  ``start_sample + r + world_size``, ...; the epoch is cut to a multiple of
  ``world_size`` so every rank takes the same number of steps.
* Resuming: ``PackedReader(..., start_sample=consumed)`` yields exactly the
  samples an uninterrupted run would have yielded next.
* Documents are split across samples; a piece of a document that continues in
  the next sample starts a new segment there (``position_ids`` restart at 0).
  For block-diagonal attention, allow token i to attend j iff
  ``doc_ids[i] == doc_ids[j] and j <= i``.
* ``loss_mask`` comes from the shards' ``.mask`` companion (instruction data:
  1 on assistant tokens and their end-of-turn token); all ones otherwise.
"""
from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..core import storage
from .indexed import IndexedShard

DATASET_MANIFEST = "dataset.json"


def _dirname(p: str) -> str:
    return posixpath.dirname(p) if storage.is_s3(p) else __import__("os").path.dirname(p)


def load_dataset_manifest(source: str) -> tuple[dict, str]:
    """Return (manifest dict, the directory shard paths are relative to)."""
    path = source
    if not source.endswith(".json"):
        path = storage.join(source.rstrip("/"), DATASET_MANIFEST)
    try:
        m = json.loads(storage.read_bytes(path))
    except storage.StorageError as e:
        raise FileNotFoundError(f"{path}: no dataset manifest ({e})") from None
    return m, _dirname(path)


def resolve_shards(source: str | Sequence[str], split: str = "train") -> tuple[list[str], dict | None]:
    """Shard prefixes for a split of a dataset manifest (or a list of prefixes as given)."""
    if not isinstance(source, str):
        return list(source), None
    m, base = load_dataset_manifest(source)
    if split not in m.get("splits", {}):
        raise KeyError(f"{source}: no split {split!r} (have {sorted(m.get('splits', {}))})")
    return [storage.join(base, s["prefix"]) for s in m["splits"][split]["shards"]], m


class PackedReader:
    """Fixed-length packed samples; see the module docstring for the exact contract."""

    def __init__(self, source: str | Sequence[str], seq_len: int, seed: int = 0, epoch: int = 0,
                 start_sample: int = 0, rank: int = 0, world_size: int = 1, split: str = "train",
                 cache_dir: str | None = None, shuffle_docs: bool = True, shuffle_samples: bool = True):
        if seq_len < 1:
            raise ValueError("seq_len must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        self.seq_len, self.seed, self.epoch = int(seq_len), int(seed), int(epoch)
        self.start_sample, self.rank, self.world_size = int(start_sample), int(rank), int(world_size)
        self.prefixes, self.manifest = resolve_shards(source, split)
        self.shards = [IndexedShard(p, cache_dir=cache_dir) for p in self.prefixes]
        self.has_mask = any(s.has_mask for s in self.shards)
        lens = [s.lengths.astype(np.int64) for s in self.shards]
        self.doc_lengths = np.concatenate(lens) if lens else np.zeros(0, np.int64)
        self._shard_of = np.concatenate([np.full(len(s), i, np.int32) for i, s in enumerate(self.shards)]) \
            if self.shards else np.zeros(0, np.int32)
        self._local = np.concatenate([np.arange(len(s), dtype=np.int64) for s in self.shards]) \
            if self.shards else np.zeros(0, np.int64)
        n = len(self.doc_lengths)
        rng = np.random.default_rng([self.seed, self.epoch, 0])
        self.doc_order = rng.permutation(n) if shuffle_docs else np.arange(n)
        self.offsets = np.zeros(n + 1, np.int64)
        np.cumsum(self.doc_lengths[self.doc_order], out=self.offsets[1:])
        self.total_tokens = int(self.offsets[-1])
        self.num_samples = max(0, (self.total_tokens - 1) // self.seq_len)
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        self.sample_order = rng.permutation(self.num_samples) if shuffle_samples else np.arange(self.num_samples)
        # every rank takes the same number of steps
        self.usable = self.num_samples - self.num_samples % self.world_size

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        """Samples this rank will still yield from ``start_sample``."""
        left = max(0, self.usable - self.start_sample - self.rank)
        return (left + self.world_size - 1) // self.world_size

    def sample(self, k: int) -> dict:
        """Packed sample number ``k`` of the stream (before sample shuffling)."""
        if not 0 <= k < self.num_samples:
            raise IndexError(k)
        L = self.seq_len + 1
        start = k * self.seq_len
        end = start + L
        ids = np.empty(L, np.int64)
        mask = np.empty(L, np.uint8)
        pos = np.empty(L, np.int64)
        seg = np.empty(L, np.int32)
        cu = [0]
        j = int(np.searchsorted(self.offsets, start, side="right")) - 1
        at, s = start, 0
        while at < end:
            d = int(self.doc_order[j])
            shard = self.shards[int(self._shard_of[d])]
            i = int(self._local[d])
            off = at - int(self.offsets[j])
            n = min(int(self.offsets[j + 1]) - at, end - at)
            if n > 0:
                o = at - start
                ids[o:o + n] = shard.get(i, off, n)
                mask[o:o + n] = shard.get_mask(i, off, n)
                pos[o:o + n] = np.arange(n)
                seg[o:o + n] = s
                s += 1
                cu.append(o + n)
                at += n
            j += 1
        return {"input_ids": ids, "loss_mask": mask, "position_ids": pos, "doc_ids": seg,
                "cu_seqlens": np.asarray(cu, np.int32), "sample": k, "epoch": self.epoch}

    def positions(self) -> range:
        """Global sample positions this rank yields, in order."""
        return range(self.start_sample + self.rank, self.usable, self.world_size)

    def __iter__(self) -> Iterator[dict]:
        for p in self.positions():
            s = self.sample(int(self.sample_order[p]))
            s["index"] = p
            yield s

    def batches(self, batch_size: int, drop_last: bool = True) -> Iterator[dict]:
        """Stack consecutive samples of this rank: arrays get a leading batch axis,
        ``cu_seqlens`` stays a list (ragged) and ``index`` a list."""
        buf: list[dict] = []
        for s in self:
            buf.append(s)
            if len(buf) == batch_size:
                yield _stack(buf)
                buf = []
        if buf and not drop_last:
            yield _stack(buf)

    def state_dict(self, consumed_samples: int) -> dict:
        """What to save in a checkpoint; ``PackedReader(source, **state)`` resumes."""
        return {"seq_len": self.seq_len, "seed": self.seed, "epoch": self.epoch,
                "start_sample": int(consumed_samples), "world_size": self.world_size}

    # ------------------------------------------------------------------ info
    @property
    def vocab_size(self) -> int | None:
        if self.manifest:
            return self.manifest.get("tokenizer", {}).get("vocab_size")
        return None


def _stack(samples: list[dict]) -> dict:
    out: dict[str, Any] = {k: np.stack([s[k] for s in samples])
                           for k in ("input_ids", "loss_mask", "position_ids", "doc_ids")}
    out["cu_seqlens"] = [s["cu_seqlens"] for s in samples]
    out["index"] = [s["index"] for s in samples]
    out["epoch"] = samples[0]["epoch"]
    return out
