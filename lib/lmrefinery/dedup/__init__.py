"""Duplicate removal: exact (normalised-text hash, URL) in exact.py over the shared
exact-key rounds of exact_rounds.py, MinHash LSH near-duplicates in the near/ package
(one module per round), evaluation-set decontamination in decontaminate.py; drops.py
holds what the global dedup stages share (drop files, the apply step)."""
