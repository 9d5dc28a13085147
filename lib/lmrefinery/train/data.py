"""Data for the trainer, through the tokenisation stage's ``PackedReader``
(``lmrefinery.tokenize.reader``): each worker reads its own interleaved share of
the packed samples; the position in the stream is (epoch, samples consumed by all
ranks in that epoch), which is what every checkpoint stores."""
from __future__ import annotations

import numpy as np

from .config import TrainRecipe

IGNORE = -100


def to_batch(stacked: dict) -> dict:
    """Reader samples (seq_len + 1 tokens) -> model inputs and next-token targets.
    ``targets[t]`` is the token after ``input_ids[t]``, or -100 where the loss mask
    says it is not a training target (prompts in instruction data)."""
    ids = stacked["input_ids"]
    tgt = ids[:, 1:].copy()
    tgt[stacked["loss_mask"][:, 1:] == 0] = IGNORE
    return {"input_ids": ids[:, :-1], "targets": tgt, "position_ids": stacked["position_ids"][:, :-1],
            "index": stacked["index"], "epoch": stacked["epoch"]}


class TrainStream:
    """Endless micro-batches for one rank, crossing epochs (each epoch reshuffled by
    ``(seed, epoch)``). ``consumed_samples`` counts samples taken by all ranks since
    the start of training; it alone determines where the stream resumes."""

    def __init__(self, recipe: TrainRecipe, rank: int, world: int, consumed_samples: int = 0):
        from ..tokenize.reader import PackedReader

        self.r = recipe
        self.rank, self.world = rank, world
        self.mbs = recipe.trainer.micro_batch_size
        d = recipe.data
        self._open = lambda epoch, start: PackedReader(
            d.train, seq_len=d.seq_len, seed=recipe.trainer.seed, epoch=epoch, start_sample=start, rank=rank,
            world_size=world, split=d.train_split, cache_dir=d.cache_dir, shuffle_docs=d.shuffle,
            shuffle_samples=d.shuffle)
        probe = self._open(0, 0)
        self.epoch_samples = probe.usable      # same for every epoch (same documents, same total)
        if self.epoch_samples < world:
            raise ValueError(f"data.train: only {probe.num_samples} packed samples of {d.seq_len} tokens; "
                             f"need at least {world} (one per worker)")
        self.has_mask = probe.has_mask
        self.epoch, start = divmod(int(consumed_samples), self.epoch_samples)
        self._it = iter(self._open(self.epoch, start))

    def _next_sample(self) -> dict:
        while True:
            try:
                return next(self._it)
            except StopIteration:
                self.epoch += 1
                self._it = iter(self._open(self.epoch, 0))

    def next_batch(self) -> dict:
        from ..tokenize.reader import _stack

        return to_batch(_stack([self._next_sample() for _ in range(self.mbs)]))


def valid_batches(recipe: TrainRecipe, rank: int, world: int) -> list[dict]:
    """The first ``eval_batches`` micro-batches of this rank's share of the validation
    split (unshuffled, so every evaluation sees the same tokens)."""
    from ..tokenize.reader import PackedReader

    src = valid_source(recipe)
    if src is None:
        return []
    d, t = recipe.data, recipe.trainer
    r = PackedReader(src, seq_len=d.seq_len, seed=t.seed, rank=rank, world_size=world, split=d.valid_split,
                     cache_dir=d.cache_dir, shuffle_docs=False, shuffle_samples=False)
    if r.usable < world:
        raise ValueError(f"validation data has {r.num_samples} packed samples of {d.seq_len} tokens; "
                         f"need at least {world}")
    out = []
    for b in r.batches(min(t.micro_batch_size, max(1, len(r))), drop_last=True):
        out.append(to_batch(b))
        if len(out) >= t.eval_batches:
            break
    return out


def valid_source(recipe: TrainRecipe):
    d = recipe.data
    if d.valid is not None:
        return d.valid
    if isinstance(d.train, str):
        from ..tokenize.reader import load_dataset_manifest

        m, _ = load_dataset_manifest(d.train)
        if d.valid_split in m.get("splits", {}):
            return d.train
    return None


def heldout_conversations(recipe: TrainRecipe, n: int) -> list[dict]:
    """Whole held-out instruction documents for generation-based evaluation:
    ``prompt_ids`` = tokens before the first target token, ``reference_ids`` = the
    first contiguous run of target tokens (the first assistant turn)."""
    from ..tokenize.indexed import IndexedShard
    from ..tokenize.reader import resolve_shards

    src = valid_source(recipe)
    if src is None or n <= 0:
        return []
    prefixes, _ = resolve_shards(src, recipe.data.valid_split) if isinstance(src, str) else (list(src), None)
    out = []
    for p in prefixes:
        sh = IndexedShard(p, cache_dir=recipe.data.cache_dir)
        if not sh.has_mask:
            continue
        for i in range(len(sh)):
            ids = np.asarray(sh.get(i), np.int64)
            mask = np.asarray(sh.get_mask(i))
            on = np.flatnonzero(mask)
            if not len(on) or on[0] == 0:
                continue
            a = int(on[0])
            b = a
            while b < len(mask) and mask[b]:
                b += 1
            out.append({"prompt_ids": ids[:a].tolist(), "reference_ids": ids[a:b].tolist()})
            if len(out) >= n:
                return out
    return out
