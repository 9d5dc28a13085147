"""Duplicate removal: exact (normalised-text hash, URL) in exact.py, MinHash
LSH near-duplicates in near.py, evaluation-set decontamination in decontaminate.py."""
