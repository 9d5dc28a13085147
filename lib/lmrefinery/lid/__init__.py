"""Language identification (fastText lid.176)."""
