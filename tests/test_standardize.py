"""Standardization on real Spark: formats normalised, junk and invalid values nulled and counted."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from pyspark.sql.types import IntegerType, StringType, StructField, StructType, TimestampType

from resolution.config import parse_config
from resolution.rules import standardize_email
from resolution.standardize import standardize_records

RAW_SCHEMA = StructType(
    [
        StructField("source", StringType()),
        StructField("source_id", StringType()),
        StructField("source_priority", IntegerType()),
        StructField("source_timestamp", TimestampType()),
        StructField("email", StringType()),
        StructField("phone", StringType()),
        StructField("first_name", StringType()),
        StructField("dob", StringType()),
        StructField("loyalty_id", StringType()),
        StructField("row_hash", StringType()),
    ]
)


@pytest.fixture(scope="module")
def config():
    return parse_config(
        {
            "phone_region": "GB",
            "sources": [
                {
                    "name": "crm",
                    "format": "csv",
                    "path": "unused.csv",
                    "key": "id",
                    "columns": {
                        "email": "e",
                        "phone": "p",
                        "first_name": "f",
                        "dob": "d",
                        "loyalty_id": "l",
                    },
                }
            ],
            "identifiers": [
                {"attribute": "email", "exclude": ["noreply@%"]},
                {"attribute": "phone", "exclude": ["0000000000"]},
            ],
            "matching": {"model": "m.json", "comparisons": {"email": "email"}},
            "storage": {"warehouse": "/tmp/unused"},
        },
        file="inline.yml",
    )


def _standardize(spark, config, rows):
    stamp = dt.datetime(2024, 1, 1)
    frame = spark.createDataFrame(
        [("crm", str(i), 1, stamp, *row, "hash") for i, row in enumerate(rows)], RAW_SCHEMA
    )
    return [row.asDict() for row in standardize_records(frame, config=config).orderBy("source_id").collect()]


def test_values_are_standardized(spark, config):
    [row] = _standardize(
        spark, config, [(" Alice.Smith@Example.COM ", "07911 123456", "  Zoë-ÅNGSTRÖM ", "11/02/1984", " l-100 ")]
    )
    assert row["record_key"] == "crm:0"
    assert row["email"] == "alice.smith@example.com"
    assert row["phone"] == "+447911123456"
    assert row["first_name"] == "zoe-angstrom"
    assert row["dob"] == dt.date(1984, 2, 11)
    assert row["loyalty_id"] == "L-100"
    assert row["value_issues"] == []


def test_phone_formats_agree_on_e164(spark, config):
    rows = _standardize(
        spark,
        config,
        [(None, phone, None, None, None) for phone in ("07911 123456", "+44 7911 123456", "0044-7911-123456")],
    )
    assert {row["phone"] for row in rows} == {"+447911123456"}


def test_invalid_and_junk_values_become_null_with_their_reason(spark, config):
    rows = _standardize(
        spark,
        config,
        [
            ("not-an-email", "not a phone", "O'Brien", "31/02/1984", ""),
            ("NoReply@Shop.example", "0000000000", None, "1984-02-11", None),
        ],
    )
    assert rows[0]["email"] is None and rows[0]["phone"] is None and rows[0]["dob"] is None
    assert rows[0]["first_name"] == "obrien"
    assert sorted(rows[0]["value_issues"]) == ["dob:invalid", "email:invalid", "phone:invalid"]
    assert rows[1]["email"] is None and rows[1]["phone"] is None
    assert sorted(rows[1]["value_issues"]) == ["email:excluded", "phone:excluded"]
    assert rows[1]["dob"] == dt.date(1984, 2, 11)


def test_emails_lose_plus_tags_and_gmail_dots(spark):
    raw = [
        (" Ann.Lee+shop@GMail.com ", "annlee@gmail.com"),
        ("a.n.n.lee@googlemail.com", "annlee@gmail.com"),
        ("ann.lee+news@example.org", "ann.lee@example.org"),  # dots matter outside Gmail
        ("ann.lee@example.org", "ann.lee@example.org"),
        ("+tag@example.org", None),  # nothing left of the mailbox
        ("ann@@example.org", None),
    ]
    frame = spark.createDataFrame(raw, "raw string, expected string")
    rows = frame.select("expected", standardize_email(frame["raw"]).alias("email")).collect()
    assert [row["email"] for row in rows] == [row["expected"] for row in rows]


def test_possible_numbers_the_plan_does_not_know_are_kept_unverified_unless_validation_is_valid(spark, config):
    us = dataclasses.replace(config, phone_region="US")
    # 555-123-4567 has a possible length but is in no numbering plan; (415) 555-0100 is a known
    # US line; 555-1234 lacks its area code; 12 is too short
    rows = [(None, phone, None, None, None) for phone in ("555-123-4567", "(415) 555-0100", "555-1234", "12")]
    kept = _standardize(spark, us, rows)
    assert [row["phone"] for row in kept] == ["+15551234567", "+14155550100", None, None]
    assert [row["value_issues"] for row in kept] == [["phone:unverified"], [], ["phone:invalid"], ["phone:invalid"]]
    strict = _standardize(spark, dataclasses.replace(us, phone_validation="valid"), rows)
    assert [row["phone"] for row in strict] == [None, "+14155550100", None, None]
    assert [row["value_issues"] for row in strict] == [["phone:invalid"], [], ["phone:invalid"], ["phone:invalid"]]
