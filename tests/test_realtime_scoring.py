"""The service's two scorers (the model's levels compiled to Python, and Splink's SQL on
DuckDB) give every pair the same match weight, for every comparison kind the configs use."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from resolution.config import load_config
from resolution.realtime.compiled import UnsupportedSQLError, compile_condition
from resolution.realtime.scorer import OnlineScorer
from resolution.realtime.state import nickname_group

REPO = Path(__file__).resolve().parents[1]
FIRST = ["bill", "william", "will", "liz", "elizabeth", "beth", "jon", "john", "jonathan", "ann", "anne", "zoë"]
LAST = ["smith", "smyth", "smithe", "jones", "johns", "o-neil", "oneil", "lee", "li", ""]
ADDRESS = ["12 high street", "12 high st", "21 high street", "4 mill lane", "4 mill ln flat 2"]


def _email(rng: random.Random) -> str | None:
    user = rng.choice(["ann.lee", "annlee", "ann.le", "a.lee", "bo", "bö.ray"])
    return rng.choice([None, f"{user}@{rng.choice(['x.org', 'y.com', 'x.org'])}"])


def _record(rng: random.Random, key: int, config) -> dict:
    born = date(1980, 1, 1) + timedelta(days=rng.choice([0, 1, 10, 31, 40, 300, 400, 4000, 9000]))
    record = {
        "record_key": f"r:{key}",
        "first_name": rng.choice([None, *FIRST]),
        "last_name": rng.choice([None, *LAST]),
        "email": _email(rng),
        "phone": rng.choice([None, "+447911123401", "+447911123410", "+447911132401", "+447922999999"]),
        "dob": rng.choice([None, born, date(1980, 10, 1), date(1980, 1, 10)]),
        "address": rng.choice([None, *ADDRESS]),
    }
    for attribute, kind in config.matching.comparisons.items():
        if kind == "given_name":
            record[attribute + "_nicknames"] = nickname_group(record[attribute])
    return record


@pytest.mark.parametrize("config_file", ["conf/example.yml", "conf/benchmarks/generated.yml"])
def test_compiled_levels_score_every_pair_as_duckdb_does(config_file):
    config = load_config(REPO / config_file)
    scorer = OnlineScorer(config, REPO / config.matching.model)
    assert scorer.compiled is not None
    rng = random.Random(5)
    records = [_record(rng, key, config) for key in range(300)]
    columns = ["record_key", *config.matching.comparisons]
    columns += [a + "_nicknames" for a, kind in config.matching.comparisons.items() if kind == "given_name"]
    types = {"dob": pa.date32()}
    schema = pa.schema([pa.field(c, pa.list_(pa.string()) if c.endswith("_nicknames") else types.get(c, pa.string()))
                        for c in columns])
    table = pa.Table.from_pylist([{c: r[c] for c in columns} for r in records], schema=schema)
    levels_seen = set()
    for index in range(0, 300, 10):
        on_duckdb = scorer.score_on_duckdb(table.slice(index, 1), table)
        few = scorer.score(records[index], records[:50], schema)  # few candidates: the Python path
        assert all(few[k][0] == pytest.approx(on_duckdb[k][0], abs=1e-9) for k in few) and len(few) == 50
        cache: dict = {}
        for record in records:
            weight = scorer.compiled.match_weight(records[index], record, cache)
            assert weight == pytest.approx(on_duckdb[record["record_key"]][0], abs=1e-9), (records[index], record)
            levels_seen.add(round(weight, 6))
    assert len(levels_seen) > 100  # the pairs reach many level combinations, not a few


def test_sql_the_compiler_does_not_know_is_refused_not_guessed():
    assert compile_condition('"x_l" = "x_r"')({"x": "a"}, {"x": "a"})
    assert not compile_condition('"x_l" = "x_r"')({"x": None}, {"x": None})  # NULL = NULL is not true
    with pytest.raises(UnsupportedSQLError, match="Soundex"):
        compile_condition('soundex("x_l") = soundex("x_r")')
