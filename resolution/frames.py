"""Small DataFrame helpers the run's stages share: materializing, unions, counts."""

from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

ROWS_PER_PARTITION = 50_000  # for materialized intermediate frames
BROADCAST_ROWS = 100_000  # a materialized frame this small is broadcast in joins


def materialize(frame: DataFrame) -> DataFrame:
    """Compute ``frame`` now and cut its lineage.

    Later steps then plan against a short lineage: without this the plans of a run nest the
    whole chain (standardization, Splink's SQL, clustering) and planning alone can exhaust the
    driver's heap.

    Unions (sources, standardization per source) multiply partitions, and a few hundred
    changed rows spread over dozens of partitions cost a task each in every later step, so a
    frame with more partitions than its rows need is coalesced (no shuffle).

    A frame small enough to ship to every executor is marked for broadcast: joined with a
    large table it then needs no shuffle (Spark's size estimate of a checkpoint is its origin
    plan's, often far above the real size, so the planner would not see it is small).
    """
    # lazy: the count computes and keeps the partitions (one job, where an eager checkpoint
    # then a count take two or more)
    checkpointed = frame.localCheckpoint(eager=False)
    rows = checkpointed.count()
    partitions = checkpointed.rdd.getNumPartitions()
    wanted = max(1, -(-rows // ROWS_PER_PARTITION))
    if wanted < partitions:
        checkpointed = checkpointed.coalesce(wanted)
    return F.broadcast(checkpointed) if rows <= BROADCAST_ROWS else checkpointed


def union_all(frames: list[DataFrame]) -> DataFrame:
    return reduce(lambda left, right: left.unionByName(right), frames)


def count_map(frame: DataFrame, column: str) -> dict[str, int]:
    return {row[0]: row[1] for row in frame.groupBy(column).count().collect() if row[0] is not None}
