"""``idr stream``: Structured Streaming micro-batches run the incremental step and agree with a
full recompute, for a Delta change feed (embedded Python data source) and a folder of audit files."""

from __future__ import annotations

import csv

import pytest
import yaml

from resolution import schemas as S
from resolution.cli import main
from resolution.config import ConfigError
from resolution.pipeline import run_pipeline
from resolution.store import open_store
from resolution.streaming import StreamOptions, start_stream
from tests.incremental_harness import BILLING_COLUMNS as COLUMNS
from tests.incremental_harness import COLUMNS as MAPPED
from tests.incremental_harness import (
    EMAILS,
    REPO,
    billing_source,
    change_billing,
    partition,
    pipeline_config,
)

QUIET = {"report": lambda line: None}


def _runs(spark, config) -> list:
    store = open_store(spark, config)
    return sorted(store.read(S.RUNS).collect(), key=lambda row: row.started_at)


def _full_partition(spark, sources: list[dict], warehouse) -> set[frozenset[str]]:
    config = pipeline_config(sources, warehouse, file="full.yml")
    run_pipeline(spark, config, mode="full", **QUIET)
    return set(partition(spark, config).values())


def test_streaming_a_delta_change_feed_resolves_each_micro_batch_incrementally(
    spark, backend, tmp_path
):
    """On the JVM backend the micro-batches come from Delta's own streaming source; on the
    embedded one from the ``idr_delta_changes`` Python data source over delta-rs."""
    source_path = tmp_path / "billing"
    sources = [billing_source(source_path)]
    config = pipeline_config(sources, tmp_path / "lakehouse", file="stream.yml", backend=backend)
    options = StreamOptions(
        source="billing", checkpoint=str(tmp_path / "checkpoint"), available_now=True,
        max_versions_per_trigger=2,
    )

    # No committed run yet: the stream starts with a full run, then finds nothing new.
    query, handler = start_stream(spark, config, options, **QUIET)
    query.awaitTermination()
    assert [run.mode for run in _runs(spark, config)] == ["full"]
    assert handler.batches == []
    assert set(partition(spark, config).values()) == {frozenset({"billing:b1", "billing:b2", "billing:b3"})}

    change_billing(source_path)  # v1: b3 loses its bridge to b1; v2: b2 deleted; v3: b4 joins b3

    query, handler = start_stream(spark, config, options, **QUIET)
    query.awaitTermination()
    # at most two Delta versions per micro-batch, each micro-batch its own committed run
    assert [batch.rows for batch in handler.batches] == [3, 1]  # v1: pre- and post-image, v2: delete
    runs = _runs(spark, config)
    assert [run.mode for run in runs] == ["full", "stream", "stream"]
    assert all(run.status == "SUCCEEDED" for run in runs)
    assert [run.source_versions["billing"] for run in runs] == ["0", "2", "3"]
    groups = partition(spark, config)
    assert set(groups.values()) == _full_partition(spark, sources, tmp_path / "full")
    assert set(groups.values()) == {frozenset({"billing:b1"}), frozenset({"billing:b3", "billing:b4"})}
    assert groups["billing:b1"] == frozenset({"billing:b1"})  # the old entity's id stays with b1

    # Restarted from its checkpoint with nothing new: no micro-batch, no run.
    query, handler = start_stream(spark, config, options, **QUIET)
    query.awaitTermination()
    assert handler.batches == [] and len(_runs(spark, config)) == 3


def _write_events(path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*COLUMNS, "op", "op_time"])
        writer.writerows(rows)


def test_idr_stream_over_a_folder_of_audit_files_handles_late_and_duplicate_events(spark, tmp_path):
    events = tmp_path / "kyc"
    events.mkdir()
    _write_events(events / "part-001.csv", [
        ["k1", "ann", "lee", EMAILS[0], "", "2024-01-01", "", "INSERT", "2024-06-01 10:00:00"],
        ["k2", "bo", "ray", EMAILS[0], "", "2024-01-02", "", "INSERT", "2024-06-01 10:05:00"],
    ])
    sources = [{"name": "kyc", "format": "csv", "path": str(events), "key": "id", "timestamp": "created",
                "columns": MAPPED, "change_tracking": "audit", "operation_column": "op",
                "operation_time_column": "op_time"}]
    document = {
        "phone_region": "GB",
        "storage": {"warehouse": str(tmp_path / "lakehouse"), "backend": "embedded"},
        "sources": sources,
        "identifiers": [{"name": "email", "attribute": "email", "max_group_size": 4}],
        "matching": {
            "model": str(REPO / "conf" / "models" / "example_model.json"),
            "comparisons": {"first_name": "name", "last_name": "name", "email": "email",
                            "phone": "phone", "dob": "date"},
            "blocking_rules": [["last_name"]],
        },
    }
    config_file = tmp_path / "stream.yml"
    config_file.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert main(["stream", "--config", str(config_file), "--source", "kyc", "--available-now"]) == 0
    config = pipeline_config(sources, tmp_path / "lakehouse", file=str(config_file))
    assert set(partition(spark, config).values()) == {frozenset({"kyc:k1", "kyc:k2"})}

    # A new file: k2 is deleted, then a late UPDATE older than the DELETE arrives (ignored);
    # k3 joins k1 by email and its INSERT is delivered twice.
    _write_events(events / "part-002.csv", [
        ["k2", "bo", "ray", EMAILS[0], "", "2024-01-02", "", "DELETE", "2024-06-01 11:00:00"],
        ["k2", "bo", "ray", EMAILS[1], "", "2024-01-02", "", "UPDATE", "2024-06-01 10:30:00"],
        ["k3", "cat", "kim", EMAILS[0], "", "2024-01-03", "", "INSERT", "2024-06-01 11:10:00"],
        ["k3", "cat", "kim", EMAILS[0], "", "2024-01-03", "", "INSERT", "2024-06-01 11:10:00"],
    ])
    assert main(["stream", "--config", str(config_file), "--source", "kyc", "--available-now"]) == 0
    groups = set(partition(spark, config).values())
    assert groups == {frozenset({"kyc:k1", "kyc:k3"})}
    assert groups == _full_partition(spark, sources, tmp_path / "full")
    assert [run.mode for run in _runs(spark, config)][-1] == "stream"


def test_a_snapshot_source_cannot_be_streamed(spark, tmp_path):
    sources = [{"name": "crm", "format": "csv", "path": str(tmp_path / "crm"), "key": "id",
                "columns": MAPPED}]
    config = pipeline_config(sources, tmp_path / "lakehouse", file="crm.yml")
    options = StreamOptions(source="crm", checkpoint=str(tmp_path / "checkpoint"), available_now=True)
    with pytest.raises(ConfigError, match=r"sources\[crm\].change_tracking: only audit or delta_cdf"):
        start_stream(spark, config, options, **QUIET)
