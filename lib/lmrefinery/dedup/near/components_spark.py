"""Round 4 on the Spark engine: connected components with DataFrame joins, the same
large-star / small-star operators as components.py, ending with the same labels (every
node -> the smallest node of its component), written in the same partition layout."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...core import storage


def cc_spark(work: str, K: int, max_rounds: int) -> tuple[str, int]:
    """Connected components with Spark DataFrame joins (large-star / small-star)."""
    from ...engines.spark_engine import get_spark

    spark = get_spark()
    files = storage.list_files(storage.join(work, "cc", "r000"))
    out = storage.join(work, "lab", "spark")
    if not files:
        return out, 0
    # Each round is a handful of small shuffles over checkpointed data; adaptive
    # re-planning only adds jobs there, so it is off for this loop and restored after.
    aqe = spark.conf.get("spark.sql.adaptive.enabled", "true")
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try:
        return _cc_spark_rounds(spark, files, out, K, max_rounds)
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", aqe)


def _read_edges(batches: Iterator[Any]) -> Iterator[Any]:
    from lmrefinery.core import storage as st

    for bt in batches:
        for path in bt.column("path").to_pylist():
            yield from st.read_parquet(path, columns=["src", "dst"]).to_batches()


def _star_round(E: Any) -> tuple[Any, tuple[int, ...]]:
    """One large-star then small-star over edges E (a > b): the new edges and an
    order-free fingerprint of them."""
    from pyspark.sql import functions as F

    # large-star
    nb = E.select(F.col("a").alias("u"), F.col("b").alias("v")).unionByName(
        E.select(F.col("b").alias("u"), F.col("a").alias("v")))
    mn = nb.groupBy("u").agg(F.min("v").alias("mv")).select("u", F.least("mv", "u").alias("m"))
    L = nb.join(mn, "u").where(F.col("v") > F.col("u")).select(F.col("v").alias("a"), F.col("m").alias("b"))
    L = L.where(F.col("a") != F.col("b")).distinct()
    # small-star (edges a > b: b is a smaller neighbour of a)
    ms = L.groupBy("a").agg(F.min("b").alias("m"))
    S = L.join(ms, "a").where(F.col("b") != F.col("m")).select(F.col("b").alias("a"), F.col("m").alias("b"))
    S = S.unionByName(ms.select("a", F.col("m").alias("b"))).distinct().localCheckpoint()
    # order-free fingerprint of the edge set: count and two checksums (long-safe under ANSI)
    h = F.xxhash64("a", "b")
    fp = S.agg(F.count(F.lit(1)), F.sum(F.pmod(h, F.lit(2147483629))),
               F.sum(F.pmod(F.xxhash64("b", "a"), F.lit(2147483587)))).first()
    return S, tuple(int(x or 0) for x in fp)


def _write_labels(out: str) -> Any:
    """The mapInArrow function writing each node partition's labels under `out`."""

    def write(batches: Iterator[Any]) -> Iterator[Any]:
        import numpy as _np
        import pyarrow as _pa

        from lmrefinery.core import storage as st

        parts = [b for b in batches if b.num_rows]
        if not parts:
            return
        tb = _pa.Table.from_batches(parts)
        kk = tb.column("k").to_numpy()
        for k in _np.unique(kk):
            sub = tb.filter(_pa.array(kk == k)).select(["node", "root"])
            st.write_parquet(sub, st.join(out, f"p{int(k):05d}", "labels.parquet"))
        yield _pa.RecordBatch.from_arrays([_pa.array([tb.num_rows], _pa.int64())], names=["n"])

    return write


def _cc_spark_rounds(spark: Any, files: list[str], out: str, K: int, max_rounds: int) -> tuple[str, int]:
    from pyspark.sql import functions as F

    paths = spark.createDataFrame([(f,) for f in files], "path string").repartition(min(len(files), 4 * K))
    adj = paths.mapInArrow(_read_edges, "src long, dst long")
    E = (adj.select(F.greatest("src", "dst").alias("a"), F.least("src", "dst").alias("b"))
         .where(F.col("a") != F.col("b")).distinct().localCheckpoint())
    rounds: int = 0
    prev: tuple[int, ...] | None = None
    while True:
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError(f"dedup: connected components did not converge in {max_rounds} rounds")
        E, fp = _star_round(E)
        if fp == prev:
            break
        prev = fp
    labels = (E.select(F.col("a").alias("node"), F.col("b").alias("root"))
              .unionByName(E.select(F.col("b").alias("node"), F.col("b").alias("root"))).distinct()
              .withColumn("k", F.pmod(F.col("node"), F.lit(K))).repartition(K, "k"))
    labels.mapInArrow(_write_labels(out), "n long").collect()
    return out, rounds
