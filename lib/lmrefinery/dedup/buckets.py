"""How many buckets the bucket rounds of a dedup stage use when the recipe leaves
`buckets` unset.

A bucket round (exact_dedup's choose; dedup's band, components, label and choose) holds
1/`buckets` of the corpus in one task, and what it holds is per document (a key row per
document, 14 band rows per document, a row of document info per document), whatever
the documents' length. So the count follows the stage's input documents:

    buckets = min(MAX_BUCKETS, max(DEFAULT_BUCKETS, ceil(documents / bucket_docs)))

`documents` is the rows of the stage's input parts, from the manifest of the stage
before: a function of the input alone, never of the engine or the number of workers,
so the same input always gets the same layout, and the fingerprint (which covers the
input) needs no extra term. Which document a stage keeps does not depend on the count:
every copy of a key (or band key, or cluster root) lands in one bucket whatever the
count is, and the keeper is chosen within it by rules that do not look at buckets
(tests/test_dedup.py checks kept rows, rejects and clusters against 8 buckets). What
does change with the count: the layout of dedup's `index/` and `clusters/` (an index
is joined by a later `against` run only with the same count, so such a run takes the
earlier index's count), and with `verify: false` the `candidate_pairs` counter, which
counts a pair once per bucket it was found in.

BUCKET_DOCS is measured (bench/dedup_buckets.py: one bucket task of each round in a
fresh process, 125k to 1M documents in the bucket; bench/results/dedup_buckets.json):
`band` grows by 1.5-2.0 KB per document of its bucket (14 band rows, sorted), exact
`choose` by 0.4-0.5 KB, `label` by 0.2-0.3 KB. At 65,536 documents per bucket the
largest, `band`, adds about 100-130 MB to its task: no more than the per-part tasks
(read, sign, apply of an 8 MiB part) already take. A smaller target would multiply the
files of the hash and sign rounds (one per part and bucket) for no gain. Inputs below
DEFAULT_BUCKETS x BUCKET_DOCS = 524,288 documents get 8 buckets, as before. Past
MAX_BUCKETS x BUCKET_DOCS (268 M documents) the count stops at MAX_BUCKETS and a
bucket grows again.
"""
from __future__ import annotations

import math

DEFAULT_BUCKETS = 8
BUCKET_DOCS = 65_536
MAX_BUCKETS = 4096  # the most a recipe may set (file names carry 4 digits)


def auto_buckets(documents: int, bucket_docs: int = BUCKET_DOCS) -> int:
    """The bucket count for a stage input of `documents` documents."""
    return min(MAX_BUCKETS, max(DEFAULT_BUCKETS, math.ceil(documents / bucket_docs)))


def why_auto(documents: int, bucket_docs: int) -> str:
    """What the manifest says about a count auto_buckets chose."""
    return (f"from the input: {documents} documents, one bucket per {bucket_docs} "
            f"(at least {DEFAULT_BUCKETS}, at most {MAX_BUCKETS})")


__all__ = ["BUCKET_DOCS", "DEFAULT_BUCKETS", "MAX_BUCKETS", "auto_buckets", "why_auto"]
