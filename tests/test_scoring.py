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


def _variants(count: int, *, seed: int) -> list[tuple]:
    """Records of a few people, each written several ways (typos, nicknames, missing values),
    so that every blocking rule and identifier rule finds pairs, some of them across people."""
    import random

    chooser = random.Random(seed)
    firsts, lasts = ["william", "bill", "mary", "molly", "peter", "pete", "ann"], ["jones", "smith", "jonse", "brown"]

    def typo(text: str) -> str:
        at = chooser.randrange(len(text))
        return text[:at] + chooser.choice("aeiou") + text[at + 1:]

    rows = []
    for index in range(count):
        first, last = chooser.choice(firsts), chooser.choice(lasts)
        dob = DOB + datetime.timedelta(days=chooser.choice([0, 0, 1, 30, 400]))
        email = f"{first}.{last}{chooser.randint(1, 4)}@mail.example"
        values = [typo(first) if chooser.random() < 0.2 else first, last,
                  typo(email) if chooser.random() < 0.2 else email,
                  f"+4477009000{chooser.randint(10, 40)}", dob, f"{chooser.randint(1, 5)} high street",
                  chooser.choice(["N11AA", "E11AB"]), None, None]
        rows.append((f"g:{index}", *[None if chooser.random() < 0.15 else value for value in values]))
    return rows


def _scored(spark, records, config, model, **options) -> dict:
    frame = score_candidates(spark, records, config=config, model=model, **options)
    return {(row.record_key_l, row.record_key_r): (row.rule, row.match_weight, row.match_probability,
                                                    row.comparison_levels) for row in frame.collect()}


def test_the_native_scorer_finds_and_scores_the_pairs_splinks_linker_does(spark):
    """The pairs come from Spark joins and the weights from Splink's SQL in one query; Splink's
    Linker (its blocking and its pipeline of tables) must give the same pairs, rules, weights
    and evidence, over all records and for a changed subset."""
    config = load_config(CONFIG)
    model = load_model(REPO / config.matching.model, config)
    records = spark.createDataFrame(_variants(200, seed=5), _records(spark).schema).unionByName(_records(spark))
    records = records.cache()
    changed = records.filter(F.col("record_key").endswith("1") | F.col("record_key").startswith("a:"))
    for options in ({}, {"changed": changed}):
        native = _scored(spark, records, config, model, **options)
        reference = _scored(spark, records, config, model, via_linker=True, **options)
        assert native.keys() == reference.keys() and len(native) > 20
        for pair, (rule, weight, probability, levels) in reference.items():
            assert native[pair][0] == rule and native[pair][3] == levels, pair
            assert abs(native[pair][1] - weight) < 1e-9 and abs(native[pair][2] - probability) < 1e-12, pair
        assert {rule for rule, *_ in native.values()} >= {"model", "email"}
