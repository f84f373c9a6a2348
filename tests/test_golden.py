"""Survivorship: each rule picks its own value, and a record without a value never wins."""

from __future__ import annotations

import csv
from dataclasses import replace

from resolution import schemas as S
from resolution.config import SurvivorshipConfig, parse_config
from resolution.golden import build_golden_profiles
from resolution.pipeline import run_pipeline
from tests.incremental_harness import CRM_COLUMNS, EMAILS, PHONES, World, store_of, world_document


def test_source_priority_most_recent_and_most_frequent_pick_different_values(spark, tmp_path):
    # one person (email 0) in four records: the CRM's (priority 1, the oldest) says ann lee; two
    # KYC records (priority 2) say cat kim; the newest KYC record says dan fox and has no phone
    world = World(tmp_path / "sources")
    world.upsert_crm("c1", 0, email=0, phone=0)  # created 2024-01-02
    world.kyc_event("INSERT", "k4", 2, 0, 1)  # 2024-01-05
    world.kyc_event("INSERT", "k5", 2, 0, 2)  # 2024-01-06
    world.kyc_event("INSERT", "k6", 3, 0, None)  # 2024-01-07
    world.write()
    document = world_document(world.folder, tmp_path / "warehouse", model=False)
    document["survivorship"] = {
        "default": "source_priority",
        "attributes": {"first_name": "most_recent", "last_name": "most_frequent", "phone": "most_recent"},
    }
    config = parse_config(document, file="survivorship.yml")
    run_pipeline(spark, config, report=lambda line: None)
    store = store_of(spark, config)
    [golden] = store.read(S.GOLDEN_PROFILES).collect()
    assert golden[S.ENTITY_ID] == "crm:c1" and golden["record_count"] == 4
    assert (golden["first_name"], golden["last_name"]) == ("dan", "kim")
    assert golden["phone"] == PHONES[2]  # the newest record has none: the newest value wins
    assert golden["phones"][0] == PHONES[0]  # all values, the primary record's first

    # the same entity under each rule alone
    records, membership = store.read(S.SOURCE_RECORDS), store.read(S.RESOLVED_MEMBERSHIP)
    expected = {
        "source_priority": ("ann", "lee", PHONES[0]),
        "most_recent": ("dan", "fox", PHONES[2]),
        "most_frequent": ("cat", "kim", PHONES[0]),  # phones tie 1-1-1: the smallest value
    }
    for rule, values in expected.items():
        only = replace(config, survivorship=SurvivorshipConfig(default=rule))
        [row] = build_golden_profiles(records, membership, config=only).collect()
        assert (row["first_name"], row["last_name"], row["phone"]) == values, rule


def test_golden_profiles_show_values_as_written_while_matching_uses_their_match_form(spark, tmp_path):
    # one person (email 0) written four ways; c1 is the newest CRM record, c2 the oldest (primary)
    world = World(tmp_path / "sources")
    world.write()
    rows = [  # id, first, last, email, phone, created, dob
        ["c1", "  José ", "O'Brien", EMAILS[0], "", "2024-03-01", ""],
        ["c2", "JOSE", "o'brien", EMAILS[0], "", "2024-01-01", ""],
        ["c3", "jose", "O'BRIEN", EMAILS[0], "", "2024-02-01", ""],
        ["c4", "Mary  Ann", "O'Brien", EMAILS[0], "", "2024-02-02", ""],
    ]
    with open(world.folder / "crm.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([CRM_COLUMNS, *rows])
    document = world_document(world.folder, tmp_path / "warehouse", model=False)
    document["survivorship"] = {"attributes": {"last_name": "most_frequent"}, "arrays": ["first_name", "email"]}
    config = parse_config(document, file="display.yml")
    run_pipeline(spark, config, report=lambda line: None)
    store = store_of(spark, config)
    [golden] = store.read(S.GOLDEN_PROFILES).collect()
    assert golden["primary_record_key"] == "crm:c2" and golden["record_count"] == 4
    assert golden["first_name"] == "José"  # the newest of equal priority, trimmed, accent kept
    assert golden["last_name"] == "O'Brien"  # 'obrien' is the most frequent form; c1 shows it best
    # distinct by match form: JOSE (the primary's writing of 'jose') then Mary Ann, spaces collapsed
    assert golden["first_names"] == ["JOSE", "Mary Ann"]
    assert golden["emails"] == [EMAILS[0]]
    records = {row[S.RECORD_KEY]: row for row in store.read(S.SOURCE_RECORDS).collect()}
    assert records["crm:c1"]["first_name"] == "jose"  # matching compares the folded form
    assert records["crm:c1"][S.DISPLAY_VALUES] == {"first_name": "José", "last_name": "O'Brien"}
