"""Scoring: nickname-aware first names, and a Spark-trained model rebuilt for DuckDB."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import duckdb
from pyspark.sql import functions as F
from splink import DuckDBAPI, Linker

from resolution.config import load_config
from resolution.scoring import (
    load_model,
    model_for_dialect,
    model_inputs,
    score_candidates,
    with_candidate_rules,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "conf" / "benchmarks" / "generated.yml"  # first_name is a given_name there
COLUMNS = ["record_key", "first_name", "last_name", "email", "phone", "dob", "address",
           "postcode", "loyalty_id", "customer_id"]
DOB = datetime.date(1980, 5, 17)
RECORDS = [
    ("a:1", "william", "jones", "wjones@mail.example", "+447700900001", DOB, "1 high street", "N11AA", None, None),
    ("a:2", "bill", "jones", "bill.jones@mail.example", None, DOB, "1 high street", "N11AA", None, None),
    ("a:3", "mary", "jones", "mary.jones@mail.example", "+447700900003", None, "1 high street", "N11AA", None, None),
    ("a:4", "molly", "jones", "mary.jones@mail.example", None, None, None, "N11AA", None, None),
    ("a:5", "peter", "smith", "psmith@mail.example", "+447700900005", DOB, "2 low road", "E11AB", None, None),
    ("a:6", "pete", "smith", "psmith@mail.exampel", "+447700900005", DOB, "2 low road", "E11AB", None, None),
    ("a:7", None, "smith", None, "+447700900007", None, "2 low road", "E11AB", None, None),
]


def _records(spark):
    schema = ("record_key string, first_name string, last_name string, email string, phone string, "
              "dob date, address string, postcode string, loyalty_id string, customer_id string")
    return spark.createDataFrame(RECORDS, schema)


def test_nickname_groups_make_bill_and_william_agree_but_not_bill_and_mary(spark):
    config = load_config(CONFIG)
    inputs = model_inputs(_records(spark), config)
    groups = {row.record_key: row.first_name_nicknames for row in inputs.collect()}
    assert {"bill", "william"} <= set(groups["a:2"])
    assert groups["a:7"] is None  # no first name, no groups: the null level decides
    overlap = inputs.alias("l").crossJoin(inputs.alias("r")).select(
        F.col("l.record_key").alias("l"), F.col("r.record_key").alias("r"),
        F.arrays_overlap("l.first_name_nicknames", "r.first_name_nicknames").alias("agree"),
    )
    agree = {(row.l, row.r): row.agree for row in overlap.collect()}
    assert agree[("a:1", "a:2")] and agree[("a:3", "a:4")] and agree[("a:5", "a:6")]
    assert not agree[("a:2", "a:3")] and not agree[("a:1", "a:5")]


def test_a_spark_model_rebuilt_for_duckdb_scores_every_pair_as_spark_does(spark):
    config = load_config(CONFIG)
    model = load_model(REPO / config.matching.model, config)
    records = _records(spark)
    on_spark = {
        (row.record_key_l, row.record_key_r): row
        for row in score_candidates(spark, records, config=config, model=model).collect()
    }
    levels = on_spark[("a:1", "a:2")].comparison_levels
    assert levels["first_name"].startswith("Array intersection"), levels  # the nickname level
    assert on_spark[("a:3", "a:4")].rule == "email"  # identifier pairs are kept, with their rule

    db_api = DuckDBAPI(connection=duckdb.connect())
    table = db_api.register(model_inputs(records, config).toPandas())
    settings = with_candidate_rules(model_for_dialect(model, config, "duckdb"), config, "duckdb")
    on_duckdb = Linker(table, settings, log_level=logging.WARNING).inference.predict().as_pandas_dataframe()
    on_duckdb = {
        tuple(sorted((row.record_key_l, row.record_key_r))): row.match_probability
        for row in on_duckdb.itertuples()
    }
    assert len(on_spark) >= 5
    for pair, row in on_spark.items():
        assert abs(on_duckdb[pair] - row.match_probability) < 1e-9, pair
