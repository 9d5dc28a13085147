"""Instruction data: normalise conversation rows, construct pairs from task
tables with templates, generate with an LLM (Self-Instruct, Evol-Instruct),
augment, filter, balance, split, export and version.

Records here are ordinary document rows (see ``core.schema.conversation_doc``):
the conversation is ``meta["messages"]``. Library functions work on lists of
row dicts whose ``meta`` is a dict; the stages in ``stages.py`` wrap them for
recipes."""
