"""Augmentation. Every new record has ``origin`` (``paraphrase``, ``expand``,
``back_translation``, ``synonyms``) and ``parent_id``.

* Through a generation backend (``paraphrase.py``): paraphrase the instruction,
  expand it into a more detailed one (then answer it), or back-translate it
  (en->zh->en, zh->en->zh; ``back_translation.py``, by chat prompts or local
  seq2seq models). Code blocks are swapped for placeholders before the text goes
  to the model and put back verbatim after (``variant.py``); output that loses a
  placeholder is rejected (``code_block_lost``). Every variant passes the
  ``VariantGate`` (``gate.py``).
* Synonym substitution from the shipped lexicons (``lexicon.py``), or from word
  vectors trained with fastText (skipgram) on the run's own records / a user
  dictionary (``word<TAB>syn1,syn2``) (``synonyms.py``); a seeded fraction of
  eligible words outside code is replaced.
"""
from __future__ import annotations

from .back_translation import Seq2SeqTranslator, Translator
from .gate import VariantGate
from .lexicon import lexicon_augment
from .paraphrase import PROMPTS, llm_augment
from .synonyms import SynonymModel, synonym_augment
from .variant import protect, restore

__all__ = ["PROMPTS", "Seq2SeqTranslator", "SynonymModel", "Translator", "VariantGate", "lexicon_augment",
           "llm_augment", "protect", "restore", "synonym_augment"]
