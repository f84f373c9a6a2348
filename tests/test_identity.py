"""Entity id policy: anchor ids, merges keep the older id, splits keep the id with the majority."""

from __future__ import annotations

import datetime as dt
import random

from pyspark.sql.types import (
    BooleanType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from resolution.identity import assign_entity_ids, assign_ids_locally, collect_for_ids, id_events

CLUSTERED = StructType(
    [
        StructField("record_key", StringType()),
        StructField("source", StringType()),
        StructField("source_id", StringType()),
        StructField("source_priority", IntegerType()),
        StructField("source_timestamp", TimestampType()),
        StructField("cluster", StringType()),
    ]
)
PREVIOUS = StructType(
    [
        StructField("record_key", StringType()),
        StructField("entity_id", StringType()),
        StructField("is_primary", BooleanType()),
    ]
)


def _clustered(spark, rows):
    """rows: (record_key, priority, day of month or None, cluster)."""
    return spark.createDataFrame(
        [
            (key, key.split(":")[0], key.split(":")[1], priority, dt.datetime(2024, 1, day) if day else None, cluster)
            for key, priority, day, cluster in rows
        ],
        CLUSTERED,
    )


def _assign(spark, rows, previous=()):
    clustered = _clustered(spark, rows)
    old = spark.createDataFrame(list(previous), PREVIOUS)
    membership = assign_entity_ids(clustered, old)
    lineage = id_events(clustered, old, membership)
    members = {row.record_key: (row.entity_id, row.is_primary) for row in membership.collect()}
    events = sorted((row.entity_id, row.other_entity_id, row.event) for row in lineage.collect())
    return members, events


def test_new_entity_takes_its_anchor_id_oldest_then_priority_then_key(spark):
    members, events = _assign(
        spark,
        [
            ("web:9", 2, 3, "c1"),
            ("crm:5", 1, 3, "c1"),  # same day as web:9, better priority
            ("crm:7", 1, None, "c1"),  # no timestamp sorts last
            ("crm:1", 1, 5, "c2"),
            ("web:2", 2, 5, "c2"),
        ],
    )
    assert members["web:9"] == ("crm:5", False)
    assert members["crm:5"] == ("crm:5", True)
    assert members["crm:7"] == ("crm:5", False)
    assert members["crm:1"] == ("crm:1", True)
    assert members["web:2"] == ("crm:1", False)
    assert events == []


def test_unchanged_clusters_keep_their_ids_even_when_the_anchor_would_differ(spark):
    previous = [("crm:2", "crm:2", True), ("crm:3", "crm:2", False)]
    members, events = _assign(spark, [("crm:2", 1, 9, "x"), ("crm:3", 1, 1, "x")], previous)
    assert {key: entity for key, (entity, _) in members.items()} == {"crm:2": "crm:2", "crm:3": "crm:2"}
    assert events == []


def test_merge_keeps_the_older_entity_id_and_retires_the_other(spark):
    previous = [
        ("crm:1", "crm:1", True),
        ("crm:2", "crm:1", False),
        ("web:1", "web:1", True),
        ("web:2", "web:1", False),
    ]
    rows = [("crm:1", 1, 5, "m"), ("crm:2", 1, 6, "m"), ("web:1", 2, 2, "m"), ("web:2", 2, 7, "m")]
    members, events = _assign(spark, rows, previous)
    # web:1 is older (day 2 < day 5), so web:1's entity survives
    assert {entity for entity, _ in members.values()} == {"web:1"}
    assert members["web:1"][1] is True
    assert events == [("crm:1", "web:1", "RETIRED"), ("web:1", "crm:1", "MERGED")]


def test_split_majority_part_keeps_the_id_and_the_other_part_takes_its_anchor(spark):
    previous = [
        ("crm:1", "crm:1", True),
        ("crm:2", "crm:1", False),
        ("crm:3", "crm:1", False),
        ("crm:4", "crm:1", False),
    ]
    rows = [("crm:1", 1, 1, "a"), ("crm:2", 1, 2, "b"), ("crm:3", 1, 3, "b"), ("crm:4", 1, 4, "a")]
    members, events = _assign(spark, rows, previous)
    # tie 2-2: the part holding the old primary (crm:1) keeps the id
    assert members["crm:1"][0] == "crm:1" and members["crm:4"][0] == "crm:1"
    assert members["crm:2"] == ("crm:2", True) and members["crm:3"][0] == "crm:2"
    assert events == [("crm:1", "crm:2", "SPLIT")]


def test_split_majority_wins_over_the_part_with_the_old_primary(spark):
    previous = [("crm:1", "crm:1", True), ("crm:2", "crm:1", False), ("crm:3", "crm:1", False)]
    rows = [("crm:1", 1, 1, "a"), ("crm:2", 1, 2, "b"), ("crm:3", 1, 3, "b")]
    members, events = _assign(spark, rows, previous)
    assert members["crm:2"][0] == "crm:1" and members["crm:3"][0] == "crm:1"
    # crm:1's own id is taken by the majority part, so its new entity gets a distinct id
    assert members["crm:1"][0] != "crm:1"
    assert members["crm:1"][1] is True
    assert events == [("crm:1", members["crm:1"][0], "SPLIT")]


def _random_case(rng: random.Random, case: int) -> tuple[list, list, set]:
    """One region: records in clusters, the committed membership of some of them (and of
    deleted records), and ids in use elsewhere; keys ``s<case>:<n>`` so cases never meet."""
    keys = [f"s{case}:{n}" for n in range(rng.randint(1, 9))]
    clusters = [f"s{case}:k{j}" for j in range(rng.randint(1, 4))]
    days = [None, 1, 2, 3]  # few days and priorities: ties on both
    rows = [(key, rng.choice([1, 2]), rng.choice(days), rng.choice(clusters)) for key in keys]
    deleted = [f"s{case}:d{n}" for n in range(rng.randint(0, 2))]
    ids = [*rng.sample(keys, min(len(keys), 2)), f"s{case}:e0", f"s{case}:e1"]
    previous = []
    for key in [*keys, *deleted]:
        if rng.random() < 0.7:
            previous.append((key, rng.choice(ids), rng.random() < 0.4))
    elsewhere = {key for key in keys if rng.random() < 0.2} | {f"{key}#{c}" for key in keys[:1] for c in clusters[:1]}
    return rows, previous, elsewhere


def test_the_driver_id_policy_gives_what_the_dataframe_policy_gives(spark):
    """The incremental run's small regions get their ids on the driver (assign_ids_locally),
    full runs in Spark: on 150 random regions (ties, splits, merges, deleted records, ids
    already taken), both give the same membership and the same lineage events."""
    rng = random.Random(7)
    cases = [_random_case(rng, case) for case in range(150)]
    rows = [row for case in cases for row in case[0]]
    previous_rows = [row for case in cases for row in case[1]]
    elsewhere = set().union(*(case[2] for case in cases))
    clustered = _clustered(spark, rows)
    previous = spark.createDataFrame(previous_rows, PREVIOUS)
    taken = spark.createDataFrame([(i,) for i in sorted(elsewhere)], "entity_id string").unionByName(
        previous.select("entity_id")
    )
    membership = assign_entity_ids(clustered, previous, taken=taken)
    lineage = id_events(clustered, previous, membership)
    in_use = elsewhere | {row[1] for row in previous_rows}
    local = assign_ids_locally(*collect_for_ids(clustered, previous, limit=10_000), taken=lambda ids: ids & in_use)

    expected = sorted(tuple(row) for row in membership.collect())
    assert sorted(local.membership) == expected
    assert len({row[3] for row in expected}) > 100  # the cases are not trivial: many entities
    events = sorted(tuple(row) for row in lineage.collect())
    assert sorted(local.events, key=str) == sorted(events, key=str)
    assert {event[2] for event in events} == {"MERGED", "RETIRED", "SPLIT"}
    assert any("#" in row[3] for row in expected)  # an anchor key already taken was suffixed


def test_the_driver_id_policy_leaves_a_large_region_to_spark(spark):
    clustered = _clustered(spark, [(f"crm:{n}", 1, 1, "c") for n in range(5)])
    assert collect_for_ids(clustered, spark.createDataFrame([], PREVIOUS), limit=4) is None
    assert collect_for_ids(clustered, spark.createDataFrame([], PREVIOUS), limit=5) is not None
