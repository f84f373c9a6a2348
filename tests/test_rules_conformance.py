"""Every rule of resolution.rules gives the same answer in Spark (the batch) and in Python (the
real-time service), on the same values: standardization by kind, exclusions, the reasons values
are nulled, oversized groups, edge classification, the anchor order, key text and cannot-link."""

from __future__ import annotations

import itertools
import random
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from resolution import rules as R
from resolution import schemas as S
from resolution.config import DEFAULT_DATE_FORMATS, IdentifierRule, load_config

CONFIG = load_config(Path(__file__).resolve().parents[1] / "conf" / "example.yml")
RULES = R.kind_rules(CONFIG, date_formats=DEFAULT_DATE_FORMATS)
VALUES = {
    "email": [" Alice.Smith@Example.COM", "a.nn+shop@googlemail.com", "bad@", "a@b.c", "x y@z.com", "Ann+@x.org",
              "@x.org", "a@@b.org", "first.last@gmail.com", "ü@ß.de", "+tag@x.org"],
    "phone": ["07911 123401", "+44 7911 123402", "0000000000", "+1 415 555 0100", "abc", "+1 555-123-4567",
              "(020) 7946 0018", "44 7911 123404", "555-1234", "  "],
    "name": ["  Zoë ", "O'Brien", "Jean-Luc", "ÅSA", "d'Arcy.", "Łukasz", "José María", "x9y", "Ng\tNg", "-", "ǅ"],
    "date": ["1984-02-11", "11/02/1984", "19840211", "1984-2-11", "31/02/1984", "1984-02-11 10:30:00",
             "1984-02-11T10:30:00.123", "tomorrow", " 1990-11-30 ", "0001-01-01"],
    "address": ["12  High St.", "Flat 3/4, Rue d'Été", "  ", "PO BOX 7"],
    "postcode": [" sw1a 1aa ", "75-001", "  ", "ß1"],
    "text": ["a  b", "\tx\n", "  ", "ok"],
    "id": [" cust-001 ", "Cust 7", "", "ß-1", "l-200"],
}


def _random_texts(count: int, seed: int) -> list[str]:
    alphabet = "aAéÉİßÅø .+-@_'’0123456789/:T\tgmail.com"
    chooser = random.Random(seed)
    return ["".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 20))) for _ in range(count)]


def _spark_column(spark, values, expression, data_type: T.DataType | None = None) -> list:
    """``expression`` (column -> column) over ``values``, in input order."""
    frame = spark.createDataFrame(list(enumerate(values)), T.StructType([T.StructField("i", T.IntegerType()),
                                                                        T.StructField("v", data_type or T.StringType())]))
    rows = frame.select("i", expression(F.col("v")).alias("out")).orderBy("i").collect()
    return [row["out"] for row in rows]


@pytest.mark.parametrize("kind", sorted(RULES))
def test_each_kind_standardizes_alike_in_spark_and_python(spark, kind):
    values = VALUES[kind] + _random_texts(30, seed=len(kind))
    rule = RULES[kind]
    batch = _spark_column(spark, values, rule.column)
    online = [rule.value(value) for value in values]
    if kind == "phone":  # the (value, verified) pair
        batch = [(row["value"], row["verified"]) for row in batch]
    assert online == batch


def test_exclusions_and_value_issues_alike_in_spark_and_python(spark):
    patterns = ["noreply@%", "0000%", "%@example.com", "test_"]
    cases = list(itertools.product(
        [None, "", "  ", "noreply@x.org", "000-000-0000", "Ann@Example.com", "test1", "tests"],  # raw
        [None, "noreply@x.org", "a@example.com", "test1", "+447911123401"],  # standardized value
        ["email", "phone", "id"],
        [None, True, False],  # verified (phones only)
    ))
    schema = "raw string, value string, kind string, verified boolean"
    frame = spark.createDataFrame([(r, v, k, ver) for r, v, k, ver in cases], schema)
    outputs = []
    for kind in ("email", "phone", "id"):
        excluded = R.excluded_column(F.col("value"), F.col("raw"), kind, patterns)
        verified = F.col("verified") if kind == "phone" else None
        issue = R.value_issue_column("x", F.col("raw"), F.col("value"), excluded, verified)
        outputs.append(F.when(F.col("kind") == kind, F.struct(excluded.alias("e"), issue.alias("i"))))
    batch = [(row["out"]["e"], row["out"]["i"]) for row in frame.select(F.coalesce(*outputs).alias("out")).collect()]
    online = []
    for raw, value, kind, verified in cases:
        excluded = R.is_excluded(value, raw, kind, patterns)
        online.append((excluded, R.value_issue("x", raw, value, excluded, verified if kind == "phone" else None)))
    assert online == batch
    assert {issue for _, issue in online} >= {None, "x:excluded", "x:invalid", "x:unverified"}


