"""`lmrefinery instruct ...` commands.

  serve MODEL_DIR --port P          OpenAI-compatible server over a local HF model
  construct --table T --task K      task table -> instruction pairs (templates)
  self-instruct --seeds S           Self-Instruct rounds through a backend
  evol --input R                    Evol-Instruct generations through a backend
  augment --input R --kind K        paraphrase | expand | back_translation | synonyms
  score --input R --ifd-model M     IFD (local causal LM) and/or --judge (backend) scores as columns
  filter --input R                  pair filters, rejects with reasons
  build --input R --prefix P        filter, prompt dedup, balance, split, export -> a new version
  diff A B                          what changed between two versions
Records files are JSONL document rows (``{"id","text","source","lang","meta":{"messages":[...]}}``)
or the Parquet parts a recipe stage wrote.

One module per command family, each with its ``register``: ``serve.py``; ``generate.py``
(construct, self-instruct, evol); ``refine.py`` (augment, score, filter); ``versions.py``
(build, diff); the options they share in ``common.py``.
"""
from __future__ import annotations

import argparse

from . import generate, refine, serve, versions
from .common import make_backend_from_args
from .versions import build

__all__ = ["build", "make_backend_from_args", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("instruct", help="instruction data: construct, generate, augment, filter, build versions")
    s = p.add_subparsers(dest="instruct_cmd", required=True)
    for family in (serve, generate, refine, versions):
        family.register(s)
