"""Quality filtering: heuristic rule sets (Gopher, C4, FineWeb) and a fastText quality classifier."""
