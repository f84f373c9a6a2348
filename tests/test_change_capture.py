"""Delta change data feed sources: only the changes since the committed version are read,
and a feed whose log entries were cleaned up is replaced by comparing snapshots."""

from __future__ import annotations

import logging
import time

from deltalake import DeltaTable, write_deltalake

from resolution import schemas as S
from resolution.pipeline import run_pipeline
from resolution.store import open_store
from resolution.store.base import earliest_commit_version
from tests.incremental_harness import (
    EMAILS,
    billing_source,
    change_billing,
    delta_rows,
    partition,
    pipeline_config,
)

QUIET = {"report": lambda line: None}


def test_delta_cdf_source_reads_only_new_changes_and_records_the_version(spark, tmp_path, caplog):
    source = tmp_path / "billing"
    config = pipeline_config([billing_source(source)], tmp_path / "lakehouse", file="cdf.yml")
    first = run_pipeline(spark, config, **QUIET)
    assert first.source_versions == {"billing": "0"}
    assert set(partition(spark, config).values()) == {frozenset({"billing:b1", "billing:b2", "billing:b3"})}

    change_billing(source)  # v1: b3 loses its bridge to b1; v2: b2 deleted; v3: b4 joins b3

    second = run_pipeline(spark, config, **QUIET)
    assert second.mode == "incremental"
    assert second.source_versions == {"billing": "3"}
    assert (second.records_new, second.records_updated, second.records_deleted) == (1, 1, 1)
    groups = partition(spark, config)
    assert set(groups.values()) == {frozenset({"billing:b1"}), frozenset({"billing:b3", "billing:b4"})}
    assert groups["billing:b1"] == frozenset({"billing:b1"})  # the old entity's id stays with b1

    # no new commit: nothing to read, nothing written
    store = open_store(spark, config)
    version = store.version(S.RESOLVED_MEMBERSHIP)
    third = run_pipeline(spark, config, **QUIET)
    assert (third.records_new, third.records_updated, third.records_deleted) == (0, 0, 0)
    assert store.version(S.RESOLVED_MEMBERSHIP) == version

    # v4 adds b5 with b1's email; then the log entries up to it are cleaned up (a short
    # delta.logRetentionDuration, as a busy service inbox has): the run finds its change feed
    # gone and compares the whole source instead, with the same result
    write_deltalake(str(source), delta_rows(["b5", "eve", "lee", EMAILS[0], None, "2024-01-05", ""]), mode="append")
    table = DeltaTable(str(source))
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 1 second"})  # v5
    table.create_checkpoint()
    time.sleep(1.5)
    table.cleanup_metadata()
    assert earliest_commit_version(spark, str(source)) == 5  # the JVM backend's check, on Hadoop's file system
    assert earliest_commit_version(spark, str(tmp_path / "nothing")) is None
    with caplog.at_level(logging.WARNING, logger="resolution.sources"):
        fourth = run_pipeline(spark, config, **QUIET)
    assert "source billing" in caplog.text and "version 4 is gone" in caplog.text
    assert fourth.source_versions == {"billing": "5"}
    assert (fourth.records_new, fourth.records_updated, fourth.records_deleted) == (1, 0, 0)
    assert set(partition(spark, config).values()) == {
        frozenset({"billing:b1", "billing:b5"}), frozenset({"billing:b3", "billing:b4"})}

