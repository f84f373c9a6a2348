"""One conformance suite for every Delta store backend (delta-rs always; delta-spark where its
JVM package loads). A backend that cannot run is skipped with its reason, never silently."""

from __future__ import annotations

import datetime as dt
import threading

import pyarrow as pa
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable, write_deltalake
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from resolution.store import (
    BACKENDS,
    CHANGE_COLUMNS,
    CHANGE_DATA_FEED_PROPERTY,
    ConcurrentCommitError,
    DeltaStore,
    MergeMetrics,
    StoreError,
    StoreLocation,
    available_store_backends,
    get_store,
)

# Every column nullable: Spark's Parquet reader (the deltalake backend's read path) reports all
# columns nullable whatever the table declares, and this suite compares schemas exactly.
SCHEMA = StructType(
    [
        StructField("id", LongType()),
        StructField("name", StringType()),
        StructField("score", DoubleType()),
        StructField("active", BooleanType()),
        StructField("dob", DateType()),
        StructField("seen_at", TimestampType()),
        StructField("emails", ArrayType(StringType())),
        StructField("attrs", MapType(StringType(), StringType())),
    ]
)
FLAGGED_SCHEMA = StructType([*SCHEMA.fields, StructField("is_deleted", BooleanType())])
TS = dt.datetime(2024, 3, 1, 12, 30, 45, 123456)
ROW_1 = (
    1,
    "Zoë",
    0.5,
    True,
    dt.date(1980, 2, 29),
    TS,
    ["a@x.com", "b@x.com"],
    {"k": "v", "j": "w"},
)
ROW_2 = (2, "Bob", None, False, dt.date(1999, 12, 31), None, [], {})
ROW_3 = (3, None, None, None, None, None, None, None)
ROWS = [ROW_1, ROW_2, ROW_3]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, spark: SparkSession, tmp_path) -> DeltaStore:
    """Each backend over a fresh warehouse folder; unusable ones skip with the reason."""
    reason = available_store_backends(spark)[request.param]
    if reason is not None:
        pytest.skip(f"{request.param} backend unavailable: {reason}")
    location = StoreLocation(warehouse=str(tmp_path / "warehouse"))
    return get_store(spark, request.param, location, retry_backoff_seconds=0.01)


def frame(spark: SparkSession, rows: list[tuple], schema: StructType = SCHEMA) -> DataFrame:
    return spark.createDataFrame(rows, schema)


def assert_same_rows(actual: DataFrame, expected: DataFrame) -> None:
    """chispa's ignore_row_order sorts on every column, and Spark 4 cannot sort maps: sort by id."""
    assert_df_equality(actual, expected, transforms=[lambda df: df.orderBy("id")])


def flagged(row: tuple, is_deleted: bool | None = False) -> tuple:
    return (*row, is_deleted)


def data_files(store: DeltaStore, table: str) -> list[str]:
    return sorted(DeltaTable(store.location.table_id(table)).file_uris())


def test_create_if_missing_makes_an_empty_table_with_change_feed(store, spark):
    assert not store.exists("people") and store.version("people") is None
    store.create_if_missing("people", SCHEMA)
    store.create_if_missing("people", SCHEMA)  # a second call is a no-op
    assert store.exists("people") and store.version("people") == 0
    assert_df_equality(store.read("people"), frame(spark, []))
    config = DeltaTable(store.location.table_id("people")).metadata().configuration
    assert config[CHANGE_DATA_FEED_PROPERTY] == "true"


def test_append_round_trips_every_column_type(store, spark):
    assert store.append("people", frame(spark, ROWS)) == 3  # creates the table on first write
    assert_same_rows(store.read("people"), frame(spark, ROWS))
    assert store.append("people", frame(spark, [(4, *ROW_3[1:])])) == 1
    assert store.read("people").count() == 4


def test_append_accepts_columns_in_any_order(store, spark):
    store.create_if_missing("people", SCHEMA)
    reordered = frame(spark, ROWS).select(*reversed(SCHEMA.fieldNames()))
    store.append("people", reordered)
    assert_same_rows(store.read("people"), frame(spark, ROWS))


