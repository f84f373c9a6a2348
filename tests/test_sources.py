"""Row validation: bad rows are kept with their reason; audit events resolve to current state."""

from __future__ import annotations

import json

import pytest
from pyspark.sql.types import StringType, StructField, StructType

from resolution.config import ConfigError, SourceConfig
from resolution.sources import check_source_columns, validate_rows

SNAPSHOT = SourceConfig(
    name="crm",
    format="csv",
    location="crm.csv",
    key="id",
    timestamp="created",
    columns={"email": "mail"},
    priority=1,
)
AUDIT = SourceConfig(
    name="kyc",
    format="csv",
    location="kyc.csv",
    key="id",
    timestamp="created",
    columns={"email": "mail"},
    change_tracking="audit",
    operation_column="op",
    operation_time_column="op_time",
)


def _frame(spark, columns, rows):
    return spark.createDataFrame(rows, StructType([StructField(c, StringType()) for c in columns]))


def test_missing_key_duplicate_key_and_bad_date_are_rejected_with_reasons(spark):
    raw = _frame(
        spark,
        ["id", "mail", "created"],
        [
            ("1", "a@example.com", "2024-01-01"),
            (None, "nokey@example.com", "2024-01-02"),
            ("  ", "blankkey@example.com", "2024-01-02"),
            ("2", "b@example.com", "2024-01-03"),
            ("2", "b2@example.com", "2024-01-04"),
            ("3", "c@example.com", "yesterday"),
        ],
    )
    result = validate_rows(raw, SNAPSHOT, attributes=["email"])
    assert [row.source_id for row in result.records.collect()] == ["1"]
    rejected = sorted(result.rejected.collect(), key=lambda row: json.loads(row.raw_row)["mail"])
    reasons = {json.loads(row.raw_row)["mail"]: row.reason for row in rejected}
    assert reasons["nokey@example.com"] == "missing key: column 'id' is empty"
    assert reasons["blankkey@example.com"] == "missing key: column 'id' is empty"
    assert reasons["b@example.com"].startswith("duplicate key '2' appears 2 times")
    assert reasons["b2@example.com"].startswith("duplicate key '2' appears 2 times")
    assert reasons["c@example.com"] == "unparseable date in column 'created': 'yesterday'"
    assert {row.source for row in rejected} == {"crm"}
    assert {row.source_key for row in rejected} == {None, "2", "3"}


def test_audit_latest_event_wins_and_delete_removes_the_key(spark):
    events = [
        ("1", "v1@example.com", "2024-01-01", "INSERT", "2024-03-01 10:00:00"),
        ("1", "v3@example.com", "2024-01-01", "UPDATE", "2024-03-01 14:15:00"),
        ("1", "v2@example.com", "2024-01-01", "UPDATE", "2024-03-01 11:30:00"),
        ("1", "v3@example.com", "2024-01-01", "UPDATE", "2024-03-01 14:15:00"),  # duplicate event
        ("4", "gone@example.com", "2024-01-01", "INSERT", "2024-03-01 07:00:00"),
        ("4", "gone@example.com", "2024-01-01", "DELETE", "2024-03-01 13:00:00"),
        ("5", "x@example.com", "2024-01-01", "UPSERT", "2024-03-01 13:00:00"),
        # an UPDATE and a DELETE at one instant: the DELETE wins, whatever the row order
        ("6", "six@example.com", "2024-01-01", "INSERT", "2024-03-01 08:00:00"),
        ("6", "six@example.com", "2024-01-01", "DELETE", "2024-03-01 09:00:00"),
        ("6", "six.new@example.com", "2024-01-01", "UPDATE", "2024-03-01 09:00:00"),
        ("8", "when@example.com", "2024-01-01", "INSERT", None),
        ("9", "bad@example.com", "2024-01-01", "UPDATE", "soon"),
    ]
    raw = _frame(spark, ["id", "mail", "created", "op", "op_time"], events)
    result = validate_rows(raw, AUDIT, attributes=["email"])
    assert [(row.source_id, row.email) for row in result.records.collect()] == [("1", "v3@example.com")]
    reasons = {row.source_key: row.reason for row in result.rejected.collect()}
    assert sorted(reasons) == ["5", "8", "9"]
    assert "unknown operation in column 'op': 'UPSERT'" in reasons["5"]
    assert reasons["8"] == reasons["9"] == "missing or unparseable operation time in 'op_time'"


def test_audit_outcome_does_not_depend_on_row_order(spark):
    events = [
        ("7", "late@example.com", "2024-01-01", "update", "2024-03-02 09:00:00"),
        ("7", "early@example.com", "2024-01-01", "insert", "2024-03-01 09:00:00"),
    ]
    columns = ["id", "mail", "created", "op", "op_time"]
    forward = validate_rows(_frame(spark, columns, events), AUDIT, attributes=["email"])
    backward = validate_rows(_frame(spark, columns, events[::-1]), AUDIT, attributes=["email"])
    assert forward.records.collect() == backward.records.collect()
    assert forward.records.first().email == "late@example.com"


def test_missing_source_column_names_the_config_key(spark):
    raw = _frame(spark, ["id", "email_address", "created"], [("1", "a@example.com", "2024-01-01")])
    with pytest.raises(ConfigError) as caught:
        check_source_columns(raw, SNAPSHOT, config_file="conf/x.yml")
    assert caught.value.key == "sources[crm].columns.email"
    assert "'mail' not found" in caught.value.problem


def test_a_composite_attribute_reads_its_columns_joined_and_names_a_missing_one(spark):
    census = SourceConfig(name="census", format="csv", location="census.csv", key="id", timestamp=None,
                          columns={"address": ("house_no", "street", "unit"), "last_name": "surname"})
    columns = ["id", "house_no", "street", "unit", "surname"]
    raw = _frame(spark, columns, [("1", " 12", "High St. ", None, "Lee"), ("2", None, "Mill Lane", "Flat 2", "Ng"),
                                  ("3", "", " ", None, "Roe")])
    records = {row.source_id: row for row in validate_rows(raw, census, attributes=["address", "last_name"]).records.collect()}
    assert records["1"].address == "12 High St."
    assert records["2"].address == "Mill Lane Flat 2"
    assert records["3"].address is None
    assert records["1"].last_name == "Lee"
    with pytest.raises(ConfigError) as caught:
        check_source_columns(raw.drop("unit"), census, config_file="conf/x.yml")
    assert caught.value.key == "sources[census].columns.address"
    assert "'unit' not found" in caught.value.problem
