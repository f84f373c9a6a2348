"""Stable entity ids: the anchor policy of DESIGN.md as DataFrame transforms.

- A new entity takes the id of its anchor record: the oldest record by source timestamp, ties
  broken by source priority, then record_key. The anchor is the primary record.
- Entities that become connected merge: the older entity's id survives (older = its anchor
  is older under the same ordering), the others are retired (lineage MERGED / RETIRED).
- An entity that falls apart splits: the part holding most of its records keeps the id (tie:
  the part holding its old primary, then the smallest cluster key); other parts take their own
  anchor's id (lineage SPLIT).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from resolution.clustering import COMPONENT, NODE
from resolution.rules import anchor_order
from resolution.schemas import (  # MERGED, RETIRED, SPLIT: importable from here as before
    ENTITY_ID,
    EVENT,
    IS_PRIMARY,
    MERGED,
    OTHER_ENTITY_ID,
    RECORD_COUNT,
    RECORD_KEY,
    RETIRED,
    SOURCE,
    SOURCE_ID,
    SOURCE_PRIORITY,
    SOURCE_TIMESTAMP,
    SPLIT,
)

CLUSTER = "cluster"
_AGE = "__age_"  # prefix of an old entity's anchor columns (its age, by the anchor order)


def clusters_for_records(records: DataFrame, components: DataFrame) -> DataFrame:
    """Every record with its cluster key: its component, or itself when it has no link."""
    return records.join(
        components.select(F.col(NODE).alias(RECORD_KEY), F.col(COMPONENT).alias(CLUSTER)),
        RECORD_KEY,
        "left",
    ).select(
        RECORD_KEY,
        SOURCE,
        SOURCE_ID,
        SOURCE_PRIORITY,
        SOURCE_TIMESTAMP,
        F.coalesce(F.col(CLUSTER), F.col(RECORD_KEY)).alias(CLUSTER),
    )


def _ranked(frame: DataFrame, partition: str) -> DataFrame:
    return frame.withColumn("__rank", F.row_number().over(Window.partitionBy(partition).orderBy(*anchor_order())))


def assign_entity_ids(
    clustered: DataFrame, previous: DataFrame, *, taken: DataFrame | None = None
) -> DataFrame:
    """Give each cluster an entity id, keeping ids from ``previous`` membership stable.

    ``clustered``: record_key, source, source_id, source_priority, source_timestamp, cluster.
    ``previous``: record_key, entity_id, is_primary of the last committed membership (empty on
    a first run). Returns the membership: record_key, source, source_id, entity_id, is_primary.
    ``taken``: ``entity_id`` of every id in use or retired anywhere (default: those in
    ``previous``); a new entity never reuses one. :func:`id_events` derives the lineage.
    """
    anchors = (
        _ranked(clustered, CLUSTER)
        .filter(F.col("__rank") == 1)
        .select(CLUSTER, F.col(RECORD_KEY).alias("__anchor_key"))
    )
    taken = previous.select(ENTITY_ID) if taken is None else taken.select(ENTITY_ID)
    joined = _with_previous(clustered, previous)
    won = _claims(joined).filter(F.col("__claim_rank") == 1)
    # A cluster that won several old ids keeps the oldest one (the merge rule): entity age is
    # its current anchor among the records it held before.
    old_anchor = (
        _ranked(joined.filter(F.col("__prev_id").isNotNull()), "__prev_id")
        .filter(F.col("__rank") == 1)
        .select(
            "__prev_id",
            *[F.col(name).alias(_AGE + name) for name in (SOURCE_TIMESTAMP, SOURCE_PRIORITY, RECORD_KEY)],
        )
    )
    survivor_order = Window.partitionBy(CLUSTER).orderBy(*anchor_order(_AGE))
    kept = (
        won.join(old_anchor, "__prev_id")
        .withColumn("__survivor_rank", F.row_number().over(survivor_order))
        .filter(F.col("__survivor_rank") == 1)
        .select(CLUSTER, F.col("__prev_id").alias(ENTITY_ID))
    )
    fresh = anchors.join(kept, CLUSTER, "left_anti").select(
        CLUSTER, F.col("__anchor_key").alias(ENTITY_ID)
    )
    # An anchor key already used as a live or retired id cannot be reused: suffix it.
    taken = taken.select(F.col(ENTITY_ID).alias("__taken")).distinct()
    fresh = fresh.join(taken, fresh[ENTITY_ID] == taken["__taken"], "left").select(
        CLUSTER,
        F.when(F.col("__taken").isNull(), F.col(ENTITY_ID))
        .otherwise(F.concat(F.col(ENTITY_ID), F.lit("#"), F.col(CLUSTER)))
        .alias(ENTITY_ID),
    )
    return _membership(clustered, kept.unionByName(fresh))


def id_events(clustered: DataFrame, previous: DataFrame, membership: DataFrame) -> DataFrame:
    """The lineage of an id assignment: entity_id, other_entity_id, event, record_count.

    ``MERGED``/``RETIRED``: a cluster won several old ids and kept one (its entity_id); the
    others are retired into it. ``SPLIT``: a cluster holding part of an old entity without
    winning any old id split off under its own id. ``RETIRED`` with no other id: none of the
    old entity's records is live any more. Computed from the (materialized) ``membership``, so
    the id assignment is not planned twice.
    """
    joined = _with_previous(clustered, previous)
    claims = _claims(joined)
    entity_of = membership.join(clustered.select(RECORD_KEY, CLUSTER), RECORD_KEY).select(
        CLUSTER, ENTITY_ID
    ).distinct()
    won = claims.filter(F.col("__claim_rank") == 1).join(entity_of, CLUSTER)
    merged = won.filter(F.col("__prev_id") != F.col(ENTITY_ID)).select(
        ENTITY_ID, F.col("__prev_id").alias(OTHER_ENTITY_ID)
    )
    split_off = (
        claims.filter(F.col("__claim_rank") > 1)
        .join(won.select(CLUSTER), CLUSTER, "left_anti")
        .join(entity_of, CLUSTER)
        .select(F.col("__prev_id").alias(ENTITY_ID), F.col(ENTITY_ID).alias(OTHER_ENTITY_ID))
        .distinct()
    )
    vanished = (
        previous.select(F.col(ENTITY_ID).alias("__prev_id")).distinct()
        .join(claims.select("__prev_id"), "__prev_id", "left_anti")
        .select(F.col("__prev_id").alias(ENTITY_ID), F.lit(None).cast("string").alias(OTHER_ENTITY_ID))
    )
    sizes = membership.groupBy(ENTITY_ID).agg(F.count(F.lit(1)).alias(RECORD_COUNT))
    return (
        merged.withColumn(EVENT, F.lit(MERGED))
        .unionByName(
            merged.select(
                F.col(OTHER_ENTITY_ID).alias(ENTITY_ID),
                F.col(ENTITY_ID).alias(OTHER_ENTITY_ID),
            ).withColumn(EVENT, F.lit(RETIRED))
        )
        .unionByName(split_off.withColumn(EVENT, F.lit(SPLIT)))
        .unionByName(vanished.withColumn(EVENT, F.lit(RETIRED)))
        .join(sizes, ENTITY_ID, "left")
        .select(ENTITY_ID, OTHER_ENTITY_ID, EVENT, RECORD_COUNT)
    )


def _previous_columns(previous: DataFrame) -> DataFrame:
    return previous.select(
        RECORD_KEY, F.col(ENTITY_ID).alias("__prev_id"), F.col(IS_PRIMARY).alias("__prev_primary")
    )


def _with_previous(clustered: DataFrame, previous: DataFrame) -> DataFrame:
    return clustered.join(_previous_columns(previous), RECORD_KEY, "left")


def _claims(joined: DataFrame) -> DataFrame:
    """Per (cluster, old id): records held, whether it holds the old primary, and its rank.

    Each old id goes to the cluster holding most of its records (the split rule; ties: the
    cluster holding the old primary, then the smallest cluster key): ``__claim_rank`` 1.
    """
    overlap = (
        joined.filter(F.col("__prev_id").isNotNull())
        .groupBy(CLUSTER, "__prev_id")
        .agg(
            F.count(F.lit(1)).alias("__held"),
            F.max(F.col("__prev_primary").cast("int")).alias("__holds_primary"),
        )
    )
    winner = Window.partitionBy("__prev_id").orderBy(
        F.col("__held").desc(), F.col("__holds_primary").desc(), F.col(CLUSTER).asc()
    )
    return overlap.withColumn("__claim_rank", F.row_number().over(winner))


def _membership(clustered: DataFrame, ids: DataFrame) -> DataFrame:
    joined = clustered.join(ids, CLUSTER)
    ranked = _ranked(joined, CLUSTER)
    return ranked.select(
        RECORD_KEY,
        SOURCE,
        SOURCE_ID,
        ENTITY_ID,
        (F.col("__rank") == 1).alias(IS_PRIMARY),
    )


# ------------------------------------------------------------------- the same policy, in Python


@dataclass(frozen=True)
class LocalIds:
    """What :func:`assign_ids_locally` decided: ``membership`` rows as :func:`assign_entity_ids`
    returns them, ``events`` rows as :func:`id_events` does, and the ``fresh`` ids (entities
    this assignment created)."""

    membership: list[tuple]
    events: list[tuple]
    fresh: frozenset[str]


def _anchor_sort(record: Mapping[str, Any]) -> tuple:
    """:func:`anchor_order` as a sort key, ``source_timestamp`` in epoch microseconds (as
    collected by :func:`collect_for_ids`, so the process's time zone plays no part): a null
    timestamp last, a null priority first, as Spark sorts them ascending."""
    moment, priority, key = record[SOURCE_TIMESTAMP], record[SOURCE_PRIORITY], record[RECORD_KEY]
    return (moment is None, moment or 0, priority is not None, priority or 0, key)


def collect_for_ids(clustered: DataFrame, previous: DataFrame, limit: int) -> tuple[list, list] | None:
    """The rows :func:`assign_ids_locally` takes, in one job, or None when they are more than
    ``limit`` (the region is then left to Spark)."""
    rows = (
        clustered.withColumn(SOURCE_TIMESTAMP, F.unix_micros(SOURCE_TIMESTAMP))
        .join(_previous_columns(previous), RECORD_KEY, "full")
        .limit(limit + 1)
        .collect()
    )
    if len(rows) > limit:
        return None
    records, olds = [], []
    for row in rows:
        if row["__prev_id"] is not None:
            olds.append({RECORD_KEY: row[RECORD_KEY], ENTITY_ID: row["__prev_id"], IS_PRIMARY: row["__prev_primary"]})
        if row[CLUSTER] is not None:  # live (a deleted record has only its committed row)
            records.append(row.asDict())
    return records, olds


def assign_ids_locally(
    clustered: Iterable[Mapping[str, Any]],
    previous: Iterable[Mapping[str, Any]],
    taken: Callable[[set[str]], set[str]],
) -> LocalIds:
    """:func:`assign_entity_ids` and :func:`id_events` on the driver, for a region small
    enough to collect (an incremental run's): the same rules, row for row (the conformance
    tests run both on the same inputs).

    ``clustered`` and ``previous`` are the rows those functions take (``source_timestamp``
    in epoch microseconds); ``taken(ids)`` answers which of ``ids`` are in use or retired
    anywhere (one lookup in the tables). It is asked about each new entity's anchor key and
    the suffixed id that key would take, so that its caller can tell an id in use apart.

    ``previous`` may hold committed rows of records no longer live (deleted): their entity is
    retired when no live record holds it.
    """
    records = [dict(r) for r in clustered]
    before = {r[RECORD_KEY]: r for r in previous}
    by_cluster: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_cluster[record[CLUSTER]].append(record)
    for members in by_cluster.values():
        members.sort(key=_anchor_sort)
    # claims: per old id, the clusters holding its records; the winner holds most (then the
    # old primary, then the smallest cluster key)
    held: Counter = Counter()
    primary: dict[tuple[str, str], int] = {}
    holders: dict[str, list[dict]] = defaultdict(list)  # old id -> its records still live
    for record in records:
        old = before.get(record[RECORD_KEY])
        if old is None:
            continue
        claim = (record[CLUSTER], old[ENTITY_ID])
        held[claim] += 1
        flag = old[IS_PRIMARY]
        if flag is not None:
            primary[claim] = max(primary.get(claim, -1), int(flag))
        holders[old[ENTITY_ID]].append(record)
    claims: dict[str, list[str]] = defaultdict(list)  # old id -> clusters, winner first
    for cluster, old_id in held:
        claims[old_id].append(cluster)
    for old_id, clusters in claims.items():
        clusters.sort(key=lambda c: (-held[(c, old_id)], -primary.get((c, old_id), -1), c))
    won: dict[str, list[str]] = defaultdict(list)  # cluster -> the old ids it won
    for old_id, clusters in claims.items():
        won[clusters[0]].append(old_id)
    # a cluster that won several old ids keeps the oldest (by its anchor among live records)
    age = {old_id: _anchor_sort(min(rows, key=_anchor_sort)) for old_id, rows in holders.items()}
    ids = {cluster: min(old_ids, key=lambda i: age[i]) for cluster, old_ids in won.items()}
    anchors = {cluster: members[0][RECORD_KEY] for cluster, members in by_cluster.items() if cluster not in ids}
    used = taken(set(anchors.values()) | {f"{key}#{cluster}" for cluster, key in anchors.items()})
    fresh = {cluster: key if key not in used else f"{key}#{cluster}" for cluster, key in anchors.items()}
    ids.update(fresh)
    membership = [
        (r[RECORD_KEY], r[SOURCE], r[SOURCE_ID], ids[cluster], i == 0)
        for cluster, members in by_cluster.items()
        for i, r in enumerate(members)
    ]
    sizes = Counter(ids[r[CLUSTER]] for r in records)
    events: list[tuple] = []
    for cluster, old_ids in won.items():
        for old_id in old_ids:
            if old_id != ids[cluster]:
                events.append((ids[cluster], old_id, MERGED, sizes.get(ids[cluster])))
                events.append((old_id, ids[cluster], RETIRED, sizes.get(old_id)))
    split = {(old_id, ids[c]) for old_id, clusters in claims.items() for c in clusters[1:] if c not in won}
    events += [(old_id, other, SPLIT, sizes.get(old_id)) for old_id, other in sorted(split)]
    gone = {r[ENTITY_ID] for r in before.values()} - set(claims)
    events += [(old_id, None, RETIRED, sizes.get(old_id)) for old_id in sorted(gone)]
    return LocalIds(membership, events, frozenset(fresh.values()))
