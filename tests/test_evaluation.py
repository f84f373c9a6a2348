"""Evaluation metrics on small partitions worked out by hand."""

from __future__ import annotations

import json

import pytest
import yaml

from resolution import schemas as S
from resolution.cli import main
from resolution.config import parse_config
from resolution.evaluation import (
    PERSON_ID,
    evaluate_partition,
    threshold_curve,
    write_report,
)
from resolution.pipeline import run_pipeline
from tests.incremental_harness import World, world_document

# truth: A = {1, 2, 3}, B = {4, 5}, C = {6}; record 7 has no truth, record 8 was not resolved
TRUTH = [("r1", "A"), ("r2", "A"), ("r3", "A"), ("r4", "B"), ("r5", "B"), ("r6", "C"), ("r8", "C")]
# predicted: E1 = {1, 2}, E2 = {3, 4, 5, 6} (A split; A's record 3, B and C merged), E3 = {7}
MEMBERSHIP = [("r1", "E1"), ("r2", "E1"), ("r3", "E2"), ("r4", "E2"), ("r5", "E2"), ("r6", "E2"), ("r7", "E3")]


def _frames(spark):
    membership = spark.createDataFrame(MEMBERSHIP, f"{S.RECORD_KEY} string, {S.ENTITY_ID} string")
    truth = spark.createDataFrame(TRUTH, f"{S.RECORD_KEY} string, {PERSON_ID} string")
    return membership, truth


def test_pairwise_and_bcubed_scores_of_a_known_partition(spark):
    membership, truth = _frames(spark)
    result = evaluate_partition(membership, truth)

    # cells (entity, person) -> records: (E1,A)=2, (E2,A)=1, (E2,B)=2, (E2,C)=1
    assert (result.records, result.entities, result.people) == (6, 2, 3)
    # correct pairs: (1,2) and (4,5); predicted: 1 in E1 + 6 in E2; true: 3 in A + 1 in B
    assert (result.pairwise.true_positive, result.pairwise.predicted, result.pairwise.actual) == (2, 7, 4)
    assert result.pairwise.precision == pytest.approx(2 / 7)
    assert result.pairwise.recall == pytest.approx(0.5)
    assert result.pairwise.f1 == pytest.approx(2 * (2 / 7) * 0.5 / (2 / 7 + 0.5))
    # B-cubed precision, per record |cell| / |entity|: 2/2 * 2 (E1) + 1/4 (r3) + 2/4 * 2 (B) + 1/4 (r6)
    assert result.bcubed_precision == pytest.approx((2 + 0.25 + 1 + 0.25) / 6)
    # B-cubed recall, per record |cell| / |person|: 2/3 * 2 (r1, r2) + 1/3 (r3) + 1 * 2 (B) + 1 (C,
    # whose r8 was not resolved, so is not evaluated)
    assert result.bcubed_recall == pytest.approx((4 / 3 + 1 / 3 + 2 + 1) / 6)
    assert result.over_merged_entities == 1  # E2
    assert result.over_merged_people == 3  # A, B and C each share E2 with another person
    assert result.split_people == 1  # A
    assert (result.records_missing_from_membership, result.records_missing_from_truth) == (1, 1)


def test_a_perfect_partition_scores_one(spark):
    truth = spark.createDataFrame(TRUTH[:6], f"{S.RECORD_KEY} string, {PERSON_ID} string")
    membership = truth.withColumnRenamed(PERSON_ID, S.ENTITY_ID)
    result = evaluate_partition(membership, truth)
    assert (result.pairwise.f1, result.bcubed_f1) == (1.0, 1.0)
    assert (result.over_merged_entities, result.split_people) == (0, 0)


def test_threshold_curve_counts_links_kept_at_each_threshold(spark):
    _, truth = _frames(spark)
    edges = spark.createDataFrame(
        [
            ("r1", "r2", "email", 0.40),  # identifier rule: a link at every threshold
            ("r1", "r3", S.MODEL_RULE, 0.97),  # same person
            ("r4", "r5", S.MODEL_RULE, 0.90),  # same person
            ("r3", "r4", S.MODEL_RULE, 0.80),  # different people
            ("r5", "r6", S.MODEL_RULE, 0.96),  # different people
        ],
        f"{S.RECORD_KEY_L} string, {S.RECORD_KEY_R} string, {S.RULE} string, {S.MATCH_PROBABILITY} double",
    )
    curve = threshold_curve(edges, truth, thresholds=[0.95, 0.5, 0.85], actual_pairs=4)
    assert [(p.threshold, p.links, p.precision, p.recall) for p in curve] == [
        (0.5, 5, pytest.approx(3 / 5), pytest.approx(3 / 4)),
        (0.85, 4, pytest.approx(3 / 4), pytest.approx(3 / 4)),
        (0.95, 3, pytest.approx(2 / 3), pytest.approx(2 / 4)),
    ]


def test_the_report_holds_json_markdown_and_a_chart(spark, tmp_path):
    membership, truth = _frames(spark)
    result = evaluate_partition(membership, truth)
    edges = spark.createDataFrame(
        [("r1", "r2", S.MODEL_RULE, 0.99), ("r3", "r4", S.MODEL_RULE, 0.7)],
        f"{S.RECORD_KEY_L} string, {S.RECORD_KEY_R} string, {S.RULE} string, {S.MATCH_PROBABILITY} double",
    )
    result.curve = threshold_curve(edges, truth, thresholds=[0.6, 0.9], actual_pairs=result.pairwise.actual)
    paths = write_report(result, tmp_path / "report", title="hand example")

    report = json.loads(paths["json"].read_text())
    assert report["pairwise"]["precision"] == pytest.approx(2 / 7)
    assert report["bcubed_f1"] == pytest.approx(result.bcubed_f1)
    assert [point["links"] for point in report["threshold_curve"]] == [2, 1]
    markdown = paths["markdown"].read_text()
    assert "| pairwise | 0.2857 | 0.5000 |" in markdown
    assert "![precision and recall by threshold](precision_recall.png)" in markdown
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_idr_evaluate_scores_a_resolved_warehouse_against_a_truth_file(spark, tmp_path, capsys):
    world = World(tmp_path / "sources")
    world.upsert_crm("c1", 0, email=0, phone=None)
    world.upsert_crm("c2", 0, email=0, phone=1)  # c1's email: linked
    world.upsert_crm("c3", 1, email=2, phone=None)
    world.write()
    document = world_document(world.folder, tmp_path / "lakehouse")
    run_pipeline(spark, parse_config(document, file="world.yml"), report=lambda line: None)
    truth = tmp_path / "truth.csv"
    # the truth says c2 and c3 are one person and c1 another: the run's link c1-c2 is wrong
    truth.write_text("key,person\ncrm:c1,p1\ncrm:c2,p2\ncrm:c3,p2\n", encoding="utf-8")
    config_file = tmp_path / "world.yml"
    config_file.write_text(yaml.safe_dump(document), encoding="utf-8")
    out = tmp_path / "report"

    arguments = ["evaluate", "--config", str(config_file), "--truth", str(truth), "--output", str(out)]
    assert main([*arguments, "--truth-key", "key", "--truth-id", "person"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["pairwise"] == {"true_positive": 0, "predicted": 1, "actual": 1,
                                  "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert (report["over_merged_entities"], report["split_people"]) == (1, 1)
    assert "| pairwise | 0.0000 | 0.0000 | 0.0000 |" in capsys.readouterr().out

    assert main(arguments) == 2  # the truth has no record_key / person_id columns
    assert "truth " + str(truth) + ": no column record_key, person_id (it has key, person)" in capsys.readouterr().err
