"""The service standardizes a record exactly as the batch's Spark transforms do."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolution.config import DEFAULT_DATE_FORMATS, load_config
from resolution.realtime.standardize import Standardizer
from resolution.standardize import standardize_records

CONFIG = load_config(Path(__file__).resolve().parents[1] / "conf" / "example.yml")
TRICKY = {
    "first_name": ["  Zoë ", "O'Brien", "Jean-Luc", "ÅSA", "Mary Ann", "d'Arcy.", "  ", "Łukasz", "José María", "x9y"],
    "last_name": ["Smith  Jones", "ÀÉÎÕÜ", "van der Berg", "-", "O’Neil", "Ng\tNg", "", "Müller-Lüdenscheidt"],
    "email": ["Alice.Smith@Example.COM", " a.nn+shop@googlemail.com ", "noreply@shop.example", "bad@", "a@b.c",
              "x y@z.com", "Ann+@x.org", "first.last@gmail.com", "@x.org", "a@@b.org", "no-reply@x.com"],
    "phone": ["07911 123401", "+44 7911 123402", "0000000000", "1234567890", "+1 415 555 0100", "abc", "", "+1 555-123-4567",
              "(020) 7946 0018", "+447911123403", "44 7911 123404", "+440000000000"],
    "dob": ["1984-02-11", "11/02/1984", "1984/02/11", "19840211", "11.02.1984", "1984-2-11", "31/02/1984",
            "1984-02-11 10:30:00", "1984-02-11T10:30:00", "1984-02-11T10:30:00.123", "tomorrow", " 1990-11-30 "],
    "customer_id": [" cust-001 ", "Cust 7", "", "ß-1"],
    "loyalty_id": ["l-200", "  L-1200", "0"],
}


def _spark_rows(spark, rows: list[dict[str, str | None]]) -> list[dict]:
    attributes = list(CONFIG.attribute_kinds)
    data = [
        ("api", str(i), 1, None, "h", *[row.get(a) for a in attributes]) for i, row in enumerate(rows)
    ]
    schema = "source string, source_id string, source_priority int, source_timestamp timestamp, row_hash string, " + ", ".join(
        f"{a} string" for a in attributes
    )
    frame = standardize_records(spark.createDataFrame(data, schema), config=CONFIG)
    out = {int(r["source_id"]): r.asDict() for r in frame.collect()}
    return [out[i] for i in range(len(rows))]


def _check(spark, rows: list[dict[str, str | None]]) -> None:
    standardizer = Standardizer(CONFIG, date_formats=DEFAULT_DATE_FORMATS)
    for raw, batch in zip(rows, _spark_rows(spark, rows), strict=True):
        values, issues = standardizer.record(raw)
        for attribute in CONFIG.attribute_kinds:
            assert values[attribute] == batch[attribute], (attribute, raw.get(attribute), values[attribute], batch[attribute])
        assert sorted(issues) == sorted(batch["value_issues"]), (raw, issues, batch["value_issues"])


def test_tricky_values_standardize_as_in_spark(spark):
    width = max(len(values) for values in TRICKY.values())
    rows = [{a: values[i % len(values)] for a, values in TRICKY.items()} for i in range(width)]
    _check(spark, rows)


text = st.text(alphabet="aAéÉİßÅø .+-@_'’0123456789/:T\tgmail.com", max_size=24)


@settings(max_examples=int(os.environ.get("IDR_PROPERTY_EXAMPLES", "3")), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.fixed_dictionaries({a: st.one_of(st.none(), text) for a in TRICKY}), min_size=20, max_size=20))
def test_random_values_standardize_as_in_spark(spark, rows):
    _check(spark, rows)