def test_oversized_groups_and_edge_classification_alike_in_spark_and_python(spark):
    rule = IdentifierRule(attribute="email", name="email", exclude=(), max_group_size=3)
    sizes = [1, 2, 3, 4, 50]
    assert _spark_column(spark, sizes, lambda c: R.oversized_column(c, F.lit(rule.max_group_size)),
                         T.LongType()) == [R.is_oversized(size, rule) for size in sizes]

    thresholds = {"link_threshold": 0.9, "review_threshold": 0.5}
    cases = list(itertools.product([S.MODEL_RULE, "email", S.ACCEPTED_RULE], [None, 0.1, 0.5, 0.7, 0.9, 0.99],
                                   [False, True]))
    frame = spark.createDataFrame(cases, "rule string, p double, accepted boolean")
    rule_col, p, accepted = F.col("rule"), F.col("p"), F.col("accepted")
    batch = frame.select(
        R.edge_status_column(rule_col, p, accepted, **thresholds).alias("status"),
        R.edge_rule_column(rule_col, p, accepted, link_threshold=0.9).alias("rule"),
    ).collect()
    online = [(R.edge_status(r, prob, acc, **thresholds), R.edge_rule(r, prob, acc, link_threshold=0.9))
              for r, prob, acc in cases]
    assert online == [(row["status"], row["rule"]) for row in batch]
    assert {status for status, _ in online} == {S.LINK, S.REVIEW, None}


def test_anchor_order_and_key_text_alike_in_spark_and_python(spark):
    chooser = random.Random(7)
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    records = [
        {S.SOURCE_TIMESTAMP: chooser.choice([None, start, start + timedelta(days=chooser.randint(0, 3))]),
         S.SOURCE_PRIORITY: chooser.randint(1, 3), S.RECORD_KEY: f"s:{index:03d}"}
        for index in chooser.sample(range(200), 60)
    ]
    schema = f"{S.SOURCE_TIMESTAMP} timestamp, {S.SOURCE_PRIORITY} int, {S.RECORD_KEY} string"
    frame = spark.createDataFrame([tuple(r.values()) for r in records], schema)
    batch = [row[S.RECORD_KEY] for row in frame.orderBy(*R.anchor_order()).collect()]
    assert [r[S.RECORD_KEY] for r in sorted(records, key=R.anchor_key)] == batch

    dates = [date(1984, 2, 11), date(1, 1, 1), None]
    assert _spark_column(spark, dates, lambda c: c.cast("string"), T.DateType()) == [R.key_text(d) for d in dates]
    numbers = [0, -5, 1234567890123, None]
    assert _spark_column(spark, numbers, lambda c: c.cast("string"), T.LongType()) == [R.key_text(n) for n in numbers]


def test_cannot_link_conflict_is_the_union_breaking_the_constraint_in_spark(spark):
    """Python asks whether joining two groups breaks a constraint; Spark whether a cluster
    breaks one. For groups that each keep the constraints, the answers must agree."""
    attributes, unique_sources = ["dob", "ssn"], ["master"]
    chooser = random.Random(11)

    def group(prefix: str) -> list[dict]:
        size = chooser.randint(1, 3)
        fixed = {name: chooser.choice([None, f"{name}1", f"{name}2"]) for name in attributes}
        sources = chooser.sample(["master", "crm", "web"], size)  # a source at most once
        return [{S.RECORD_KEY: f"{prefix}{i}", S.SOURCE: source,
                 **{name: fixed[name] if chooser.random() < 0.7 else None for name in attributes}}
                for i, source in enumerate(sources)]

    def summary(records: list[dict]) -> tuple[dict, dict]:
        values: dict[str, set[str]] = {}
        for r in records:
            for name in attributes:
                if r[name] is not None:
                    values.setdefault(name, set()).add(r[name])
        return values, {r[S.SOURCE]: r[S.RECORD_KEY] for r in records if r[S.SOURCE] in unique_sources}

    rows, online = [], []
    for case in range(80):
        left, right = group("l"), group("r")
        (mine, mine_sources), (theirs, theirs_sources) = summary(left), summary(right)
        online.append(R.cannot_link_conflict(mine, theirs, mine_sources, theirs_sources,
                                             attributes=attributes) is not None)
        rows += [(case, r[S.RECORD_KEY], r[S.SOURCE], r["dob"], r["ssn"]) for r in left + right]
    frame = spark.createDataFrame(rows, f"case int, {S.RECORD_KEY} string, {S.SOURCE} string, dob string, ssn string")
    violated = R.cannot_link_violated(attributes, unique_sources)
    batch = [row["v"] for row in frame.groupBy("case").agg(violated.alias("v")).orderBy("case").collect()]
    assert online == batch
    assert True in online and False in online


