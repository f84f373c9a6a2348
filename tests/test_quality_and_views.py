"""`idr run` as a scheduler sees it (exit code, one summary line, quality checks), the checks
failing on broken tables, and the analyst SQL views, on the bundled sample data."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.cli import EXIT_QUALITY, main
from resolution.config import load_config
from resolution.quality import run_checks
from resolution.store import open_store
from resolution.views import create_views
from tests.incremental_harness import sample_pipeline_file


def _idr(*argv: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue().splitlines()


@pytest.fixture(scope="module")
def sample(spark, tmp_path_factory):
    """conf/example.yml with a ${warehouse} variable, resolved once through `idr run`."""
    folder = tmp_path_factory.mktemp("quality")
    path = sample_pipeline_file(folder, quality={"max_entity_size": 3, "freshness": {"crm": "36500d"}})
    warehouse = folder / "lakehouse"
    code, lines = _idr("run", "--config", str(path), "--var", f"warehouse={warehouse}")
    return path, warehouse, code, lines


def _store(spark, config):
    return open_store(spark, config)


def test_a_run_ends_with_one_summary_line_and_passing_checks(spark, sample):
    path, warehouse, code, lines = sample
    assert code == 0
    assert lines[-2] == "quality checks PASSED (6)"
    assert lines[-1].startswith("idr run ") and " SUCCEEDED mode=full records=31 " in lines[-1]
    config = load_config(path, {"warehouse": str(warehouse)})
    checks = _store(spark, config).read(S.QUALITY_CHECKS).collect()
    assert {row["check_name"] for row in checks} == {
        "one_entity_per_record", "no_orphaned_records", "max_entity_size", "conflicting_values", "entity_sizes",
        "freshness:crm"
    }
    assert {row["status"] for row in checks} == {"PASS"}


def test_checks_fail_on_broken_tables_and_say_where(spark, sample, tmp_path):
    path, warehouse, _, _ = sample
    broken = tmp_path / "lakehouse"
    shutil.copytree(warehouse, broken)
    variables = {"warehouse": str(broken)}
    config = load_config(path, variables)
    store = _store(spark, config)
    store.delete_where(S.RESOLVED_MEMBERSHIP, "record_key = 'crm:C003'")  # a live record lost its entity
    stray = store.read(S.RESOLVED_MEMBERSHIP).limit(1).selectExpr(
        "'crm:C999' AS record_key", "source", "'C999' AS source_id", "'crm:C999' AS entity_id",
        "is_primary", "run_id", "updated_at",
    )
    store.append(S.RESOLVED_MEMBERSHIP, stray)  # a record that is not live, in an entity without a profile
    results = {result.check: result for result in run_checks(store, config)}
    assert not results["one_entity_per_record"].passed
    assert "crm:C003" in results["one_entity_per_record"].detail
    assert not results["no_orphaned_records"].passed
    assert "crm:C999" in results["no_orphaned_records"].detail
    assert results["max_entity_size"].passed and results["freshness:crm"].passed

    code, lines = _idr(
        "check", "--config", str(_with_quality(path, tmp_path, max_entity_size=2, freshness={"support": "15m"})),
        "--var", f"warehouse={broken}",
    )
    assert code == EXIT_QUALITY
    assert lines[-1].startswith("quality checks FAILED (4 of 6):")
    assert any(line.startswith("FAIL max_entity_size: largest entity 3 record(s)") for line in lines)
    assert any(line.startswith("FAIL freshness:support") for line in lines)
    failed = store.read(S.QUALITY_CHECKS).filter("status = 'FAIL'").count()
    assert failed == 4


def test_over_merging_shows_without_truth_as_entities_holding_two_birth_dates(spark, sample, tmp_path):
    path, warehouse, _, _ = sample
    merged = tmp_path / "lakehouse"
    shutil.copytree(warehouse, merged)
    config = load_config(path, {"warehouse": str(merged)})
    store = _store(spark, config)
    before = {result.check: result for result in run_checks(store, config)}
    assert before["conflicting_values"].passed
    assert "2+ records" in before["entity_sizes"].observed
    # one member of a multi-record entity gets another birth date: that entity now holds two
    membership = store.read(S.RESOLVED_MEMBERSHIP)
    entity = membership.groupBy(S.ENTITY_ID).count().filter("count > 1").orderBy(S.ENTITY_ID).first()[S.ENTITY_ID]
    member = membership.filter(membership[S.ENTITY_ID] == entity).orderBy(S.RECORD_KEY).first()[S.RECORD_KEY]
    records = store.read(S.SOURCE_RECORDS)
    changed = records.filter(records[S.RECORD_KEY] == member).withColumn("dob", F.to_date(F.lit("1901-01-01")))
    store.delete_where(S.SOURCE_RECORDS, f"record_key = '{member}'")
    store.append(S.SOURCE_RECORDS, changed.select(*records.columns))
    strict = _with_quality(path, tmp_path, max_conflicting_share=0.0)
    after = {r.check: r for r in run_checks(store, load_config(strict, {"warehouse": str(merged)}))}
    assert not after["conflicting_values"].passed
    assert after["conflicting_values"].observed.startswith("1 of ")
    assert entity in after["conflicting_values"].detail and "cannot_link" in after["conflicting_values"].detail


def _with_quality(path: Path, folder: Path, **quality) -> Path:
    document = yaml.safe_load(path.read_text())
    document["quality"] = quality
    changed = folder / "strict.yml"
    changed.write_text(yaml.safe_dump(document))
    return changed


def test_analyst_views_answer_customer_360_lookup_and_history(spark, sample):
    path, warehouse, _, _ = sample
    config = load_config(path, {"warehouse": str(warehouse)})
    assert create_views(spark, _store(spark, config), config) == ["customer_360", "entity_lookup", "entity_history"]
    alice = spark.sql("SELECT * FROM customer_360 WHERE entity_id = 'crm:C001'").first()
    assert dict(alice["records_by_source"]) == {"crm": 1, "ecommerce": 1, "support": 1}
    assert alice["record_count"] == 3
    mismatched = spark.sql(
        "SELECT count(*) FROM customer_360 WHERE aggregate(map_values(records_by_source), 0L, (a, n) -> a + n)"
        " != record_count"
    ).first()[0]
    assert mismatched == 0
    unsorted = spark.sql(  # keys in name order, so two runs over the same data show the same map
        "SELECT count(*) FROM customer_360 WHERE map_keys(records_by_source) != array_sort(map_keys(records_by_source))"
    ).first()[0]
    assert unsorted == 0
    found = spark.sql(
        "SELECT DISTINCT entity_id FROM entity_lookup WHERE identifier = 'email' AND value = 'alice.smith@example.com'"
    ).collect()
    assert [row[0] for row in found] == ["crm:C001"]
    by_phone = spark.sql("SELECT DISTINCT entity_id FROM entity_lookup WHERE value = '+447911123402'").collect()
    assert [row[0] for row in by_phone] == ["crm:C002"]
    history = spark.sql("SELECT event, related FROM entity_history WHERE entity_id = 'crm:C001'").collect()
    assert {(row["event"], row["related"]) for row in history} == {
        ("RECORD_JOINED", "crm:C001"), ("RECORD_JOINED", "ecommerce:O1001"), ("RECORD_JOINED", "support:T501")
    }
