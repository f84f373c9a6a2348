"""``idr init``: column guesses on small inline data, a starter config from five sources (CSV,
Parquet, Delta) that a run accepts as written, and the errors a user can cause."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake

from resolution import schemas as S
from resolution.cli import EXIT_CONFIG, main
from resolution.config import load_config, parse_config
from resolution.starter import (
    EMAIL_EXCLUDES,
    PHONE_EXCLUDES,
    Sample,
    StarterError,
    classify_column,
    column_words,
    guess_key,
    guess_phone_region,
    guess_source,
    guess_timestamp,
    read_sample,
)

REPO = Path(__file__).resolve().parents[1]


def _attribute(column: str, values, **kwargs) -> str | None:
    return classify_column(column, values, **kwargs).attribute


def _sample(columns: dict[str, list], *, fmt: str = "csv", types: dict[str, str] | None = None) -> Sample:
    rows = len(next(iter(columns.values())))
    types = {name: (types or {}).get(name, "string") for name in columns}
    return Sample(fmt, tuple(columns), {name: list(values) for name, values in columns.items()}, types, rows)


# --- column classification (no Spark) --------------------------------------------------------


def test_column_words_split_snake_camel_and_spaces():
    assert column_words("buyer_first") == ("buyer", "first")
    assert column_words("ReporterForename") == ("reporter", "forename")
    assert column_words("DOB") == ("dob",)
    assert column_words("Order Number") == ("order", "number")
    assert column_words("HTTPStatusCode") == ("http", "status", "code")


def test_emails_are_recognised_by_their_values_whatever_the_column_is_called():
    emails = ["ann@x.org", " Bob.Lee@Example.COM ", None, "noreply@shop.example"]
    assert _attribute("contact", emails) == "email"
    assert _attribute("buyer_email", emails) == "email"
    assert _attribute("requester_email", emails) == "email"
    guess = classify_column("email", ["n/a", "unknown", "ann@x.org", "none"])
    assert guess.attribute is None and "only 1 of 4" in guess.reason


def test_phones_by_name_or_by_formatted_values_but_not_dates_or_numeric_ids():
    assert _attribute("MobileNumber", ["07911 123401", "+44 7911 123402", "not a phone"]) == "phone"
    assert _attribute("ContactTel", ["07911123402", None]) == "phone"
    assert _attribute("reach", ["+44 7911 123401", "(020) 7946 0018", "+1 415-555-0100"]) == "phone"
    assert _attribute("placed", ["2022-03-01", "2022-03-02", "2022-04-12"]) is None  # dates, not phones
    assert _attribute("order_no", ["10023456", "10023457", "10023458"]) is None  # an id, not a phone
    assert _attribute("amount", ["1234567", "7654321"]) is None  # unformatted digits: not a phone


def test_first_last_and_full_names_map_to_one_attribute_each():
    names = ["Alice", "Zoë", "Jean-Luc", "O'Brien"]
    for column in ("first_name", "GivenName", "buyer_first", "fname", "Forename"):
        assert _attribute(column, names) == "first_name", column
    for column in ("last_name", "FamilyName", "buyer_last", "Surname", "lname"):
        assert _attribute(column, names) == "last_name", column
    assert _attribute("Name", ["Alice Smith", "Karen Lee", "Zoë Ångström"]) == "full_name"
    assert _attribute("customer_name", ["Alice Smith", "Karen Lee"]) == "full_name"
    assert _attribute("company_name", ["Acme Ltd", "Initech"]) is None
    assert _attribute("last_login", ["2024-01-02 10:00:00", "2024-01-03 11:00:00"]) is None
    assert "single words" in classify_column("name", ["Alice", "Bob"]).reason


def test_birth_dates_by_name_and_values_other_dates_are_not_attributes():
    assert _attribute("BirthDate", ["11/02/1984", "30/11/1990", None]) == "dob"
    assert _attribute("date_of_birth", ["1984-02-11", "1990-11-30"]) == "dob"
    assert _attribute("dob", [date(1984, 2, 11).isoformat()], column_type="date") == "dob"
    assert _attribute("created_at", ["2021-01-05 09:00:00"]) is None
    assert _attribute("dob", ["soon", "later"]) is None


def test_identity_ids_share_one_attribute_across_naming_styles():
    for column in ("loyalty_no", "LoyaltyCardNumber", "loyalty_id", "loyalty"):
        guess = classify_column(column, ["L-100", "L-200"])
        assert (guess.attribute, guess.kind) == ("loyalty_id", "id"), column
    assert _attribute("CustRef", ["CUST-001"]) == "customer_id"
    assert _attribute("customer_id", ["CUST-001"]) == "customer_id"
    assert _attribute("MemberNo", ["M1"]) == "member_id"
    assert _attribute("account_type", ["gold", "silver"] * 15) is None  # a category, not an id
    assert _attribute("order_id", ["O1", "O2"]) is None  # a record id: a key, not an attribute


def test_postcodes_addresses_and_unrecognised_columns():
    assert _attribute("ZipCode", ["SW1A 1AA"]) == "postcode"
    assert _attribute("post_code", ["90210"]) == "postcode"
    assert _attribute("street_address", ["1 High St"]) == "address"
    assert _attribute("ip_address", ["10.0.0.1"]) is None
    assert classify_column("notes", ["called twice"]).reason == "no attribute recognised"


def test_junk_values_do_not_stop_a_column_being_recognised_and_are_counted_in_the_yaml():
    sample = _sample({
        "id": ["1", "2", "3", "4"],
        "mail": ["noreply@shop.example", "no-reply@x.org", "ann@x.org", "bob@y.org"],
        "tel": ["0000000000", "1234567890", "07911 123401", "07911 123402"],
    })
    guess = guess_source("shop", "data/shop.csv", sample, priority=1)
    assert {a: g.column for a, g in guess.mapped.items()} == {"email": "mail", "phone": "tel"}
    from resolution.starter import render_config

    text = render_config([guess], output="x.yml", warehouse="./lh", phone_region="GB",
                         region_reason="test", matching=None)
    assert "shared or placeholder mailboxes; 2 sampled values match" in text
    assert "placeholder numbers; 2 sampled values match" in text


def test_the_junk_lists_are_the_ones_of_conf_example_yml():
    example = yaml.safe_load((REPO / "conf" / "example.yml").read_text(encoding="utf-8"))
    excludes = {rule["attribute"]: tuple(rule.get("exclude", ())) for rule in example["identifiers"]}
    assert excludes["email"] == EMAIL_EXCLUDES
    assert excludes["phone"] == PHONE_EXCLUDES


def test_key_prefers_a_unique_record_id_and_says_todo_when_nothing_is_unique():
    guesses = {}
    sample = _sample({
        "customer_id": ["C1", "C2", "C3"],
        "order_id": ["O1", "O2", "O3"],
        "email": ["a@x.org", "b@x.org", "c@x.org"],
    })
    guesses = {c: classify_column(c, sample.values[c]) for c in sample.columns}
    assert guess_key("orders", sample, guesses).column == "order_id"  # not the customer id
    # the record id has a duplicate and an empty value: the unique customer id is the key
    sample = _sample({"contact_id": ["C1", "C1", None], "customer_id": ["K1", "K2", "K3"]})
    guesses = {c: classify_column(c, sample.values[c]) for c in sample.columns}
    key = guess_key("crm", sample, guesses)
    assert (key.column, key.certain) == ("customer_id", True)
    assert "contact_id is not: 1 duplicated, 1 empty" in key.reason
    sample = _sample({"ref": ["A", "A", "B"], "note": ["x", "y", "z"]})
    guesses = {c: classify_column(c, sample.values[c]) for c in sample.columns}
    key = guess_key("s", sample, guesses)
    assert (key.column, key.certain) == ("ref", False) and key.reason.startswith("TODO")
    sample = _sample({"note": ["x", "y"], "other": ["a", "b"]})
    guesses = {c: classify_column(c, sample.values[c]) for c in sample.columns}
    key = guess_key("s", sample, guesses)
    assert (key.column, key.certain) == ("note", False) and key.reason.startswith("TODO")


def test_timestamp_prefers_a_creation_time_and_never_a_birth_date():
    sample = _sample({
        "updated_at": ["2024-01-02 10:00:00", "2024-01-03 10:00:00"],
        "dob": ["1984-02-11", "1990-11-30"],
        "created_at": ["2021-01-05T09:00:00", "2021-02-10T10:30:00Z"],
    })
    guesses = {c: classify_column(c, sample.values[c]) for c in sample.columns}
    choice = guess_timestamp(sample, guesses)
    assert choice.column == "created_at" and "also: updated_at" in choice.reason
    assert guess_timestamp(_sample({"id": ["1"]}), {"id": classify_column("id", ["1"])}) is None


def test_month_first_slash_dates_get_their_own_date_formats():
    sample = _sample({"id": ["1", "2"], "birth_date": ["02/25/1984", "12/31/1990"]})
    guess = guess_source("s", "s.csv", sample, priority=1)
    assert guess.mapped["dob"].column == "birth_date"
    assert guess.date_formats[0] == "MM/dd/yyyy" and "dd/MM/yyyy" not in guess.date_formats
    assert guess.location == "./s.csv"  # a path, not a catalog table name


def test_phone_region_from_prefixes():
    assert guess_phone_region(["+44 7911 123401", "07911 123402", "+1 415 555 0100"])[0] == "GB"
    assert guess_phone_region(["(415) 555-0100", "+1 212 555 0101"])[0] == "US"
    assert guess_phone_region(["12345", "not a phone"])[0] is None


def test_csv_sample_reads_text_and_the_separator(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("id;phone\n1;007\n2;\n", encoding="utf-8")
    sample = read_sample("semi", str(path))
    assert sample.options == {"sep": ";"}
    assert sample.values == {"id": ["1", "2"], "phone": ["007", None]}  # text, leading zero kept


# --- five sources, renamed columns, one run ------------------------------------------------

RENAMES = {
    "crm_contacts.csv": {"contact_id": "ContactNo", "first_name": "GivenName", "last_name": "FamilyName",
                         "email": "EmailAddress", "phone": "MobileNumber", "customer_id": "CustRef",
                         "dob": "BirthDate", "created_at": "CreatedOn"},
    "orders.csv": {"order_id": "Order Number", "buyer_email": "Contact", "loyalty_no": "LoyaltyCardNumber",
                   "buyer_first": "BuyerFirst", "buyer_last": "BuyerLast", "order_date": "PlacedDate"},
    "support_tickets.csv": {"ticket_id": "TicketRef", "requester_email": "ReporterMail",
                            "requester_phone": "ContactTel", "requester_first": "ReporterForename",
                            "requester_last": "ReporterSurname", "created_at": "OpenedAt",
                            "requester_dob": "ReporterBorn"},
}
EMAIL_COLUMNS = {"crm": "EmailAddress", "shop": "Contact", "helpdesk": "ReporterMail",
                 "newsletter": "Mail", "members": "email_addr"}


def _write_sources(folder: Path) -> list[str]:
    """The sample CSVs with renamed columns, a Parquet file and a Delta table (change feed on)."""
    arguments = []
    for (file, renames), name in zip(RENAMES.items(), ("crm", "shop", "helpdesk"), strict=True):
        lines = (REPO / "data" / "sample" / file).read_text(encoding="utf-8").splitlines()
        header = ",".join(renames.get(column, column) for column in lines[0].split(","))
        (folder / file).write_text("\n".join([header, *lines[1:]]) + "\n", encoding="utf-8")
        arguments += ["--source", f"{name}={folder / file}"]
    signed = [datetime(2023, 1, day, 9, 0) for day in (1, 2, 3, 4)]
    pq.write_table(pa.table({
        "SubscriberId": ["S1", "S2", "S3", "S4"],
        "Name": ["Alice Smith", "Karen Lee", "New Person", "Shop Bot"],
        "Mail": ["ALICE.SMITH@example.com", "karen.lee@example.com", "new.person@example.org",
                 "noreply@shop.example"],
        "ZipCode": ["SW1A 1AA", "EC1A 1BB", "W1A 0AX", None],
        "SignedUp": pa.array(signed, pa.timestamp("us")),
    }), folder / "newsletter.parquet")
    arguments += ["--source", f"newsletter={folder / 'newsletter.parquet'}"]
    write_deltalake(str(folder / "members"), pa.table({
        "MemberNo": ["M1", "M2", "M3"],
        "loyalty_card": ["L-600", "L-900", None],
        "email_addr": ["alice.smith@example.com", "jack.taylor@example.com", None],
        "Mobile": [None, "+44 7911 123409", "+44 7911 123499"],
        "FirstName": ["Alice", "Jack", "Henry"],
        "LastName": ["Smith", "Taylor", "Ford"],
        "updated": pa.array([datetime(2024, 1, d, tzinfo=timezone.utc) for d in (1, 2, 3)], pa.timestamp("us", "UTC")),
    }), configuration={"delta.enableChangeDataFeed": "true"})
    arguments += ["--source", f"members={folder / 'members'}"]
    return arguments


@pytest.fixture(scope="module")
def starter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("starter")
    output = folder / "conf" / "pipeline.yml"
    code = main(["init", *_write_sources(folder), "--output", str(output),
                 "--warehouse", str(folder / "lakehouse")])
    assert code == 0
    return folder, output


def test_init_maps_the_same_meaning_to_the_same_attribute_in_every_source(starter):
    _, output = starter
    config = load_config(output)
    columns = {source.name: source.columns for source in config.sources}
    assert {name: mapping["email"] for name, mapping in columns.items()} == EMAIL_COLUMNS
    assert {name: mapping.get("phone") for name, mapping in columns.items()} == {
        "crm": "MobileNumber", "shop": None, "helpdesk": "ContactTel", "newsletter": None, "members": "Mobile"}
    assert {name: (mapping.get("first_name"), mapping.get("last_name")) for name, mapping in columns.items()} == {
        "crm": ("GivenName", "FamilyName"), "shop": ("BuyerFirst", "BuyerLast"),
        "helpdesk": ("ReporterForename", "ReporterSurname"), "newsletter": (None, None),
        "members": ("FirstName", "LastName")}
    assert columns["newsletter"]["full_name"] == "Name" and columns["newsletter"]["postcode"] == "ZipCode"
    assert (columns["crm"]["dob"], columns["helpdesk"]["dob"]) == ("BirthDate", "ReporterBorn")
    assert (columns["shop"]["loyalty_id"], columns["members"]["loyalty_id"]) == ("LoyaltyCardNumber", "loyalty_card")
    assert config.attribute_kinds["loyalty_id"] == "id" and config.attribute_kinds["customer_id"] == "id"
    keys = {source.name: (source.key, source.timestamp) for source in config.sources}
    assert keys == {
        "crm": ("CustRef", "CreatedOn"),  # ContactNo has a duplicate and an empty value
        "shop": ("Order Number", "PlacedDate"), "helpdesk": ("TicketRef", "OpenedAt"),
        "newsletter": ("SubscriberId", "SignedUp"), "members": ("MemberNo", "updated"),
    }
    assert [(s.name, s.format, s.change_tracking, s.priority) for s in config.sources] == [
        ("crm", "csv", "snapshot", 1), ("shop", "csv", "snapshot", 2), ("helpdesk", "csv", "snapshot", 3),
        ("newsletter", "parquet", "snapshot", 4), ("members", "delta", "delta_cdf", 5)]
    assert config.phone_region == "GB"
    rules = {rule.attribute: rule for rule in config.identifiers}
    assert set(rules) == {"email", "phone", "customer_id", "loyalty_id", "member_id"}
    assert rules["email"].exclude == EMAIL_EXCLUDES and rules["phone"].exclude == PHONE_EXCLUDES
    assert {rule.max_group_size for rule in config.identifiers} == {20}
    assert config.matching.model is None  # commented out until `idr train`


def test_init_comments_every_guess_and_the_commented_model_section_loads(starter):
    _, output = starter
    text = output.read_text(encoding="utf-8")
    assert "values look like emails (12 of 12 sampled values)" in text  # the shop's "Contact"
    assert re.search(r"key: CustRef +# unique and never empty in 13 sampled rows", text)
    assert "#   ContactNo: named like an id, not the key (1 duplicated, 1 empty in the sample)" in text
    assert "delta.enableChangeDataFeed = true" in text
    assert "alice.smith" not in text.lower()  # counts in comments, never sampled values
    block = text[text.index("# matching:"):text.index("\n\n", text.index("# matching:"))]
    uncommented = text.replace(block, "\n".join(line[2:] for line in block.splitlines()))
    config = parse_config(yaml.safe_load(uncommented), file="uncommented")
    assert config.matching.model == (output.parent / "models" / "pipeline_model.json").as_posix()
    assert config.matching.comparisons == {"first_name": "name", "last_name": "name", "full_name": "name",
                                           "dob": "date", "email": "email", "phone": "phone",
                                           "postcode": "postcode"}
    assert config.matching.blocking_rules == (
        ("last_name",), ("first_name", "dob"), ("full_name",), ("dob", "postcode"))
    assert config.matching.training.em_blocking_rules == (("email",), ("first_name", "last_name"))


def test_the_starter_config_runs_as_written_and_shared_emails_end_in_one_entity(spark, starter):
    from resolution.pipeline import run_pipeline

    folder, output = starter
    config = load_config(output)
    # the embedded backend: the same run 2-4 times faster than delta-spark (docs/configuration.md)
    config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, backend="embedded"))
    summary = run_pipeline(spark, config, report=lambda line: None)
    assert summary.status == "SUCCEEDED"
    entity_of = dict(DeltaTable(str(folder / "lakehouse" / S.RESOLVED_MEMBERSHIP)).to_pandas()
                     .set_index(S.RECORD_KEY)[S.ENTITY_ID])

    by_email: dict[str, set[str]] = {}
    for source in config.sources:
        if source.format == "delta":
            rows = DeltaTable(source.location).to_pandas()
        elif source.format == "parquet":
            rows = pd.read_parquet(source.location)
        else:
            rows = pd.read_csv(source.location, dtype=str, keep_default_na=False)
        for key, email in zip(rows[source.key], rows[source.columns["email"]], strict=True):
            record = f"{source.name}:{str(key).strip()}"
            if email and record in entity_of:  # rejected rows (a bad timestamp) have no entity
                by_email.setdefault(str(email).strip().lower(), set()).add(record)
    shared = {email: records for email, records in by_email.items() if len(records) > 1}
    junk = {email for email in shared if email.startswith(("noreply@", "no-reply@"))}
    assert by_email["alice.smith@example.com"] == {
        "crm:CUST-001", "shop:O1001", "helpdesk:T501", "newsletter:S1", "members:M1"}
    for email, records in shared.items():
        entities = {entity_of[record] for record in records}
        assert (len(entities) == 1) != (email in junk), (email, records, entities)
    assert entity_of["members:M2"] == entity_of["crm:CUST-009"]  # same email and same phone


# --- errors --------------------------------------------------------------------------------


def test_a_missing_source_path_is_exit_2_naming_the_source_and_path(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    code = main(["init", "--source", f"crm={missing}", "--output", str(tmp_path / "p.yml")])
    assert code == EXIT_CONFIG
    assert f"init error: source 'crm': {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "p.yml").exists()


@pytest.mark.parametrize(("file", "content"), [
    ("broken.parquet", b"this is not parquet"),
    ("latin.csv", b"id,name\n1,Zo\xeb\n"),  # not UTF-8
    ("empty.csv", b""),
])
def test_an_unreadable_source_is_exit_2_naming_the_source_and_path(tmp_path, capsys, file, content):
    path = tmp_path / file
    path.write_bytes(content)
    code = main(["init", "--source", f"bad={path}", "--output", str(tmp_path / "p.yml")])
    assert code == EXIT_CONFIG
    assert f"init error: source 'bad': cannot read {path} as " in capsys.readouterr().err


def test_an_existing_output_needs_force(tmp_path, capsys):
    source = tmp_path / "people.csv"
    source.write_text("person_id,email\nP1,ann@x.org\nP2,bob@y.org\n", encoding="utf-8")
    output = tmp_path / "p.yml"
    output.write_text("# mine\n", encoding="utf-8")
    arguments = ["init", "--source", f"people={source}", "--output", str(output)]
    assert main(arguments) == EXIT_CONFIG
    assert f"init error: {output} already exists: pass --force to overwrite it" in capsys.readouterr().err
    assert output.read_text(encoding="utf-8") == "# mine\n"
    assert main([*arguments, "--force", "--phone-region", "gb"]) == 0
    out = capsys.readouterr().out
    assert f"idr run --config {output}" in out and "key person_id" in out
    config = load_config(output)
    assert (config.phone_region, config.source("people").key) == ("GB", "person_id")
    assert [rule.attribute for rule in config.identifiers] == ["email"]


def test_nothing_to_link_on_and_bad_arguments_are_refused(tmp_path):
    from resolution.starter import parse_source_argument, write_starter_config

    source = tmp_path / "notes.csv"
    source.write_text("note_id,text\n1,hello\n", encoding="utf-8")
    with pytest.raises(StarterError, match="nothing would link records"):
        write_starter_config([("notes", str(source))], tmp_path / "p.yml")
    with pytest.raises(StarterError, match="more than once"):
        write_starter_config([("a", str(source)), ("a", str(source))], tmp_path / "p.yml")
    with pytest.raises(StarterError, match="two-letter"):
        write_starter_config([("a", str(source))], tmp_path / "p.yml", phone_region="GBR")
    assert parse_source_argument("data/Crm Contacts.csv") == ("crm_contacts", "data/Crm Contacts.csv")
    with pytest.raises(StarterError, match="NAME=PATH"):
        parse_source_argument("crm=")


def test_without_identifiers_the_model_section_is_live_and_needs_training(tmp_path, capsys):
    source = tmp_path / "people.csv"
    source.write_text("person_id,first_name,last_name,dob\nP1,Ann,Lee,1984-02-11\nP2,Bob,Ray,1990-11-30\n",
                      encoding="utf-8")
    output = tmp_path / "people.yml"
    assert main(["init", "--source", f"people={source}", "--output", str(output)]) == 0
    assert f"idr train --config {output}" in capsys.readouterr().out
    config = load_config(output)
    assert config.identifiers == ()
    assert config.matching.model == (tmp_path / "models" / "people_model.json").as_posix()
    assert config.matching.blocking_rules == (("last_name",), ("first_name", "dob"))
    assert config.matching.link_threshold == 0.95 and not config.matching.link_threshold_auto
    assert re.search(r"phone_region: US +# .*no phone column mapped", output.read_text(encoding="utf-8"))


def test_address_parts_are_mapped_as_one_composite_address(tmp_path, capsys):
    source = tmp_path / "census.csv"
    source.write_text("person_id,first_name,surname,dob,house_number,street_name\n"
                      "P1,Ann,Lee,1984-02-11,12,High Street\nP2,Bob,Lee,1990-11-30,12,High Street\n", encoding="utf-8")
    output = tmp_path / "census.yml"
    assert main(["init", "--source", f"census={source}", "--output", str(output)]) == 0
    assert "address=house_number+street_name" in capsys.readouterr().out
    config = load_config(output)
    assert config.sources[0].columns["address"] == ("house_number", "street_name")
    assert list(config.matching.comparisons).count("address") == 1
    assert "joined into one" in output.read_text(encoding="utf-8")
    # the commented cannot_link section, uncommented, is a valid tolerant constraint
    lines = output.read_text(encoding="utf-8").splitlines()
    start = lines.index(next(line for line in lines if line.startswith("# cannot_link:")))
    block = [line[2:] for line in lines[start:start + 3]]
    uncommented = output.with_name("constrained.yml")
    uncommented.write_text("\n".join(lines[:start] + block + lines[start + 3:]) + "\n", encoding="utf-8")
    constraint = load_config(uncommented).cannot_link
    assert constraint.attributes == ("dob",) and constraint.tolerate == {"dob": ("day_month_swap", "one_edit")}


def test_a_hand_typed_national_id_is_compared_by_the_model_too():
    from resolution.starter import plan_matching

    matching = plan_matching(["first_name", "last_name", "dob", "national_id", "customer_id"], model="m.json")
    assert matching.comparisons["national_id"] == "code" and "customer_id" not in matching.comparisons
    assert ("national_id",) in matching.blocking_rules
    assert matching.em_blocking_rules[0] == ("national_id",)