def test_overwrite_replaces_rows_and_keeps_table_properties(store, spark):
    store.append("people", frame(spark, ROWS))
    store.overwrite("people", frame(spark, [ROW_2]))
    assert_df_equality(store.read("people"), frame(spark, [ROW_2]))
    assert store.version("people") == 2
    config = DeltaTable(store.location.table_id("people")).metadata().configuration
    assert config[CHANGE_DATA_FEED_PROPERTY] == "true"


def test_merge_inserts_updates_and_deletes_by_key(store, spark):
    store.append("people", frame(spark, ROWS))
    changed_2 = (2, "Bob", 1.25, False, dt.date(1999, 12, 31), TS, ["bob@x.com"], {"src": "crm"})
    source = [
        flagged(ROW_1),  # unchanged: not rewritten, not counted
        flagged(changed_2),
        flagged(ROW_3, True),  # deleted
        flagged((4, "New", None, None, None, None, None, None)),  # inserted
        flagged((5, "Gone", None, None, None, None, None, None), True),  # flagged: never inserted
        flagged((6, "Null flag", None, None, None, None, None, None), None),  # null flag = keep
    ]
    metrics = store.merge(
        "people", frame(spark, source, FLAGGED_SCHEMA), keys=["id"], delete_flag="is_deleted"
    )
    assert metrics == MergeMetrics(inserted=2, updated=1, deleted=1)
    assert metrics.total == 4
    expected = [ROW_1, changed_2, (4, "New", *[None] * 6), (6, "Null flag", *[None] * 6)]
    assert_same_rows(store.read("people"), frame(spark, expected))


def test_merge_creates_a_missing_table_without_the_flag_column(store, spark):
    source = frame(spark, [flagged(ROW_1), flagged(ROW_2, True)], FLAGGED_SCHEMA)
    metrics = store.merge("people", source, keys=["id"], delete_flag="is_deleted")
    assert metrics == MergeMetrics(inserted=1, updated=0, deleted=0)
    assert_df_equality(store.read("people"), frame(spark, [ROW_1]))


def test_missing_columns_are_added_and_old_rows_read_null_there(store, spark):
    # a table written before the attrs map and a list column existed (an older release's table)
    old_schema = StructType(SCHEMA.fields[:-1])
    store.append("people", frame(spark, [row[:-1] for row in ROWS], old_schema))
    version = store.version("people")
    assert store.add_missing_columns("people", SCHEMA) == ["attrs"]
    assert store.version("people") == version + 1
    assert store.add_missing_columns("people", SCHEMA) == []  # once added, nothing to do
    assert store.version("people") == version + 1
    assert store.read("people").schema == SCHEMA
    changed_1 = (*ROW_1[:-1], {"k": "v"})
    metrics = store.merge("people", frame(spark, [changed_1]), keys=["id"])
    assert metrics == MergeMetrics(inserted=0, updated=1, deleted=0)
    assert_same_rows(store.read("people"), frame(spark, [changed_1, (*ROW_2[:-1], None), ROW_3]))


def test_remerging_identical_rows_changes_nothing(store, spark):
    store.merge("people", frame(spark, ROWS), keys=["id"])
    version, files = store.version("people"), data_files(store, "people")
    # Same rows, map entries in another order: still equal, so still no change.
    same_rows = frame(spark, ROWS).withColumn(
        "attrs", F.map_from_entries(F.reverse(F.map_entries("attrs")))
    )
    assert store.merge("people", same_rows, keys=["id"]) == MergeMetrics(0, 0, 0)
    assert data_files(store, "people") == files  # nothing rewritten
    assert store.version("people") == version  # no commit at all: a re-run writes nothing
    assert_same_rows(store.read("people"), frame(spark, ROWS))


def test_a_row_flagged_for_deletion_needs_only_its_key(store, spark):
    strict = StructType([StructField("id", LongType(), False), StructField("name", StringType(), False)])
    store.create_if_missing("strict", strict)
    store.merge("strict", spark.createDataFrame([(1, "a"), (2, "b")], strict), keys=["id"])
    flagged_schema = StructType(
        [StructField("id", LongType()), StructField("name", StringType()), StructField("gone", BooleanType())]
    )
    deletes = spark.createDataFrame([(1, None, True)], flagged_schema)
    assert store.merge("strict", deletes, keys=["id"], delete_flag="gone") == MergeMetrics(0, 0, 1)
    assert [tuple(row) for row in store.read("strict").collect()] == [(2, "b")]