def test_a_composite_attribute_joins_its_columns_alike_in_spark_and_python(spark):
    """An address built from street number, street name and unit: each part trimmed, empty or
    null parts left out, one space between; none at all gives null. Numbers are text as Spark
    casts them."""
    chooser = random.Random(3)
    parts = [None, "", "  ", " 12 ", "High  St.", "Flat 3", "\t", "0", "ü"]
    rows = [tuple(chooser.choice(parts) for _ in range(3)) for _ in range(80)] + [(None, None, None), ("", " ", None)]
    schema = "a string, b string, c string"
    frame = spark.createDataFrame(list(rows), schema)
    batch = [row["out"] for row in frame.select(R.joined_parts([F.col("a"), F.col("b"), F.col("c")]).alias("out")).collect()]
    assert [R.joined_parts_value(list(row)) for row in rows] == batch
    assert R.joined_parts_value([" 12 ", None, "High  St."]) == "12 High  St."
    assert R.joined_parts_value(["", " ", None]) is None

    numbers = spark.createDataFrame([(12, "Mill Lane"), (None, "Mill Lane"), (7, None)], "n long, s string")
    batch = [row["out"] for row in numbers.select(R.joined_parts([F.col("n"), F.col("s")]).alias("out")).collect()]
    assert batch == [R.joined_parts_value([n, s]) for n, s in [(12, "Mill Lane"), (None, "Mill Lane"), (7, None)]]
    assert batch == ["12 Mill Lane", "Mill Lane", "7"]


TYPOS = ["1980-01-02", "1980-02-01", "1980-01-03", "1908-01-02", "1980-10-20", "123456789", "123456798",
         "12345678", "213456789", "1234567890", "", "a", "ab", "ba", "abc", "acb", "bac", "ü", "üa", "aü"]


@pytest.mark.parametrize("tolerate", [("one_edit",), ("transposition",), ("day_month_swap",),
                                      ("one_edit", "transposition", "day_month_swap")])
def test_tolerated_differences_alike_in_spark_and_python(spark, tolerate):
    pairs = [(a, b) for a in TYPOS for b in TYPOS]
    frame = spark.createDataFrame(pairs, "a string, b string")
    batch = [row["d"] for row in frame.select(R._values_differ_column(F.col("a"), F.col("b"), tolerate).alias("d"))
             .collect()]
    assert [R.values_differ(a, b, tolerate) for a, b in pairs] == batch
    assert not R.values_differ("x", "x", ()) and R.values_differ("1980-01-02", "1980-02-01", ())


def test_tolerant_cannot_link_conflict_is_the_union_breaking_the_constraint_in_spark(spark):
    """As above, with ``dob`` tolerating a day/month swap and ``ssn`` one edit: a group may
    hold several values that tolerate each other; two groups conflict when a value of one
    differs from a value of the other beyond that."""
    attributes, tolerate = ["dob", "ssn"], {"dob": ("day_month_swap",), "ssn": ("one_edit",)}
    variants = {"dob": [["2001-03-04", "2001-04-03"], ["2001-05-05"], ["1999-03-04", "1999-04-03"]],
                "ssn": [["111", "112", "11"], ["211"], ["311", "321"]]}
    chooser = random.Random(13)

    def group(prefix: str) -> list[dict]:
        chosen = {name: chooser.choice(variants[name]) for name in attributes}
        return [{S.RECORD_KEY: f"{prefix}{i}", S.SOURCE: "crm",
                 **{name: chooser.choice([None, chooser.choice(chosen[name][:1] if name == "ssn" else chosen[name])])
                    for name in attributes}}
                for i in range(chooser.randint(1, 3))]

    rows, online = [], []
    for case in range(120):
        left, right = group("l"), group("r")
        values = [{name: {r[name] for r in side if r[name] is not None} for name in attributes} for side in (left, right)]
        online.append(R.cannot_link_conflict(values[0], values[1], {}, {}, attributes=attributes,
                                             tolerate=tolerate) is not None)
        rows += [(case, r[S.RECORD_KEY], r[S.SOURCE], r["dob"], r["ssn"]) for r in left + right]
    frame = spark.createDataFrame(rows, f"case int, {S.RECORD_KEY} string, {S.SOURCE} string, dob string, ssn string")
    violated = R.cannot_link_violated(attributes, [], tolerate)
    batch = [row["v"] for row in frame.groupBy("case").agg(violated.alias("v")).orderBy("case").collect()]
    assert online == batch
    assert True in online and False in online
