"""Rules-only resolution end to end, on both backends: the three setups identity teams start from.

No ``matching`` section: identifier rules alone link records. One pipeline holds the three
scenarios side by side (different people in the same sources), and two runs play them:

- contacts: email OR phone links, the oldest record is primary, and a bridging record that
  arrives in the second run merges two entities (lineage records it). The phones are US 555
  numbers, which the numbering plan does not know: they are kept (``phone:unverified``) and link.
- three sources (CRM contacts, orders, support) with junk identifiers: a ``noreply@`` address,
  ``0000000000`` phones and an address shared by more records than ``max_group_size`` link
  nothing; a loyalty id and a shared email link across sources.
- a KYC audit table: a duplicated INSERT, an UPDATE moving a record out of its entity, a
  DELETE, and events that arrive late (after a newer one for the same key) and are ignored.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest

from resolution import schemas as S
from resolution.config import parse_config
from resolution.pipeline import run_pipeline
from tests.incremental_harness import partition, primaries, store_of

CONTACTS = ["id", "first", "last", "email", "phone", "created"]
ORDERS = ["order_id", "buyer_first", "buyer_last", "buyer_email", "loyalty_no", "ordered"]
SUPPORT = ["ticket", "name_first", "name_last", "contact_email", "contact_phone", "opened"]
KYC = ["kyc_id", "first", "last", "email", "phone", "created", "op", "op_time"]

CONTACT_ROWS = [
    ["p1", "Ann", "Lee", "ann@x.example", "(555) 123-4567", "2020-01-01"],
    ["p2", "Annie", "Lee", "ANN@x.example", "", "2021-01-01"],  # p1's email
    ["p3", "Bob", "Ray", "bob@y.example", "555-201-4567", "2019-05-01"],
    ["p4", "Robert", "Ray", "", "+1 555 201 4567", "2022-01-01"],  # p3's phone
]
BRIDGE = ["p5", "Ann", "Ray", "ann@x.example", "555.201.4567", "2023-01-01"]  # both: second run
ORDER_ROWS = [
    ["o1", "Cat", "Kim", "noreply@shop.example", "L-100", "2021-03-01"],
    ["o2", "Catherine", "Kim", "cat.kim@z.example", "L-100", "2021-04-01"],  # o1's loyalty id
    ["o3", "Info", "Desk", "info@corp.example", "", "2021-05-01"],
    ["o4", "Dan", "Fox", "info@corp.example", "", "2021-05-02"],
]
SUPPORT_ROWS = [
    ["t1", "Eve", "Poe", "noreply@shop.example", "0000000000", "2021-06-01"],  # junk only
    ["t2", "Gus", "Ito", "info@corp.example", "000-000-0000", "2021-06-02"],
    ["t3", "Cat", "Kim", "CAT.KIM@z.example", "", "2021-06-03"],  # o2's email
    ["t4", "Hal", "Day", "info@corp.example", "", "2021-06-04"],  # the 4th holder: over max 3
]
KYC_FIRST = [
    ["k1", "Jon", "Ash", "jon@k.example", "", "2018-01-01", "INSERT", "2024-06-01 10:00:00"],
    ["k2", "Jo", "Ash", "jon@k.example", "", "2018-02-01", "INSERT", "2024-06-01 10:01:00"],
    ["k4", "Jon", "Ash", "jon@k.example", "", "2018-03-01", "INSERT", "2024-06-01 10:02:00"],
    ["k3", "Kay", "Bee", "kay@k.example", "", "2018-04-01", "INSERT", "2024-06-01 10:03:00"],
    ["k3", "Kay", "Bee", "kay@k.example", "", "2018-04-01", "INSERT", "2024-06-01 10:03:00"],  # twice
]
KYC_SECOND = [
    ["k2", "Jo", "Ash", "jo@other.example", "", "2018-02-01", "UPDATE", "2024-06-01 11:00:00"],
    ["k3", "Kay", "Bee", "kay@k.example", "", "2018-04-01", "DELETE", "2024-06-01 11:05:00"],
    # late: older than the DELETE (k3) and the INSERT (k4) already applied
    ["k3", "Kay", "Bee", "kay@new.example", "", "2018-04-01", "UPDATE", "2024-06-01 11:02:00"],
    ["k4", "Jon", "Ash", "jon@wrong.example", "", "2018-03-01", "UPDATE", "2024-06-01 09:00:00"],
    ["k3", "Kay", "Bee", "kay@k.example", "", "2018-04-01", "DELETE", "2024-06-01 11:05:00"],  # twice
]
NAMES = {"first_name": "first", "last_name": "last", "email": "email", "phone": "phone"}


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])


def _document(folder: Path, warehouse: Path, backend: str) -> dict:
    return {
        "phone_region": "US",
        "storage": {"warehouse": str(warehouse), "backend": backend},
        "sources": [
            {"name": "contacts", "format": "csv", "path": str(folder / "contacts.csv"), "key": "id",
             "timestamp": "created", "priority": 1, "columns": NAMES},
            {"name": "orders", "format": "csv", "path": str(folder / "orders.csv"), "key": "order_id",
             "timestamp": "ordered", "priority": 2,
             "columns": {"first_name": "buyer_first", "last_name": "buyer_last", "email": "buyer_email",
                         "loyalty_id": "loyalty_no"}},
            {"name": "support", "format": "csv", "path": str(folder / "support.csv"), "key": "ticket",
             "timestamp": "opened", "priority": 3,
             "columns": {"first_name": "name_first", "last_name": "name_last", "email": "contact_email",
                         "phone": "contact_phone"}},
            {"name": "kyc", "format": "csv", "path": str(folder / "kyc.csv"), "key": "kyc_id",
             "timestamp": "created", "priority": 4, "columns": NAMES, "change_tracking": "audit",
             "operation_column": "op", "operation_time_column": "op_time"},
        ],
        "attributes": {"loyalty_id": "id"},
        "identifiers": [
            {"name": "email", "attribute": "email", "exclude": ["noreply@%", "no-reply@%"], "max_group_size": 3},
            {"name": "phone", "attribute": "phone", "exclude": ["0000000000"], "max_group_size": 3},
            {"name": "loyalty_id", "attribute": "loyalty_id", "max_group_size": 3},
        ],
    }


def _keys(*keys: str) -> frozenset[str]:
    return frozenset(keys)


def _snapshot(spark, config, summary) -> SimpleNamespace:
    store = store_of(spark, config)
    golden = {row[S.ENTITY_ID]: row.asDict() for row in store.read(S.GOLDEN_PROFILES).collect()}
    lineage = {(r.entity_id, r.other_entity_id, r.event) for r in store.read(S.ENTITY_LINEAGE).collect()}
    edges = {(r.record_key_l, r.record_key_r): r for r in store.read(S.MATCH_EDGES).collect()}
    return SimpleNamespace(summary=summary, partition=partition(spark, config),
                           primaries=primaries(spark, config), golden=golden, lineage=lineage, edges=edges)


@pytest.fixture(scope="module")
def runs(spark, backend, tmp_path_factory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp(f"scenarios-{backend}")
    _write(folder / "contacts.csv", CONTACTS, CONTACT_ROWS)
    _write(folder / "orders.csv", ORDERS, ORDER_ROWS)
    _write(folder / "support.csv", SUPPORT, SUPPORT_ROWS)
    _write(folder / "kyc.csv", KYC, KYC_FIRST)
    config = parse_config(_document(folder, folder / "lakehouse", backend), file="scenarios.yml")
    assert config.matching.model is None
    quiet = {"report": lambda line: None}
    first = _snapshot(spark, config, run_pipeline(spark, config, **quiet))
    _write(folder / "contacts.csv", CONTACTS, [*CONTACT_ROWS, BRIDGE])
    _write(folder / "kyc.csv", KYC, KYC_FIRST + KYC_SECOND)
    second = _snapshot(spark, config, run_pipeline(spark, config, **quiet))
    return SimpleNamespace(first=first, second=second)


def _entity_of(snapshot, key: str) -> str:
    return next(entity for entity, keys in snapshot.partition.items() if key in keys)


def test_contacts_link_by_email_or_phone_and_a_bridge_merges_two_primaries(runs):
    first, second = runs.first, runs.second
    assert first.partition["contacts:p1"] == _keys("contacts:p1", "contacts:p2")
    assert first.partition["contacts:p3"] == _keys("contacts:p3", "contacts:p4")
    assert first.primaries["contacts:p1"] == "contacts:p1" and first.primaries["contacts:p3"] == "contacts:p3"
    assert first.edges[("contacts:p1", "contacts:p2")].rule == "email"
    # 555 numbers: possible, unknown to the numbering plan, kept and linked
    link = first.edges[("contacts:p3", "contacts:p4")]
    assert (link.rule, link.match_probability) == ("phone", None)
    assert dict(link.comparison_levels) == {"phone": "Exact match on phone"}
    assert first.summary.value_issues["phone:unverified"] == 3

    # p5 shares p1's email and p3's phone: one entity, the older id (p3's, 2019) survives
    merged = _keys("contacts:p1", "contacts:p2", "contacts:p3", "contacts:p4", "contacts:p5")
    assert second.partition["contacts:p3"] == merged and "contacts:p1" not in second.partition
    assert second.primaries["contacts:p3"] == "contacts:p3"  # the oldest record
    assert {("contacts:p3", "contacts:p1", "MERGED"), ("contacts:p1", "contacts:p3", "RETIRED")} <= second.lineage
    assert second.summary.entities_merged == 1
    golden = second.golden["contacts:p3"]
    # one source priority: the most recent record's values win
    assert (golden["first_name"], golden["last_name"], golden["phone"]) == ("Ann", "Ray", "+15552014567")
    assert golden["email"] == "ann@x.example"
    assert golden["emails"] == ["bob@y.example", "ann@x.example"]  # the primary's first
    assert golden["phones"] == ["+15552014567", "+15551234567"]
    assert golden["record_count"] == 5 and golden["sources"] == ["contacts"]


def test_junk_identifiers_link_nothing_and_real_ones_link_across_sources(runs):
    first = runs.first
    assert first.partition["orders:o1"] == _keys("orders:o1", "orders:o2", "support:t3")
    for key in ("orders:o3", "orders:o4", "support:t1", "support:t2", "support:t4"):
        assert first.partition[key] == _keys(key)  # noreply@, 0000000000, info@ shared by 4 > 3
    assert first.edges[("orders:o1", "orders:o2")].rule == "loyalty_id"
    assert first.edges[("orders:o2", "support:t3")].rule == "email"
    issues = first.summary.value_issues
    assert (issues["email:excluded"], issues["phone:excluded"], issues["email:oversized_group"]) == (2, 2, 4)
    assert first.primaries["orders:o1"] == "orders:o1"  # the oldest
    golden = first.golden["orders:o1"]
    # orders (priority 2) beat support (3); between o1 and o2 the more recent wins; o1's junk
    # email was nulled, so it never wins
    assert (golden["first_name"], golden["last_name"]) == ("Catherine", "Kim")
    assert (golden["email"], golden["loyalty_id"]) == ("cat.kim@z.example", "L-100")
    assert golden["emails"] == ["cat.kim@z.example"] and golden["phone"] is None
    assert golden["sources"] == ["orders", "support"] and golden["record_count"] == 3
    # nothing changed there in the second run
    assert {k: v for k, v in runs.second.partition.items() if not k.startswith(("contacts", "kyc"))} == {
        k: v for k, v in first.partition.items() if not k.startswith(("contacts", "kyc"))
    }


def test_audit_events_latest_wins_duplicates_and_late_events_change_nothing(runs):
    first, second = runs.first, runs.second
    assert first.partition["kyc:k1"] == _keys("kyc:k1", "kyc:k2", "kyc:k4")
    assert first.partition["kyc:k3"] == _keys("kyc:k3")  # its INSERT twice: one record
    # k2's UPDATE moves it out; the DELETE removes k3 (its late UPDATE is older: ignored); k4's
    # late UPDATE is older than its INSERT: k4 keeps jon@k.example and stays
    assert second.partition["kyc:k1"] == _keys("kyc:k1", "kyc:k4")
    assert second.partition["kyc:k2"] == _keys("kyc:k2")
    assert "kyc:k3" not in {key for keys in second.partition.values() for key in keys}
    assert ("kyc:k1", "kyc:k2", "SPLIT") in second.lineage
    assert second.primaries["kyc:k1"] == "kyc:k1"
    assert second.golden["kyc:k1"]["email"] == "jon@k.example" and second.golden["kyc:k1"]["record_count"] == 2
    assert second.golden["kyc:k2"]["email"] == "jo@other.example"
    assert (second.summary.records_updated, second.summary.records_deleted) == (1, 1)
    assert second.summary.records_new == 1  # the bridge
    assert _entity_of(second, "kyc:k4") == "kyc:k1"
