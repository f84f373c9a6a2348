"""The data generator: deterministic, truth that covers every record, the corruptions it promises."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from resolution.generate import (
    KEY_COLUMNS,
    SOURCE_FILES,
    TRUTH_FILE,
    change_batch,
    generate_people,
    generate_sources,
    write_sources,
)


def _digests(folder) -> dict[str, str]:
    names = [*SOURCE_FILES.values(), TRUTH_FILE]
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}


def _keys(tables: dict[str, pd.DataFrame]) -> set[str]:
    return {f"{source}:{key}" for source, column in KEY_COLUMNS.items() for key in tables[source][column]}


def test_the_same_seed_writes_identical_files_and_another_seed_does_not(tmp_path):
    write_sources(800, tmp_path / "a", seed=5, batches=2)
    write_sources(800, tmp_path / "b", seed=5, batches=2)
    write_sources(800, tmp_path / "c", seed=6, batches=2)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert _digests(tmp_path / "a")[SOURCE_FILES["crm"]] != _digests(tmp_path / "c")[SOURCE_FILES["crm"]]


def test_truth_covers_every_record_once_before_and_after_change_batches(tmp_path):
    tables = generate_sources(3000, seed=1)
    assert set(tables["truth"]["record_key"]) == _keys(tables)
    assert tables["truth"]["record_key"].is_unique
    records = sum(len(tables[source]) for source in KEY_COLUMNS)
    assert 1.7 * 3000 < records < 2.1 * 3000  # about 1.9 records per person

    counts = write_sources(3000, tmp_path, seed=1, batches=3, change_fraction=0.02)
    after = {source: pd.read_csv(tmp_path / name, dtype=str, keep_default_na=False)
             for source, name in SOURCE_FILES.items()}
    truth = pd.read_csv(tmp_path / TRUTH_FILE, dtype=str)
    assert set(truth["record_key"]) == _keys(after) and truth["record_key"].is_unique
    assert counts["truth"] == len(truth)
    before_keys = _keys(tables)
    assert len(before_keys - _keys(after)) > 0, "change batches delete records"
    assert len(_keys(after) - before_keys) > 0, "change batches insert records"
    crm_before = tables["crm"].set_index("contact_id")
    crm_after = after["crm"].set_index("contact_id")
    both = crm_before.index.intersection(crm_after.index)
    assert (crm_before.loc[both, "email"].fillna("") != crm_after.loc[both, "email"]).sum() > 0, "updates"


def test_the_corruptions_and_hard_negatives_are_there():
    tables = generate_sources(5000, seed=2)
    truth = tables["truth"].set_index("record_key")
    crm, orders = tables["crm"], tables["ecommerce"]
    emails = pd.concat([crm["email"], orders["buyer_email"]]).str.strip()
    assert emails.str.contains(r"\+\w+@gmail\.com$", regex=True).any(), "Gmail plus tags"
    gmail = emails[emails.str.lower().str.endswith("@gmail.com")].str.lower().str.split("@").str[0]
    moved_dots = gmail.str.contains(".", regex=False) & ~gmail.str.match(r"^[a-z]+\.[a-z]+\d+(\+\w+)?$")
    assert moved_dots.any(), "Gmail dots"
    assert (crm["first_name"] != crm["first_name"].str.strip()).any(), "stray whitespace"
    assert crm["first_name"].str.isupper().any(), "upper case"
    assert crm["phone"].str.startswith("+44").any() and crm["phone"].str.startswith("07").any()
    assert (crm["dob"] == "").any() and (crm["phone"] == "").any(), "missing values"
    assert orders["buyer_first"].str.lower().str.strip().isin(["bill", "bob", "liz", "mike"]).any(), "nicknames"

    # household members who share an email: one value, two true people
    person = "ecommerce:" + orders["order_id"]
    by_email = pd.DataFrame({"email": orders["buyer_email"].str.strip().str.lower(),
                             "person": truth.loc[person, "person_id"].to_numpy()})
    assert (by_email.groupby("email")["person"].nunique() > 1).any(), "shared family emails"
    # names as in a real population: a few common surnames (Smith: about 1% of people), a long
    # tail held by one person each, and namesakes (one full name, two different people)
    names = crm.assign(person=truth.loc["crm:" + crm["contact_id"], "person_id"].to_numpy())
    surname = names.groupby(names["last_name"].str.strip().str.lower())["person"].nunique()
    assert surname.max() >= 20 and (surname == 1).sum() > len(surname) / 2, "common and rare surnames"
    full = names["first_name"].str.strip().str.lower() + " " + names["last_name"].str.strip().str.lower()
    assert (names.groupby(full)["person"].nunique() >= 2).sum() >= 10, "namesakes"
    # the same person twice in the CRM (a duplicate contact)
    assert names["person"].duplicated().any()
    # twins: same household and birth date, two people
    twins = names.assign(household=truth.loc["crm:" + crm["contact_id"], "household"].to_numpy())
    twins = twins[twins["dob"] != ""].groupby(["household", "dob"])["person"].nunique()
    assert (twins > 1).any(), "twins"


def test_family_members_have_their_own_first_names_and_everyone_their_own_mobile():
    people = generate_people(20000, np.random.default_rng(3))
    repeated = people.groupby("household")["first"].agg(lambda names: names.duplicated().sum())
    multi = people.groupby("household").size() > 1
    # juniors (2% of second members) share the head's name; nobody else in a household does
    assert 0 < repeated.sum() < 0.05 * multi.sum()
    assert people["mobile"].is_unique
    # consecutive people's mobiles are unrelated numbers, not one digit apart
    digits_differing = [sum(a != b for a, b in zip(x, y, strict=True))
                        for x, y in zip(people["mobile"][:-1], people["mobile"][1:], strict=True)]
    assert np.median(digits_differing) >= 4

    # people new in a change batch get mobiles of their own: one number, one person
    after = change_batch(generate_sources(2000, seed=5), fraction=0.05, seed=6)
    crm = after["crm"][after["crm"]["phone"] != ""]
    person = after["truth"].set_index("record_key").loc["crm:" + crm["contact_id"], "person_id"]
    digits = crm["phone"].str.replace(r"\D", "", regex=True).str[-10:]
    assert crm["contact_id"].str.startswith("N").any(), "the batch brings new people"
    assert (pd.Series(person.to_numpy()).groupby(digits.to_numpy()).nunique() == 1).all()


def test_the_household_mode_has_rosters_numbers_with_copy_errors_and_no_contact_identifiers(tmp_path):
    from resolution.cli import main
    from resolution.generate_households import HOUSEHOLD_FILES, generate_households

    tables = generate_households(3000, seed=5)
    census, ssa, tax, truth = (tables[name] for name in ("census", "ssa", "tax", "truth"))
    assert len(truth) == len(census) + len(ssa) + len(tax) and truth["record_key"].is_unique
    for table in (census, ssa, tax):
        assert not any("mail" in column and column != "mailing_address" for column in table.columns)
        assert not any("phone" in column for column in table.columns)
    assert "dob" not in tax.columns and "street_name" not in ssa.columns and "mailing_address" not in ssa.columns
    people = truth.set_index("record_key")
    census_people = people.loc["census:" + census["record_id"], "person_id"]
    assert census_people.is_unique  # the roster holds each person once
    # several people per address, sharing a surname mostly
    by_address = census.groupby(["street_number", "street_name"]).size()
    assert (by_address > 1).mean() > 0.3
    # a number on a form is sometimes not the person's own (copied from a household member or
    # mistyped), and some people have two ssa records
    own = dict(zip(people.loc["ssa:" + ssa["record_id"], "person_id"], ssa["ssn"], strict=False))
    form_people = people.loc["tax:" + tax["form_id"], "person_id"].to_numpy()
    wrong = np.mean([own.get(person) not in (None, number) for person, number in zip(form_people, tax["ssn"], strict=True)])
    assert 0.01 < wrong < 0.15
    assert people.loc["ssa:" + ssa["record_id"], "person_id"].duplicated().sum() > 0.05 * len(ssa)

    assert main(["generate", "--mode", "households", "--people", "300", "--seed", "3", "--output", str(tmp_path)]) == 0
    assert {path.name for path in tmp_path.iterdir()} == {*HOUSEHOLD_FILES.values(), "truth.csv"}
    digest = hashlib.sha256((tmp_path / "tax.csv").read_bytes()).hexdigest()
    again = tmp_path / "again"
    assert main(["generate", "--mode", "households", "--people", "300", "--seed", "3", "--output", str(again)]) == 0
    assert hashlib.sha256((again / "tax.csv").read_bytes()).hexdigest() == digest