def test_merging_nothing_commits_nothing(store, spark):
    store.append("people", frame(spark, ROWS))
    version = store.version("people")
    empty = frame(spark, [], FLAGGED_SCHEMA)
    assert store.merge("people", empty, keys=["id"], delete_flag="is_deleted") == MergeMetrics(0, 0, 0)
    assert store.version("people") == version
    assert_same_rows(store.read("people"), frame(spark, ROWS))


def test_merge_with_wrong_columns_names_them(store, spark):
    store.append("people", frame(spark, ROWS))
    wrong = frame(spark, ROWS).drop("score").withColumn("nickname", F.lit("x"))
    with pytest.raises(StoreError, match=r"people.*score.*nickname"):
        store.merge("people", wrong, keys=["id"])
    with pytest.raises(StoreError, match="is_deleted"):
        store.merge("people", frame(spark, ROWS), keys=["id"], delete_flag="is_deleted")
    with pytest.raises(StoreError, match="nickname"):
        store.append("people", wrong)
    assert store.version("people") == 1  # nothing was written


def test_merge_with_duplicate_source_keys_fails_cleanly(store, spark):
    store.append("people", frame(spark, ROWS))
    # Both rows change id 1 (an unchanged duplicate satisfies no clause and is tolerated).
    duplicates = frame(spark, [(1, "One", *ROW_1[2:]), (1, "Other", *ROW_1[2:])])
    with pytest.raises(StoreError, match="people"):
        store.merge("people", duplicates, keys=["id"])
    assert store.version("people") == 1


def test_delete_where_returns_rows_deleted(store, spark):
    store.append("people", frame(spark, ROWS))
    assert store.delete_where("people", "id >= 2") == 2
    assert store.delete_where("people", "id > 100") == 0
    assert_df_equality(store.read("people"), frame(spark, [ROW_1]))


def test_written_tables_are_readable_by_delta_rs_and_spark(store, spark):
    if store.name == "delta-spark":  # delta-rs cannot read deletion vectors (tested below)
        store.deletion_vectors = False
    store.append("people", frame(spark, ROWS[:2]))
    store.merge("people", frame(spark, [ROW_3]), keys=["id"])
    arrow = DeltaTable(store.location.table_id("people")).to_pyarrow_table()
    assert sorted(arrow.column("id").to_pylist()) == [1, 2, 3]
    by_delta_rs = spark.createDataFrame(arrow, SCHEMA)
    assert_same_rows(by_delta_rs, frame(spark, ROWS))
    assert_same_rows(store.read("people"), frame(spark, ROWS))


def test_read_changes_reports_inserts_updates_and_deletes(store, spark):
    store.append("people", frame(spark, ROWS))  # version 1
    source = [flagged((2, "Robert", *ROW_2[2:])), flagged(ROW_3, True), flagged((4, *ROW_3[1:]))]
    store.merge(
        "people", frame(spark, source, FLAGGED_SCHEMA), keys=["id"], delete_flag="is_deleted"
    )
    changes = store.read_changes("people", starting_version=2)
    assert changes.columns == [*SCHEMA.fieldNames(), *CHANGE_COLUMNS]
    assert StructType(changes.schema.fields[: len(SCHEMA)]) == SCHEMA
    got = {(r.id, r.name, r._change_type, r._commit_version) for r in changes.collect()}
    assert got == {
        (2, "Bob", "update_preimage", 2),
        (2, "Robert", "update_postimage", 2),
        (3, None, "delete", 2),
        (4, None, "insert", 2),
    }
    assert {r._commit_timestamp is not None for r in changes.collect()} == {True}
    inserts = store.read_changes("people", starting_version=1, ending_version=1)
    assert sorted(r.id for r in inserts.collect()) == [1, 2, 3]
    assert {r._change_type for r in inserts.collect()} == {"insert"}
    nothing_new = store.read_changes("people", starting_version=3)
    assert nothing_new.count() == 0 and nothing_new.schema == changes.schema


