"""One warehouse, two Delta engines: what delta-rs (embedded) writes delta-spark (jvm) continues,
and back, with the same result as a full run; the Delta features each side writes and reads.

Everything runs on real Spark, delta-spark and delta-rs. Pipeline runs are the costly part
(tens of seconds each), so the five of this file run once, in one module fixture, and the tests
check what they left behind.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from resolution import schemas as S
from resolution.config import Config, parse_config
from resolution.pipeline import run_pipeline
from resolution.store import (
    ChangeFeedUnavailableError,
    DeltaStore,
    StoreError,
    StoreLocation,
    available_store_backends,
    get_store,
)
from tests.incremental_harness import (
    EMAILS,
    World,
    billing_source,
    change_billing,
    partition,
    world_document,
)

QUIET = {"report": lambda line: None}
# tables a run writes even when nothing changed: its own row, and its checks' results
RUN_TABLES = {S.RUNS, S.QUALITY_CHECKS}


@pytest.fixture(scope="module")
def jvm(spark):
    """The session, when delta-spark can run in it (every test here needs both engines)."""
    reason = available_store_backends(spark)["delta-spark"]
    if reason is not None:
        pytest.skip(f"delta-spark backend unavailable: {reason}")
    return spark


# Helpers


def _config(
    document: dict, *, backend: str, warehouse: Path | None = None, deletion_vectors=False
) -> Config:
    document = json.loads(json.dumps(document))  # a deep copy
    document["storage"].update(backend=backend, deletion_vectors=deletion_vectors)
    if warehouse is not None:
        document["storage"]["warehouse"] = str(warehouse)
    return parse_config(document, file="cross-engine.yml")


def _tables(warehouse: Path) -> dict[str, DeltaTable]:
    """Every Delta table in the warehouse, by name."""
    return {
        path.name: DeltaTable(str(path))
        for path in sorted(warehouse.iterdir())
        if DeltaTable.is_deltatable(str(path))
    }


def _versions(warehouse: Path) -> dict[str, int]:
    return {name: table.version() for name, table in _tables(warehouse).items()}


def _files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def _keys(*keys: str) -> frozenset[str]:
    return frozenset(keys)


def _commit(table: Path, version: int) -> list[dict]:
    """The actions of one Delta commit, as written in the log."""
    text = (table / "_delta_log" / f"{version:020d}.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _engine(table: Path, version: int) -> str:
    [info] = [action["commitInfo"] for action in _commit(table, version) if "commitInfo" in action]
    return info.get("engineInfo") or info.get("clientVersion") or ""


def _change_rows(store: DeltaStore, location: str, starting_version: int = 0) -> list[tuple]:
    frame = store.read_location_changes(location, starting_version=starting_version)
    return sorted(
        (row["id"], row["_change_type"], row["_commit_version"])
        for row in frame.select("id", "_change_type", "_commit_version").collect()
    )


def _stores(spark, warehouse: Path) -> tuple[DeltaStore, DeltaStore]:
    location = StoreLocation(warehouse=str(warehouse))
    return (
        get_store(spark, "deltalake", location),
        get_store(spark, "delta-spark", location, deletion_vectors=False),
    )


# 1-3: one warehouse continued by both engines, with a delta_cdf source both engines write


@pytest.fixture(scope="module")
def handover(jvm, tmp_path_factory):
    """Five runs over a small world of CSV sources plus a Delta change-feed source (billing):

    1. embedded, full;  2. jvm, nothing changed;  3. jvm, after CSV edits and three delta-rs
    commits to billing;  4. embedded, after CSV edits and three delta-spark commits to billing;
    5. jvm with deletion vectors, full, over the final state in a fresh warehouse.
    """
    spark = jvm
    base = tmp_path_factory.mktemp("handover")
    world = World(base / "sources")
    world.upsert_crm("c1", 0, email=3, phone=None)
    world.upsert_crm("c2", 0, email=3, phone=1)
    world.upsert_crm("c3", 0, email=None, phone=1)  # bridged to c1 through c2's phone
    world.upsert_crm("c4", 1, email=4, phone=None)
    world.kyc_event("INSERT", "k1", 1, email=4, phone=3)
    world.write()
    billing = base / "billing"
    document = world_document(world.folder, base / "lakehouse")
    document["sources"].append(billing_source(billing))  # v0 by delta-rs: b1-b2-b3 one person
    embedded = _config(document, backend="embedded")
    jvm_config = _config(document, backend="jvm")
    warehouse = base / "lakehouse"
    out = SimpleNamespace(
        base=base, warehouse=warehouse, billing=billing, embedded=embedded, jvm=jvm_config
    )

    out.first = run_pipeline(spark, embedded, **QUIET)
    out.first_partition = partition(spark, embedded)
    out.first_versions = _versions(warehouse)
    out.first_protocols = {name: t.protocol() for name, t in _tables(warehouse).items()}

    out.second = run_pipeline(spark, jvm_config, **QUIET)
    out.second_partition = partition(spark, jvm_config)
    out.second_versions = _versions(warehouse)
    out.second_runs = DeltaTable(str(warehouse / S.RUNS)).to_pandas()

    # Batch A, continued by the JVM backend: c2 loses its phone (c3 splits off), c5 joins c4 by
    # email; billing v1-v3 by delta-rs: b1 loses its phone, b2 deleted, b4 joins b3 by email.
    world.upsert_crm("c2", 0, email=3, phone=None)
    world.upsert_crm("c5", 2, email=4, phone=None)
    world.write()
    change_billing(billing)
    out.third = run_pipeline(spark, jvm_config, **QUIET)
    out.third_partition = partition(spark, jvm_config)

    # Batch B, back on the embedded backend: k1 deleted, c3 rejoins c1 by email; billing v4-v6
    # by delta-spark: b1 takes b3's email (joins b3), b4 deleted, b5 inserted alone.
    world.kyc_event("DELETE", "k1", 1, email=4, phone=3)
    world.upsert_crm("c3", 0, email=3, phone=1)
    world.write()
    target = f"delta.`{billing}`"
    spark.sql(f"UPDATE {target} SET email = '{EMAILS[2]}' WHERE id = 'b1'")
    spark.sql(f"DELETE FROM {target} WHERE id = 'b4'")
    spark.sql(
        f"INSERT INTO {target} VALUES ('b5', 'eve', 'moss', '{EMAILS[5]}', NULL, '2024-01-05', '')"
    )
    out.fourth = run_pipeline(spark, embedded, **QUIET)
    out.fourth_partition = partition(spark, embedded)
    out.fourth_partition_jvm = partition(spark, jvm_config)

    # The invariant's other side: one full run over the final state, in a fresh warehouse,
    # by delta-spark with deletion vectors (storage.deletion_vectors default: true).
    out.reference_warehouse = base / "reference"
    out.reference = _config(
        document, backend="jvm", warehouse=out.reference_warehouse, deletion_vectors=True
    )
    out.fifth = run_pipeline(spark, out.reference, mode="full", **QUIET)
    out.reference_partition = partition(spark, out.reference)
    return out


def test_a_jvm_rerun_of_an_embedded_warehouse_without_changes_writes_nothing(handover):
    h = handover
    assert h.first.mode == "full" and h.first.backends.startswith("backends: delta=deltalake")
    assert h.second.mode == "incremental" and h.second.backends.startswith(
        "backends: delta=delta-spark"
    )
    assert set(h.first_partition.values()) == {
        _keys("crm:c1", "crm:c2", "crm:c3"),
        _keys("crm:c4", "kyc:k1"),
        _keys("billing:b1", "billing:b2", "billing:b3"),
    }
    assert h.second_partition == h.first_partition  # same groups under the same entity ids
    assert (h.second.records_new, h.second.records_updated, h.second.records_deleted) == (0, 0, 0)
    assert h.second.entities_created == 0
    output = {name: v for name, v in h.first_versions.items() if name not in RUN_TABLES}
    assert S.RESOLVED_MEMBERSHIP in output and S.SOURCE_RECORDS in output
    assert {name: h.second_versions[name] for name in output} == output
    assert h.second_versions[S.RUNS] > h.first_versions[S.RUNS]  # only its runs row moved
    runs = h.second_runs
    assert sorted(runs.run_id) == sorted([h.first.run_id, h.second.run_id])
    assert set(runs.status) == {"SUCCEEDED"}
    # the run's commit to the runs table is delta-spark's
    assert "Delta-Lake" in _engine(h.warehouse / S.RUNS, h.second_versions[S.RUNS])


def test_incremental_runs_alternating_engines_equal_a_full_run_and_keep_ids(handover):
    h = handover
    ids = {keys: entity for entity, keys in h.first_partition.items()}
    # batch A on delta-spark: the majority part keeps each old id, the split-off part gets its own
    assert h.third.mode == "incremental"
    assert h.third_partition == {
        ids[_keys("crm:c1", "crm:c2", "crm:c3")]: _keys("crm:c1", "crm:c2"),
        "crm:c3": _keys("crm:c3"),
        ids[_keys("crm:c4", "kyc:k1")]: _keys("crm:c4", "crm:c5", "kyc:k1"),
        ids[_keys("billing:b1", "billing:b2", "billing:b3")]: _keys("billing:b1"),
        "billing:b3": _keys("billing:b3", "billing:b4"),
    }
    # batch B on delta-rs: merged entities keep the older id, ids outlive their deleted anchor
    assert h.fourth.mode == "incremental"
    expected = {
        ids[_keys("crm:c1", "crm:c2", "crm:c3")]: _keys("crm:c1", "crm:c2", "crm:c3"),
        ids[_keys("crm:c4", "kyc:k1")]: _keys("crm:c4", "crm:c5"),
        ids[_keys("billing:b1", "billing:b2", "billing:b3")]: _keys("billing:b1", "billing:b3"),
        "billing:b5": _keys("billing:b5"),
    }
    assert h.fourth_partition == expected
    assert h.fourth_partition_jvm == expected  # both engines read the same membership snapshot
    # the product's invariant: incremental == a full run over the final state
    assert set(h.fourth_partition.values()) == set(h.reference_partition.values())


def test_delta_cdf_sources_written_by_one_engine_are_captured_by_the_other(handover, jvm):
    h = handover
    billing = h.billing
    # v1-v3 by delta-rs, read by the JVM backend's change capture (run 3)
    for version in (1, 2, 3):
        assert "delta-rs" in _engine(billing, version)
    assert h.third.source_versions["billing"] == "3"
    # v4-v6 by delta-spark, read by the embedded backend's change capture (run 4)
    for version in (4, 5, 6):
        assert "Delta-Lake" in _engine(billing, version)
    assert h.fourth.source_versions["billing"] == "6"
    # run 4 saw from billing: b1 updated, b4 deleted, b5 new (plus its CSV changes: c3, k1)
    assert (h.fourth.records_new, h.fourth.records_updated, h.fourth.records_deleted) == (1, 2, 2)

    # Store level: each backend's change feed of the twice-written table gives the same rows
    embedded, spark_store = _stores(jvm, h.base / "stores")
    rows = _change_rows(embedded, str(billing))
    assert rows == _change_rows(spark_store, str(billing))
    assert rows == [
        ("b1", "insert", 0),
        ("b1", "update_postimage", 1),
        ("b1", "update_postimage", 4),
        ("b1", "update_preimage", 1),
        ("b1", "update_preimage", 4),
        ("b2", "delete", 2),
        ("b2", "insert", 0),
        ("b3", "insert", 0),
        ("b4", "delete", 5),
        ("b4", "insert", 3),
        ("b5", "insert", 6),
    ]
    for start in (4, 7):  # from the middle, and past the end (empty on both)
        assert _change_rows(embedded, str(billing), start) == _change_rows(
            spark_store, str(billing), start
        )


def test_change_data_files_of_delta_spark_updates_and_deletes(handover):
    billing = handover.billing
    for version in (4, 5):  # UPDATE and DELETE by delta-spark
        cdc = [action["cdc"] for action in _commit(billing, version) if "cdc" in action]
        assert cdc, f"commit {version} has no cdc action"
        for action in cdc:
            assert action["path"].startswith("_change_data/")
            assert (billing / action["path"]).is_file()
    assert not [action for action in _commit(billing, 6) if "cdc" in action]  # an insert needs none


def test_the_embedded_backend_refuses_a_jvm_warehouse_with_deletion_vectors(handover, jvm):
    h = handover
    warehouse = h.reference_warehouse
    protocols = {name: t.protocol() for name, t in _tables(warehouse).items()}
    assert S.RUNS in protocols and S.RESOLVED_MEMBERSHIP in protocols
    for name, protocol in protocols.items():
        assert (protocol.min_reader_version, protocol.min_writer_version) == (3, 7), name
        assert "deletionVectors" in (protocol.reader_features or []), name
    before_versions, before_files = _versions(warehouse), _files(warehouse)
    embedded = dataclasses.replace(
        h.reference, storage=dataclasses.replace(h.reference.storage, backend="embedded")
    )
    with pytest.raises(StoreError) as refused:
        run_pipeline(jvm, embedded, **QUIET)
    message = str(refused.value)
    assert "deletionVectors" in message
    assert "storage.backend: jvm" in message and "storage.deletion_vectors: false" in message
    assert _versions(warehouse) == before_versions  # no runs row, no commit anywhere
    assert _files(warehouse) == before_files


def test_protocols_of_the_handover_warehouse(handover):
    """delta-rs creates (1, 4) tables; delta-spark with deletion_vectors false adds no reader
    feature, so the warehouse stays writable by both."""
    h = handover
    assert S.RESOLVED_MEMBERSHIP in h.first_protocols
    for name, protocol in h.first_protocols.items():
        assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 4), name
        assert not protocol.reader_features and not protocol.writer_features, name
    tables = _tables(h.warehouse)
    assert set(tables) == set(h.first_protocols)
    for name, table in tables.items():
        assert table.protocol() == h.first_protocols[name], name  # delta-spark upgraded nothing
        assert table.metadata().configuration.get("delta.enableChangeDataFeed") == "true", name


# 4: table features each engine writes, and the other reads

PEOPLE = StructType(
    [
        StructField("id", StringType()),
        StructField("n", LongType()),
        StructField("seen_at", TimestampType()),
    ]
)
UTC = timezone.utc
# a daylight-saving edge and microseconds: Spark's session time zone is UTC, so both engines
# must store the same instants
SEEN = [
    datetime(2024, 3, 31, 1, 30, 0, 123456),
    datetime(2024, 10, 27, 0, 59, 59, 999999),
    datetime(1970, 1, 1),
]


def _people(spark, rows: list[tuple]):
    return spark.createDataFrame(rows, PEOPLE)


def _rows(store: DeltaStore, location: str) -> list[tuple]:
    return sorted(
        tuple(row) for row in store.read_location(location).select("id", "n", "seen_at").collect()
    )


def _arrow_rows(location: str) -> list[tuple]:
    """The table as delta-rs alone reads it (no Spark): timestamps come back UTC-aware."""
    table = DeltaTable(location).to_pyarrow_table(columns=["id", "n", "seen_at"])
    return sorted((row["id"], row["n"], row["seen_at"]) for row in table.to_pylist())


def _arrow_people(key: str, n: int, seen: datetime) -> pa.Table:
    seen_at = pa.array([seen.replace(tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    return pa.table({"id": [key], "n": pa.array([n], pa.int64()), "seen_at": seen_at})


def _aware(rows: list[tuple]) -> list[tuple]:
    return sorted((key, n, seen.replace(tzinfo=UTC)) for key, n, seen in rows)


def test_a_delta_spark_table_with_a_checkpoint_is_read_by_delta_rs(jvm, tmp_path):
    embedded, spark_store = _stores(jvm, tmp_path)
    path = spark_store.location.table_id("people")
    # v0 create, v1 append: the store's own writes; v2-v9 one INSERT each; v10 MERGE; v11 DELETE
    spark_store.append("people", _people(jvm, [("p1", 1, SEEN[0]), ("p2", 2, SEEN[1])]))
    for number in range(3, 11):
        jvm.sql(f"INSERT INTO delta.`{path}` VALUES ('p{number}', {number}, TIMESTAMP'1970-01-01')")
    updated = spark_store.merge("people", _people(jvm, [("p1", 10, SEEN[0])]), keys=["id"])
    assert updated.updated == 1
    assert spark_store.delete_where("people", "id = 'p2'") == 1
    log = tmp_path / "people" / "_delta_log"
    assert (log / f"{10:020d}.checkpoint.parquet").is_file()  # delta-spark's default interval: 10
    assert json.loads((log / "_last_checkpoint").read_text())["version"] == 10

    protocol = DeltaTable(path).protocol()  # delta-spark, deletion_vectors false: no reader feature
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 7)
    assert set(protocol.writer_features) == {"changeDataFeed", "invariants", "appendOnly"}
    assert not protocol.reader_features

    expected = sorted([("p1", 10, SEEN[0]), *[(f"p{i}", i, SEEN[2]) for i in range(3, 11)]])
    assert DeltaTable(path).version() == 11 == embedded.location_version(path)
    assert _rows(spark_store, path) == expected
    assert _rows(embedded, path) == expected  # Spark over the files delta-rs lists
    assert _arrow_rows(path) == _aware(expected)  # delta-rs's own reader
    # the change feed across the checkpoint, as each backend reads it
    changes = _change_rows(embedded, path)
    assert changes == _change_rows(spark_store, path)
    assert ("p1", "update_preimage", 10) in changes and ("p2", "delete", 11) in changes
    assert (tmp_path / "people" / "_change_data").is_dir()

    # delta-rs continues the table (no deletion vectors), delta-spark reads the result
    assert embedded.merge("people", _people(jvm, [("p3", 30, SEEN[1])]), keys=["id"]).updated == 1
    expected = sorted([("p3", 30, SEEN[1]) if row[0] == "p3" else row for row in expected])
    assert _rows(spark_store, path) == expected == _rows(embedded, path)


def test_a_delta_rs_table_with_a_checkpoint_is_read_by_delta_spark(jvm, tmp_path):
    embedded, spark_store = _stores(jvm, tmp_path)
    path = embedded.location.table_id("people")
    # v0 create, v1 append, v2 MERGE (r1 updated, r3 inserted), v3 DELETE: the store's writes
    embedded.append("people", _people(jvm, [("r1", 1, SEEN[0]), ("r2", 2, SEEN[1])]))
    upsert = _people(jvm, [("r1", 10, SEEN[0]), ("r3", 3, SEEN[2])])
    assert embedded.merge("people", upsert, keys=["id"]).total == 2
    assert embedded.delete_where("people", "id = 'r2'") == 1
    protocol = DeltaTable(path).protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 4)
    assert not protocol.reader_features and not protocol.writer_features
    changes = _change_rows(spark_store, path)
    assert changes == _change_rows(embedded, path)
    assert changes == [
        ("r1", "insert", 1),
        ("r1", "update_postimage", 2),
        ("r1", "update_preimage", 2),
        ("r2", "delete", 3),
        ("r2", "insert", 1),
        ("r3", "insert", 2),
    ]

    # v4: a short log retention; v5 appended by delta-rs directly, then its checkpoint; v6
    # after the checkpoint; then the log entries before it are cleaned up
    table = DeltaTable(path)
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 1 second"})
    write_deltalake(path, _arrow_people("r4", 4, SEEN[1]), mode="append")
    DeltaTable(path).create_checkpoint()
    write_deltalake(path, _arrow_people("r5", 5, SEEN[2]), mode="append")
    time.sleep(1.5)
    DeltaTable(path).cleanup_metadata()
    log = tmp_path / "people" / "_delta_log"
    assert (log / f"{5:020d}.checkpoint.parquet").is_file()
    assert not (log / f"{0:020d}.json").exists()  # delta-spark must start from the checkpoint

    expected = sorted(
        [("r1", 10, SEEN[0]), ("r3", 3, SEEN[2]), ("r4", 4, SEEN[1]), ("r5", 5, SEEN[2])]
    )
    assert spark_store.location_version(path) == 6
    assert _rows(spark_store, path) == expected == _rows(embedded, path)
    assert (
        _change_rows(spark_store, path, 6)
        == _change_rows(embedded, path, 6)
        == [("r5", "insert", 6)]
    )
    with pytest.raises(ChangeFeedUnavailableError, match="version 0 is gone"):
        spark_store.read_location_changes(path, starting_version=0)

    # delta-spark continues it, delta-rs reads the result (timestamps too)
    spark_store.append("people", _people(jvm, [("r6", 6, SEEN[0])]))
    assert _arrow_rows(path) == _aware([*expected, ("r6", 6, SEEN[0])])


def test_timestamp_ntz_written_by_delta_spark_is_read_by_delta_rs(jvm, tmp_path):
    path = str(tmp_path / "events")
    jvm.sql(
        f"CREATE TABLE delta.`{path}` USING delta TBLPROPERTIES (delta.enableChangeDataFeed = true) AS "
        "SELECT * FROM VALUES ('e1', TIMESTAMP_NTZ'2024-03-31 01:30:00.123456'), "
        "('e2', TIMESTAMP_NTZ'9999-12-31 23:59:59.999999') AS t(id, local_time)"
    )
    protocol = DeltaTable(path).protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (3, 7)
    assert "timestampNtz" in protocol.reader_features
    expected = [
        ("e1", datetime(2024, 3, 31, 1, 30, 0, 123456)),
        ("e2", datetime(9999, 12, 31, 23, 59, 59, 999999)),
    ]
    arrow = DeltaTable(path).to_pyarrow_table()
    assert arrow.schema.field("local_time").type == pa.timestamp("us")  # naive: no time zone
    assert sorted((row["id"], row["local_time"]) for row in arrow.to_pylist()) == expected
    embedded, _ = _stores(jvm, tmp_path)
    frame = embedded.read_location(path)
    assert frame.schema["local_time"].dataType.typeName() == "timestamp_ntz"
    assert sorted(tuple(row) for row in frame.collect()) == expected
    changes = embedded.read_location_changes(path, starting_version=0).select(
        "id", "local_time", "_change_type"
    )
    assert sorted(tuple(row) for row in changes.collect()) == [(*row, "insert") for row in expected]


# Spark's default spark.sql.parquet.outputTimestampType is INT96, which delta-rs reads as
# nanoseconds: they silently wrap outside 1677-09-21 .. 2262-04-11. Sessions the product builds or
# reuses write TIMESTAMP_MICROS (resolution.session), so both engines read these dates right.
FAR = [
    ("old", 1, datetime(1500, 1, 1)),
    ("now", 2, SEEN[0]),
    ("end", 3, datetime(9999, 12, 31, 23, 59, 59)),
]


@pytest.fixture(scope="module")
def far_timestamps(jvm, tmp_path_factory):
    """A delta-spark table (no deletion vectors) whose one file holds out-of-range timestamps."""
    warehouse = tmp_path_factory.mktemp("far")
    _, spark_store = _stores(jvm, warehouse)
    spark_store.append("people", _people(jvm, FAR).coalesce(1))
    return warehouse


def test_embedded_change_capture_reads_far_timestamps_written_by_delta_spark(jvm, far_timestamps):
    embedded, spark_store = _stores(jvm, far_timestamps)
    path = spark_store.location.table_id("people")
    assert _rows(spark_store, path) == sorted(FAR) == _rows(embedded, path)  # snapshots: right
    changes = embedded.read_location_changes(path, starting_version=0).select("id", "n", "seen_at")
    assert sorted(tuple(row) for row in changes.collect()) == sorted(FAR)


def test_an_embedded_merge_keeps_far_timestamps_written_by_delta_spark(
    jvm, far_timestamps, tmp_path
):
    shutil.copytree(far_timestamps, tmp_path / "warehouse")  # a table of its own to write
    embedded, spark_store = _stores(jvm, tmp_path / "warehouse")
    path = spark_store.location.table_id("people")
    embedded.merge("people", _people(jvm, [("now", 20, SEEN[0])]), keys=["id"])  # rewrites the file
    expected = sorted([("now", 20, SEEN[0]) if row[0] == "now" else row for row in FAR])
    assert _rows(spark_store, path) == expected
