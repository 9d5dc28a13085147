"""Messages for a name that is not one of the known choices, with a
"did you mean" for the closest one. No imports from the package, so any
module (recipe checks, readers, the stage registry) can use it."""
from __future__ import annotations

import difflib


def did_you_mean(word: str, choices: list[str]) -> str:
    """'; did you mean 'x'?' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_name(kind: str, word: str, choices: list[str]) -> str:
    return f"unknown {kind} {word!r}{did_you_mean(word, choices)} (known: {', '.join(choices)})"