def test_racing_writers_either_commit_or_fail_cleanly(store, spark):
    """Two writers merge disjoint keys into one table at once; every call must end in a
    commit (possibly after retries) or ConcurrentCommitError, with nothing half-written."""
    store.append("people", frame(spark, ROWS))
    start = store.version("people")
    batches = {
        w: frame(spark, [(10 * w + i, f"w{w}", *ROW_3[2:]) for i in range(3)]) for w in (1, 2)
    }
    for batch in batches.values():
        batch.cache().count()
    outcomes: dict[int, object] = {}
    barrier = threading.Barrier(2)

    def write(writer: int) -> None:
        barrier.wait()
        try:
            outcomes[writer] = store.merge("people", batches[writer], keys=["id"])
        except ConcurrentCommitError as error:
            outcomes[writer] = error

    threads = [threading.Thread(target=write, args=(w,)) for w in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for batch in batches.values():
        batch.unpersist()
    ids = sorted(r.id for r in store.read("people").collect())
    expected = [1, 2, 3]
    for writer, outcome in outcomes.items():
        assert isinstance(outcome, MergeMetrics | ConcurrentCommitError)
        if isinstance(outcome, MergeMetrics):
            assert outcome == MergeMetrics(3, 0, 0)
            expected += [10 * writer + i for i in range(3)]
    assert len(outcomes) == 2 and ids == sorted(expected)
    committed = sum(isinstance(outcome, MergeMetrics) for outcome in outcomes.values())
    assert committed >= 1  # a race may cost one writer its commit, never both
    assert store.version("people") == start + committed  # one version per commit, none half-made


class _RivalWriter:
    """Commits a one-row append through a separate delta-rs handle each time the store opens a
    snapshot, so the store's commit finds the table moved on: a deterministic conflict."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: DeltaStore, commits: int) -> None:
        self.commits_left, self.next_id = commits, 100
        uri = store.location.table_id("people")
        original_open = store._open  # noqa: SLF001 - the snapshot hook is what races here

        def open_then_race(table: str) -> DeltaTable:
            snapshot = original_open(table)
            if self.commits_left > 0:
                self.commits_left -= 1
                self.next_id += 1
                schema = pa.schema(snapshot.schema().to_arrow())
                row = {name: None for name in schema.names} | {"id": self.next_id}
                write_deltalake(uri, pa.Table.from_pylist([row], schema=schema), mode="append")
            return snapshot

        monkeypatch.setattr(store, "_open", open_then_race)


def _deltalake_only(store: DeltaStore) -> None:
    if store.name != "deltalake":
        pytest.skip(
            f"{store.name}: the deterministic race hooks delta-rs snapshots; delta-spark takes its "
            "snapshot inside the JVM (covered by test_racing_writers_either_commit_or_fail_cleanly)"
        )


def test_conflicting_commit_is_retried_from_a_fresh_snapshot(store, spark, monkeypatch):
    _deltalake_only(store)
    store.append("people", frame(spark, ROWS))
    store.max_commit_attempts = 4
    _RivalWriter(monkeypatch, store, commits=2)
    changed = (1, "Changed", *ROW_1[2:])
    assert store.merge("people", frame(spark, [changed]), keys=["id"]) == MergeMetrics(0, 1, 0)
    rows = {r.id: r.name for r in store.read("people").collect()}
    assert rows == {1: "Changed", 2: "Bob", 3: None, 101: None, 102: None}


def test_endless_conflicts_raise_concurrent_commit_error_and_write_nothing(
    store, spark, monkeypatch
):
    _deltalake_only(store)
    store.append("people", frame(spark, ROWS))
    store.max_commit_attempts = 3
    rival = _RivalWriter(monkeypatch, store, commits=1000)
    source = frame(spark, [(1, "Changed", *ROW_1[2:]), (7, *ROW_3[1:])])
    with pytest.raises(ConcurrentCommitError, match="people"):
        store.merge("people", source, keys=["id"])
    rival.commits_left = 0
    rows = {r.id: r.name for r in store.read("people").collect()}
    assert rows[1] == "Zoë" and 7 not in rows  # only the rival's rows landed
    assert {i for i in rows if i < 100} == {1, 2, 3}
    assert len(rows) == 3 + rival.next_id - 100  # every rival append landed


def test_catalog_location_needs_delta_spark(spark, tmp_path):
    location = StoreLocation(catalog="main", schema="identity")
    assert location.table_id("people") == "main.identity.people"
    assert StoreLocation(warehouse=str(tmp_path)).table_id("people") == f"{tmp_path}/people"
    with pytest.raises(StoreError, match="delta-spark"):
        get_store(spark, "deltalake", location)
    with pytest.raises(StoreError, match="invalid table name"):
        location.table_id("../people")
    with pytest.raises(StoreError, match="warehouse"):
        StoreLocation()


def _protocol(store: DeltaStore, table: str):
    return DeltaTable(store.location.table_id(table)).protocol()


@pytest.fixture
def jvm(spark: SparkSession) -> SparkSession:
    """The session, for tests of delta-spark alone (skipped with the reason where it cannot run)."""
    reason = available_store_backends(spark)["delta-spark"]
    if reason is not None:
        pytest.skip(f"delta-spark backend unavailable: {reason}")
    return spark


def test_delta_spark_tables_get_deletion_vectors_unless_turned_off(jvm, tmp_path):
    spark = jvm
    for enabled in (True, False):
        location = StoreLocation(warehouse=str(tmp_path / f"dv-{enabled}"))
        store = get_store(spark, "delta-spark", location, deletion_vectors=enabled)
        store.append("people", frame(spark, ROWS))
        config = DeltaTable(location.table_id("people")).metadata().configuration
        assert config[CHANGE_DATA_FEED_PROPERTY] == "true"
        assert ("deletionVectors" in (_protocol(store, "people").reader_features or [])) is enabled


def test_a_merge_into_a_deletion_vector_table_rewrites_no_unchanged_row(jvm, tmp_path):
    spark = jvm
    location = StoreLocation(warehouse=str(tmp_path / "warehouse"))
    store = get_store(spark, "delta-spark", location)
    rows = [(i, f"n{i}", *ROW_3[2:]) for i in range(200)]
    store.append("people", frame(spark, rows).coalesce(1))  # one file holds every row
    source = frame(spark, [(7, "changed", *ROW_3[2:]), (500, "new", *ROW_3[2:])])
    assert store.merge("people", source, keys=["id"]) == MergeMetrics(1, 1, 0)
    [metrics] = spark.sql(f"DESCRIBE HISTORY delta.`{location.table_id('people')}` LIMIT 1").collect()
    assert metrics["operation"] == "MERGE"
    assert int(metrics["operationMetrics"]["numTargetRowsCopied"]) == 0  # not 199
    assert store.read("people").count() == 201


def test_the_embedded_backend_refuses_a_deletion_vector_table_and_writes_nothing(jvm, tmp_path):
    spark = jvm
    location = StoreLocation(warehouse=str(tmp_path / "warehouse"))
    jvm = get_store(spark, "delta-spark", location)
    jvm.append("people", frame(spark, ROWS))
    jvm.delete_where("people", "id = 3")  # a deletion vector now hides row 3
    embedded = get_store(spark, "deltalake", location)
    version = embedded.version("people")
    changed = frame(spark, [(1, "Changed", *ROW_1[2:])])
    attempts = {
        "read": lambda: embedded.read("people"),
        "append": lambda: embedded.append("people", changed),
        "overwrite": lambda: embedded.overwrite("people", changed),
        "merge": lambda: embedded.merge("people", changed, keys=["id"]),
        "delete": lambda: embedded.delete_where("people", "id = 1"),
        "changes": lambda: embedded.read_changes("people", starting_version=0),
    }
    for name, attempt in attempts.items():
        with pytest.raises(StoreError, match=r"deletionVectors.*storage\.deletion_vectors: false"):
            attempt()
        assert embedded.version("people") == version, name
    assert sorted(r.id for r in jvm.read("people").collect()) == [1, 2]  # row 3 stays deleted
