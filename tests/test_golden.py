"""Survivorship: each rule picks its own value, and a record without a value never wins."""

from __future__ import annotations

from dataclasses import replace

from resolution import schemas as S
from resolution.config import SurvivorshipConfig, parse_config
from resolution.golden import build_golden_profiles
from resolution.pipeline import run_pipeline
from tests.incremental_harness import PHONES, World, store_of, world_document


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
