"""``lmrefinery ablate SPEC``: does curation make better models? Curation variants of
a pipeline recipe, one shared tokenizer, equal token budgets, seeds, held-out sets
decontaminated from every variant (``spec.py``, ``heldout.py``, ``run.py``, ``summary.py``)."""
