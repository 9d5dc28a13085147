"""Helpers shared by tests that compare whole pipeline runs."""
from __future__ import annotations

import json
import os


def part_hashes(out: str) -> dict[str, list[str]]:
    """sha256 of every output part, per stage, from the run's manifests."""
    hashes = {}
    for stage in sorted(os.listdir(os.path.join(out, "stages"))):
        with open(os.path.join(out, "stages", stage, "_manifest.json")) as f:
            hashes[stage] = [o["sha256"] for o in json.load(f)["outputs"]]
    return hashes
