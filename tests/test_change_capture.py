"""Delta change data feed sources: only the changes since the committed version are read."""

from __future__ import annotations

from resolution import schemas as S
from resolution.pipeline import run_pipeline, store_for
from resolution.session import detect_backends
from tests.incremental_harness import billing_source, change_billing, partition, pipeline_config

QUIET = {"report": lambda line: None}


def test_delta_cdf_source_reads_only_new_changes_and_records_the_version(spark, tmp_path):
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
    store = store_for(spark, config, detect_backends(spark, prefer="embedded"))
    version = store.version(S.RESOLVED_MEMBERSHIP)
    third = run_pipeline(spark, config, **QUIET)
    assert (third.records_new, third.records_updated, third.records_deleted) == (0, 0, 0)
    assert store.version(S.RESOLVED_MEMBERSHIP) == version
