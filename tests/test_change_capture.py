"""Delta change data feed sources: only the changes since the committed version are read."""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from resolution import schemas as S
from resolution.pipeline import run_pipeline, store_for
from resolution.session import detect_backends
from tests.incremental_harness import COLUMNS as MAPPED
from tests.incremental_harness import EMAILS, PHONES, partition, pipeline_config

QUIET = {"report": lambda line: None}
COLUMNS = ["id", "first", "last", "email", "phone", "created", "dob"]



def _rows(*rows):
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)})


def _config(source_path, warehouse):
    source = {"name": "billing", "format": "delta", "path": str(source_path), "key": "id",
              "timestamp": "created", "change_tracking": "delta_cdf", "columns": MAPPED}
    return pipeline_config([source], warehouse, file="cdf.yml")


def test_delta_cdf_source_reads_only_new_changes_and_records_the_version(spark, tmp_path):
    source = tmp_path / "billing"
    write_deltalake(
        str(source),
        _rows(
            ["b1", "ann", "lee", EMAILS[0], PHONES[0], "2024-01-01", ""],
            ["b2", "bo", "ray", EMAILS[0], None, "2024-01-02", ""],
            ["b3", "cat", "kim", EMAILS[2], PHONES[0], "2024-01-03", ""],
        ),
        configuration={"delta.enableChangeDataFeed": "true"},
    )
    config = _config(source, tmp_path / "lakehouse")
    first = run_pipeline(spark, config, **QUIET)
    assert first.source_versions == {"billing": "0"}
    assert set(partition(spark, config).values()) == {frozenset({"billing:b1", "billing:b2", "billing:b3"})}

    table = DeltaTable(str(source))
    table.update(predicate="id = 'b1'", updates={"phone": "NULL"})  # b3 loses its bridge to b1
    table.delete("id = 'b2'")
    write_deltalake(str(source), _rows(["b4", "dan", "fox", EMAILS[2], None, "2024-01-04", ""]), mode="append")

    second = run_pipeline(spark, config, **QUIET)
    assert second.mode == "incremental"
    assert second.source_versions == {"billing": "3"}
    assert (second.records_new, second.records_updated, second.records_deleted) == (1, 1, 1)
    groups = partition(spark, config)
    assert set(groups.values()) == {frozenset({"billing:b1"}), frozenset({"billing:b3", "billing:b4"})}
    assert groups["billing:b1"] == frozenset({"billing:b1"})  # the old entity's id stays with b1

    # no new commit: nothing to read, nothing written
    store = store_for(spark, config, detect_backends(spark, prefer="embedded"))
    version = store.version(S.RESOLVED_MEMBERSHIP)
    third = run_pipeline(spark, config, **QUIET)
    assert (third.records_new, third.records_updated, third.records_deleted) == (0, 0, 0)
    assert store.version(S.RESOLVED_MEMBERSHIP) == version
