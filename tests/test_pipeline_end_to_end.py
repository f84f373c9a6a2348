"""The full run on the bundled sample data: exact entities, evidence, rejections, idempotence."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from deltalake import DeltaTable

from resolution import schemas as S
from resolution.config import MatchingConfig, load_config
from resolution.pipeline import run_pipeline
from resolution.run_log import Progress, RunSummary
from resolution.scoring import ModelError

REPO = Path(__file__).resolve().parents[1]

# Expected entities: anchor record (the entity id and primary) -> all members.
EXPECTED = {
    "crm:C001": {"crm:C001", "ecommerce:O1001", "support:T501"},  # same email, different case
    "crm:C002": {"crm:C002", "ecommerce:O1002", "support:T502"},  # O1002 -email- T502 -phone- C002
    "crm:C003": {"crm:C003", "support:T503"},  # the ticket has a phone only
    "crm:C005": {"crm:C005"},  # noreply@ email and 0000000000 phone link nobody
    "crm:C006": {"crm:C006", "ecommerce:O1008", "support:T506"},  # accents folded
    "crm:C007": {"crm:C007"},
    "crm:C009": {"crm:C009", "ecommerce:O1009"},
    "crm:C010": {"crm:C010", "ecommerce:O1012"},
    "crm:C011": {"crm:C011", "support:T509"},
    "crm:C012": {"crm:C012", "support:T511"},  # no shared identifier: linked by the model
    "ecommerce:O1004": {"ecommerce:O1004"},  # a completely new person
    "ecommerce:O1005": {"ecommerce:O1005"},  # noreply@ again
    "ecommerce:O1006": {"ecommerce:O1006", "ecommerce:O1007"},  # same loyalty id
    "ecommerce:O1010": {"ecommerce:O1010"},
    "ecommerce:O1013": {"ecommerce:O1013"},  # no-reply@
    "support:T505": {"support:T505"},  # 0000000000
    "support:T508": {"support:T508"},
    "support:T510": {"support:T510"},  # invalid phone
    "support:T512": {"support:T512"},  # name only: review, not link
}
JUNK_RECORDS = {"crm:C005", "ecommerce:O1005", "ecommerce:O1013", "support:T505"}


def _table(warehouse: Path, name: str):
    return DeltaTable(str(warehouse / name)).to_pandas()


@pytest.fixture(scope="module")
def sample_run(spark, backend, tmp_path_factory):
    """One full run of conf/example.yml with its warehouse in a temp folder, on each backend."""
    warehouse = tmp_path_factory.mktemp("lakehouse")
    config = load_config(REPO / "conf" / "example.yml")
    config = dataclasses.replace(
        config,
        # deletion vectors off: every table is then read by deltalake.DeltaTable as well as by
        # Spark, as this file checks (delta-rs cannot read them; test_cross_engine covers that)
        storage=dataclasses.replace(
            config.storage, warehouse=str(warehouse), backend=backend, deletion_vectors=False
        ),
        sources=tuple(
            dataclasses.replace(
                source,
                location=str(warehouse / "inbox") if source.format == "delta" else str(REPO / source.location),
            )
            for source in config.sources
        ),
        matching=dataclasses.replace(config.matching, model=str(REPO / config.matching.model)),
    )
    lines: list[str] = []
    summary = run_pipeline(spark, config, report=lines.append)
    return config, warehouse, summary, lines


def test_sample_resolves_into_the_expected_entities_with_anchor_ids(sample_run):
    _, warehouse, summary, _ = sample_run
    membership = _table(warehouse, S.RESOLVED_MEMBERSHIP)
    actual = {
        entity: set(group.record_key) for entity, group in membership.groupby("entity_id")
    }
    assert actual == EXPECTED
    primaries = membership[membership.is_primary]
    assert sorted(primaries.record_key) == sorted(EXPECTED)
    assert (primaries.record_key == primaries.entity_id).all()
    assert summary.entities == len(EXPECTED)
    assert summary.largest_entity == 3


def test_junk_identifiers_linked_nobody(sample_run):
    _, warehouse, summary, _ = sample_run
    edges = _table(warehouse, S.MATCH_EDGES)
    touching_junk = edges[edges.record_key_l.isin(JUNK_RECORDS) | edges.record_key_r.isin(JUNK_RECORDS)]
    assert touching_junk.empty
    assert summary.value_issues["email:excluded"] == 3
    assert summary.value_issues["phone:excluded"] == 2


def test_edges_carry_their_rule_and_the_comparison_levels_that_explain_them(sample_run):
    _, warehouse, summary, _ = sample_run
    edges = _table(warehouse, S.MATCH_EDGES).set_index(["record_key_l", "record_key_r"])
    transitive_email = edges.loc[("ecommerce:O1002", "support:T502")]
    assert transitive_email["rule"] == "email" and transitive_email["status"] == "link"
    model_link = edges.loc[("crm:C012", "support:T511")]
    assert model_link["rule"] == "model"
    assert model_link["match_probability"] >= 0.95
    levels = dict(model_link["comparison_levels"])
    assert levels["dob"].startswith("Exact match on date of birth")
    assert levels["last_name"].startswith("Exact match on last_name")
    assert summary.edges_by_rule == {"email": 7, "phone": 4, "loyalty_id": 1, "model": 1}


def test_uncertain_pairs_go_to_the_review_queue_not_into_entities(sample_run):
    _, warehouse, summary, _ = sample_run
    review = _table(warehouse, S.REVIEW_QUEUE)
    pairs = {tuple(pair) for pair in review[["record_key_l", "record_key_r"]].itertuples(index=False)}
    assert pairs == {("crm:C010", "support:T512"), ("ecommerce:O1012", "support:T512")}
    assert ((review.match_probability >= 0.5) & (review.match_probability < 0.95)).all()
    assert set(review.status) == {"open"}
    assert summary.review_pairs == 2


def test_bad_rows_are_kept_in_rejected_records_with_their_reason(sample_run):
    _, warehouse, summary, _ = sample_run
    rejected = _table(warehouse, S.REJECTED_RECORDS)
    reasons = sorted(zip(rejected.source, rejected.source_key.fillna("-"), rejected.reason, strict=True))
    assert reasons == [
        ("crm", "-", "missing key: column 'contact_id' is empty"),
        ("crm", "C008", "duplicate key 'C008' appears 2 times in source 'crm'; all copies rejected"),
        ("crm", "C008", "duplicate key 'C008' appears 2 times in source 'crm'; all copies rejected"),
        ("ecommerce", "O1011", "unparseable date in column 'order_date': 'not-a-date'"),
    ]
    assert {json.loads(row)["last_name"] for row in rejected.raw_row if "last_name" in json.loads(row)} == {
        "Blank",
        "Dup",
    }
    assert summary.records_rejected == 4


def test_golden_profile_keeps_survivors_and_all_identifiers_primary_first(sample_run):
    _, warehouse, _, _ = sample_run
    golden = _table(warehouse, S.GOLDEN_PROFILES).set_index("entity_id")
    bob = golden.loc["crm:C002"]
    assert bob["first_name"] == "Bob"  # CRM has the best source priority; shown as written
    records = _table(warehouse, S.SOURCE_RECORDS).set_index("record_key")
    assert records.loc["crm:C002", "first_name"] == "bob"  # the match form stays in source_records
    assert dict(records.loc["crm:C002", S.DISPLAY_VALUES])["first_name"] == "Bob"
    assert list(bob["emails"]) == ["bob.jones@example.com", "bobby.j@workmail.com"]
    assert list(bob["phones"]) == ["+447911123402"]
    assert bob["record_count"] == 3
    assert list(bob["sources"]) == ["crm", "ecommerce", "support"]
    henry = golden.loc["ecommerce:O1006"]
    assert henry["email"] == "h.ford@mail.example"  # email survivorship: most recent
    assert list(henry["emails"]) == ["henry.ford@example.com", "h.ford@mail.example"]


def test_progress_and_summary_are_reported(sample_run):
    _, _, summary, lines = sample_run
    for stage in ("ingest", "standardize", "score", "cluster", "identify", "golden", "write"):
        assert f"[{stage}] done in" in "\n".join(lines)
        assert stage in summary.stage_seconds and summary.stage_jobs[stage] > 0  # every stage runs Spark jobs
    assert any(line.startswith("  spark jobs: ingest ") for line in summary.lines())
    config, _, _, _ = sample_run
    expected = {"embedded": "delta=deltalake", "jvm": "delta=delta-spark"}[config.storage.backend]
    assert lines[0].startswith(f"backends: {expected}, clustering=")
    assert summary.records_read == {"crm": 10, "ecommerce": 11, "support": 10}


def test_tables_are_readable_by_spark_and_by_deltalake(spark, sample_run):
    _, warehouse, _, _ = sample_run
    for table in (S.SOURCE_RECORDS, S.MATCH_EDGES, S.RESOLVED_MEMBERSHIP, S.GOLDEN_PROFILES, S.RUNS):
        files = DeltaTable(str(warehouse / table)).file_uris()
        assert spark.read.parquet(*files).count() == len(_table(warehouse, table))


def test_rerun_without_source_changes_writes_only_its_runs_row(spark, sample_run):
    config, warehouse, first, _ = sample_run
    tables = [S.SOURCE_RECORDS, S.MATCH_EDGES, S.RESOLVED_MEMBERSHIP, S.GOLDEN_PROFILES,
              S.REVIEW_QUEUE, S.REJECTED_RECORDS, S.ENTITY_LINEAGE]
    before = {table: DeltaTable(str(warehouse / table)).version() for table in tables}
    second = run_pipeline(spark, config, report=lambda line: None)
    after = {table: DeltaTable(str(warehouse / table)).version() for table in tables}
    assert after == before
    assert (second.records_new, second.records_updated, second.records_deleted) == (0, 0, 0)
    assert second.entities_created == 0
    runs = _table(warehouse, S.RUNS)
    assert set(runs.run_id) == {first.run_id, second.run_id}
    assert set(runs.status) == {"SUCCEEDED"}


def test_a_failed_run_is_recorded_with_its_error(spark, sample_run, tmp_path):
    config, _, _, _ = sample_run
    broken = dataclasses.replace(
        config,
        storage=dataclasses.replace(config.storage, warehouse=str(tmp_path)),
        matching=dataclasses.replace(config.matching, model=str(tmp_path / "missing.json")),
    )
    with pytest.raises(ModelError, match="idr train"):
        run_pipeline(spark, broken, report=lambda line: None)
    [run] = _table(tmp_path, S.RUNS).itertuples()
    assert run.status == "FAILED"
    assert "missing.json" in run.error
    assert run.finished_at is not None


def test_a_full_run_with_another_model_keeps_the_ids_the_policy_keeps(spark, sample_run):
    """The weekly refresh after a model change (here the model is dropped: rules only), over the
    same warehouse. Last in this module: it re-resolves the warehouse the tests above read."""
    config, warehouse, _, _ = sample_run
    if config.storage.backend == "jvm":  # the id policy is DataFrame logic; the stores are covered above
        pytest.skip("runs on the embedded backend only (the id policy does not depend on the store)")
    before = {entity: set(group.record_key) for entity, group in _table(warehouse, S.RESOLVED_MEMBERSHIP).groupby("entity_id")}
    rules_only = dataclasses.replace(config, matching=MatchingConfig())
    summary = run_pipeline(spark, rules_only, mode="full", report=lambda line: None)
    membership = _table(warehouse, S.RESOLVED_MEMBERSHIP)
    after = {entity: set(group.record_key) for entity, group in membership.groupby("entity_id")}
    # only the model linked crm:C012 and support:T511: that entity splits, 1-1, and the part
    # holding the old primary keeps the id; the other takes its own anchor's; all others stay
    assert after == {**{e: k for e, k in before.items() if e != "crm:C012"},
                     "crm:C012": {"crm:C012"}, "support:T511": {"support:T511"}}
    assert set(membership[membership.is_primary].record_key) == set(after)
    assert (summary.entities_split, summary.entities_merged, summary.entities_created) == (1, 0, 1)  # support:T511's id is new
    lineage = _table(warehouse, S.ENTITY_LINEAGE)
    splits = lineage[lineage.event == "SPLIT"]
    assert list(zip(splits.entity_id, splits.other_entity_id, strict=True)) == [("crm:C012", "support:T511")]
    edges = _table(warehouse, S.MATCH_EDGES)
    assert "model" not in set(edges.rule) and summary.review_pairs == 0


def test_stages_count_their_jobs_and_keep_a_notebook_cells_job_group(spark):
    summary = RunSummary(run_id="r1", mode="full", backends="")
    progress = Progress(summary, lambda line: None, spark)
    with progress.stage("ingest"):  # no group set: the stage's own
        spark.range(3).collect()
        spark.range(4).collect()
    assert summary.stage_jobs == {"ingest": 2}
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None
    spark.sparkContext.setJobGroup("cell-7", "a notebook cell")  # as Databricks runs a cell
    try:
        with progress.stage("score"):
            spark.range(5).collect()
        assert summary.stage_jobs["score"] == 1
        assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") == "cell-7"  # its Cancel still works
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
