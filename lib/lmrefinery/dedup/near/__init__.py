"""The `dedup` stage: near-duplicate removal with MinHash LSH, at any scale.

Rounds of map tasks over files (the engine runs them; nothing collects all
signatures or all documents in one process):

  1. sign     per input part: shingles -> MinHash -> band keys. Writes the
              part's *index*: band keys into B bucket files, document info
              (rank fields) into B node partitions, sorted shingle hashes.
  2. band     per bucket: sort by band key; every group of equal keys gives
              star edges (smallest node -> each other member).
  3. verify   (optional, two rounds) each candidate edge collects the shingle
              set of one end, then the other, and survives if the exact
              Jaccard of the two sets reaches the threshold.
  4. cc       connected components. Ray/local: alternating large-star and
              small-star rounds as map tasks over edge files partitioned by
              node (components.py); Spark: the same two operators as DataFrame
              joins (components_spark.py). Both
              end with every node labelled by the smallest node of its
              component, so clusters are identical by construction.
  5. label    per node partition: join labels with document info, route each
              member to the bucket of its cluster.
  6. choose   per cluster bucket: sort members (preferred source, quality,
              length, then id), keep the first, write the others as drops and
              the cluster table (cluster, size, kept member) for inspection.
  7. apply    per input part: drop the losers (reason near_duplicate, or
              exact_duplicate when the normalised text equals the keeper's).

Incremental: the index of every run is kept under ``<stage_dir>/index``; a
later run lists earlier indexes in ``against`` and their band keys and
document info take part in rounds 2-6 without recomputing their signatures.
Documents of earlier releases are never dropped and win every cluster they
are in, so the decisions about new documents equal those of one run over
everything with the earlier sources preferred.

One module per round (sign, band, verify, components, label, choose, apply), each a
module-level function over a frozen dataclass task returning a small typed result;
params.py, files.py (paths, file layout, indexes) and report.py (timings, counters,
dedup_report.json) beside them; stage.py runs the rounds in order.
"""
from .components import cc_files
from .components_spark import cc_spark
from .files import INDEX_VERSION, IndexRef, node_ids, resolve_index, write_adjacency
from .params import NearParams
from .stage import NearDedup

__all__ = ["INDEX_VERSION", "IndexRef", "NearDedup", "NearParams", "cc_files", "cc_spark", "node_ids",
           "resolve_index", "write_adjacency"]
