"""`lmrefinery rejects` and `lmrefinery report`: look at a finished run."""
from __future__ import annotations


def register(sub) -> None:
    pass
