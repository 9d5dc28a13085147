"""The `tokenize` stage: curated documents -> a tokenizer, mixed and globally
shuffled Megatron token shards, and a dataset manifest.

Rounds of engine map tasks over files (engine-neutral, bounded memory), one module each:
  0. train.py   - (only with `train:`) sample documents across (source, language)
                  groups by hash and train a byte-level BPE; otherwise the given
                  tokenizer is copied next to the shards.
  1. encode.py  - per input part: tokens (+ loss masks for conversations), the
                  train/valid split by content hash, token counts -> `_work/enc/`.
  -  plan.py    - the driver reads only the small columns and decides per-source
                  copies (mixing) and the shard count.
  2. scatter.py - per input part: instances with a shuffle key to the shard owning
                  that key range; the part's rows are committed.
  3. write.py   - per shard: sort its instances by key, write `.bin`/`.idx`
                  (+ `.mask` companion for instruction data).
  -  dataset.py - `dataset.json` from the shards and the rounds' summaries.
The global order is the key order, so shards are identical for any number of
workers and either engine. Settings are in params.py, shared helpers in work.py.
"""
from __future__ import annotations

import os
from typing import Any

from ..core import manifest as mf
from ..core import storage
from ..core.stage import Stage, register
from .dataset import TokenizerInfo, artifacts, dataset_manifest, split_entries
from .encode import EncodeTask, encode_part, get_encoder
from .indexed import dtype_for_vocab
from .params import Mixing, TokenizeParams, TrainTokenizer
from .plan import SPLITS, EmptySourceError, Plan, copies_of, plan_mixing, plan_rounds
from .reader import DATASET_MANIFEST
from .scatter import ScatterTask, scatter_part
from .train import train_tokenizer_rounds
from .work import TokenizeRun
from .write import WriteTask, WrittenShard, write_shard


@register
class TokenizeStage(Stage):
    name = "tokenize"
    kind = "global"
    Params = TokenizeParams
    params: TokenizeParams
    description = ("Tokenize (train or load a byte-level BPE), mix sources, shuffle globally and write "
                   "Megatron .bin/.idx shards (+ loss-mask companions for conversations) and dataset.json.")

    def execute(self, job: Any) -> list[dict[str, Any]]:
        run = TokenizeRun(self.params, job.work_dir, self.name, job.stage_dir, job.fingerprint,
                          int(job.ctx.get("seed", 0)), storage.join(job.stage_dir, "tokenizer"))
        tok_source, trained_on = self._tokenizer(job, run)
        encoded = job.map(encode_part, [EncodeTask(run, i, p) for i, p in enumerate(job.inputs)], "encode")
        input_weights = {i["name"]: i["weight"] for i in job.ctx.get("inputs", []) if i.get("weight") is not None}
        plan = plan_rounds(run, len(job.inputs), input_weights)
        with_mask = any(r.has_mask for r in encoded)
        encoder = get_encoder(run.tok_dir, self.params.add_bos, self.params.eos_token)
        dtype = dtype_for_vocab(encoder.vocab_size).name
        parts = self._scatter(job, run, plan)
        shards = self._write(job, run, plan, dtype, with_mask)
        splits = split_entries(shards)
        dataset = dataset_manifest(run, job.ctx.get("run_name"), dtype, with_mask,
                                   TokenizerInfo(tok_source, encoder, trained_on), encoded, plan, splits, parts)
        mf.write_json(storage.join(run.stage_dir, DATASET_MANIFEST), dataset)
        storage.delete_prefix(run.work)
        if parts:
            parts[0] = dict(parts[0], artifacts=artifacts(splits))
        return parts

    def _tokenizer(self, job: Any, run: TokenizeRun) -> tuple[str, dict[str, Any] | None]:
        """Round 0: train the tokenizer, or copy the given one next to the shards.
        Returns (where it came from, the training sample's stats)."""
        from .tokenizer import install_tokenizer

        given = self.params.tokenizer
        if given is None:
            return "trained", train_tokenizer_rounds(job, run)
        install_tokenizer(given, run.tok_dir)
        return (given if storage.is_s3(given) else os.path.abspath(given)), None

    @staticmethod
    def _scatter(job: Any, run: TokenizeRun, plan: Plan) -> list[dict[str, Any]]:
        tasks = [ScatterTask(run, i, p, storage.relpath(p, job.ctx["output_root"]), plan.mixing["plan"],
                             plan.n_shards) for i, p in enumerate(job.inputs)]
        parts: list[dict[str, Any]] = job.map(scatter_part, tasks, "scatter")
        return parts

    @staticmethod
    def _write(job: Any, run: TokenizeRun, plan: Plan, dtype: str, with_mask: bool) -> list[WrittenShard]:
        tasks = [WriteTask(run, sp, j, len(job.inputs), dtype, with_mask)
                 for sp in SPLITS for j in range(plan.n_shards[sp])]
        shards: list[WrittenShard] = job.map(write_shard, tasks, "write")
        return shards


__all__ = ["TokenizeStage", "TokenizeParams", "TrainTokenizer", "Mixing", "EmptySourceError", "plan_mixing",
           "copies_of", "write_shard"]
