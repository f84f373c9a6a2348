"""Evidence counted twice: comparisons agreeing together among non-matching pairs far more often
than apart (street number and street name of one household) are named, with the fix; comparisons
that are independent given the match status are not."""

from __future__ import annotations

import random

from resolution.evidence import evidence_overlaps
from resolution.model_report import TrainingReport

FIRST = ["ann", "bob", "cara", "dan", "eve", "finn", "gil", "hal", "ida", "jon", "kim", "lea", "max", "ned"]
STREETS = [f"street {i}" for i in range(60)]


def _households(spark, households: int = 400, seed: int = 5):
    """People in households of 1-4 sharing a street number and street name (60 streets, numbers
    1-300: neighbours share a street, rarely a number too); each person's own first name and
    birth date; a third of the people have a second record (a duplicate, same values)."""
    chooser = random.Random(seed)
    rows = []
    for household in range(households):
        number, street = str(chooser.randint(1, 300)), chooser.choice(STREETS)
        for member in range(chooser.randint(1, 4)):
            person = (chooser.choice(FIRST), f"19{chooser.randint(40, 99)}-0{chooser.randint(1, 9)}-1{chooser.randint(0, 9)}")
            copies = 2 if chooser.random() < 1 / 3 else 1
            for copy in range(copies):
                rows.append((f"s:{household}-{member}-{copy}", number, street, *person))
    return spark.createDataFrame(rows, "record_key string, street_number string, street_name string, "
                                       "first_name string, dob string")


def _model(prior: float) -> dict:
    def comparison(name: str, m: float) -> dict:
        return {"output_column_name": name, "comparison_levels": [
            {"is_null_level": True}, {"m_probability": m, "u_probability": 0.01}, {"m_probability": 1 - m}]}

    return {"probability_two_random_records_match": prior,
            "comparisons": [comparison("street_number", 0.95), comparison("street_name", 0.95),
                            comparison("first_name", 0.97), comparison("dob", 0.97)]}


def test_street_number_and_street_name_are_named_as_one_piece_of_evidence(spark):
    records = _households(spark)
    count = records.count()
    duplicates = count - records.select("street_number", "street_name", "first_name", "dob").distinct().count()
    prior = duplicates / (count * (count - 1) / 2)
    overlaps = evidence_overlaps(records, _model(prior))
    named = {frozenset((o.first, o.second)) for o in overlaps}
    # only the address parts: a person's first name and birth date are drawn apart from each
    # other and from the address (duplicates agree on all four: matches, taken out)
    assert named == {frozenset(("street_number", "street_name"))}
    [address] = [o for o in overlaps if {o.first, o.second} == {"street_number", "street_name"}]
    assert address.lift > 8 and address.given > 0.2  # non-matches sharing a number: many share the street
    what, fix = address.message({"street_number": "address", "street_name": "address"})
    assert "street_number and street_name" in what or "street_name and street_number" in what
    assert "columns: {address: [" in fix

    report = TrainingReport(_model(prior), (), (), tuple(o.message({}) for o in overlaps))
    lines = report.lines()
    start = next(i for i, line in enumerate(lines) if line.startswith("evidence counted twice (warning"))
    assert any("street_number" in line and "street_name" in line for line in lines[start:])


def test_independent_comparisons_raise_no_warning(spark):
    chooser = random.Random(9)
    rows = [(f"s:{i}", str(chooser.randint(1, 80)), chooser.choice(STREETS), chooser.choice(FIRST),
             f"19{chooser.randint(40, 99)}-01-01") for i in range(1500)]
    records = spark.createDataFrame(rows, "record_key string, street_number string, street_name string, "
                                          "first_name string, dob string")
    assert evidence_overlaps(records, _model(1e-6)) == []
    assert TrainingReport(_model(1e-6), (), ()).lines()[-1].startswith("evidence counted twice: none")
