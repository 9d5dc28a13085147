"""Checks on the driver before any Ray Train worker starts. A data problem is
deterministic: raised inside the workers, Ray Train would retry it
``max_failures`` times (minutes of start-ups) before failing; raised here it is
a RecipeError (exit 2) naming the key and the data."""
from __future__ import annotations

import os

from ..core import storage
from ..core.recipe import RecipeError
from .config import TrainRecipe


def _src(recipe: TrainRecipe) -> str:
    return recipe.source_file or "<train recipe>"


def _as_written(path: str) -> str:
    """A missing local path as the user wrote it: recipes make paths absolute against the
    working directory (config.absolute_paths), which would hide that 'gpt2' is a Hub id."""
    if storage.is_s3(path) or os.path.exists(path):
        return path
    rel = os.path.relpath(path, os.getcwd())
    return path if rel.startswith("..") else rel


def check_paths(recipe: TrainRecipe) -> None:
    from ..core.preflight import tokenizer_problem

    problem = tokenizer_problem(_as_written(recipe.tokenizer))
    if problem:
        raise RecipeError(f"{_src(recipe)}: key 'tokenizer': {problem}")
    t = recipe.trainer
    if t.backend == "local" and t.use_gpu:
        import torch

        if not torch.cuda.is_available():
            raise RecipeError(f"{_src(recipe)}: key 'trainer.use_gpu': true, but this process sees no CUDA "
                              f"device (trainer.backend=local trains here); set trainer.use_gpu=false to train "
                              f"on the CPU")
    init = recipe.model.init
    if init != "scratch" and not storage.is_s3(init) and not os.path.isdir(init):
        raise RecipeError(f"{_src(recipe)}: key 'model.init': {init}: no such folder (a Hugging Face model "
                          "folder saved locally; Hub ids are not supported offline)")


def check_data(recipe: TrainRecipe) -> dict:
    """Packed samples available for training and validation at ``trainer.workers``
    ranks; raises RecipeError where the workers would fail."""
    from ..tokenize.reader import PackedReader
    from .data import valid_source

    d, t = recipe.data, recipe.trainer
    world = t.workers

    def reader(source, split: str) -> PackedReader:
        try:
            return PackedReader(source, seq_len=d.seq_len, seed=t.seed, rank=0, world_size=world, split=split,
                                cache_dir=d.cache_dir, shuffle_docs=False, shuffle_samples=False)
        except (FileNotFoundError, KeyError, ValueError) as e:
            raise RecipeError(f"{_src(recipe)}: key 'data.{split}': cannot open {source!r}: {e}") from None

    train = reader(d.train, d.train_split)
    if train.usable < world:
        raise RecipeError(f"{_src(recipe)}: key 'data.train': only {train.num_samples} packed samples of "
                          f"{d.seq_len} tokens in {d.train!r}; need at least {world} (one per worker, "
                          f"trainer.workers={world}); lower data.seq_len or trainer.workers, or add data")
    out = {"train_samples": train.num_samples}
    src = valid_source(recipe)
    if src is not None:
        valid = reader(src, d.valid_split)
        if valid.usable < world:
            raise RecipeError(f"{_src(recipe)}: key 'data.valid': validation data ({src!r}, split "
                              f"{d.valid_split!r}) has {valid.num_samples} packed samples of {d.seq_len} tokens; "
                              f"need at least {world} (trainer.workers={world}); lower data.seq_len or "
                              f"trainer.workers, or give a larger data.valid")
        out["valid_samples"] = valid.num_samples
    return out
