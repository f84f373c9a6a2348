"""Reviewers' decisions in review_decisions are honoured by the next run, incremental or full."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from resolution import schemas as S
from resolution.pipeline import run_pipeline
from resolution.review import ReviewError, accept_pairs, reject_pairs
from resolution.store import open_store
from tests.incremental_harness import World, partition, world_config

QUIET = {"report": lambda line: None}


def _store(spark, config):
    return open_store(spark, config)


def _edge_rules(spark, config) -> dict[tuple[str, str], tuple[str, str]]:
    rows = _store(spark, config).read(S.MATCH_EDGES).collect()
    return {(row[S.RECORD_KEY_L], row[S.RECORD_KEY_R]): (row[S.RULE], row[S.EDGE_STATUS]) for row in rows}


def _apart(parts, left: str, right: str) -> bool:
    return not any({left, right} <= keys for keys in parts)


def test_accepted_pairs_are_linked_and_rejected_pairs_never_are_through_any_path(spark, tmp_path):
    # On delta-spark, decisions are recorded and honoured in JVM_CHAIN of
    # tests/test_incremental_property.py (this test took 3 minutes of CI there).
    backend = "embedded"
    world = World(tmp_path / "sources")
    world.upsert_crm("c1", 0, email=0, phone=None)
    world.upsert_crm("c2", 0, email=None, phone=1)
    world.upsert_crm("c3", 0, email=0, phone=1)  # c1's email and c2's phone: bridges them
    world.upsert_crm("c4", 3, email=3, phone=None)  # someone else, nothing shared
    world.write()
    config = world_config(world.folder, tmp_path / "incremental", backend=backend)
    run_pipeline(spark, config, **QUIET)
    assert set(partition(spark, config).values()) == {frozenset({"crm:c1", "crm:c2", "crm:c3"}), frozenset({"crm:c4"})}
    store = _store(spark, config)
    with pytest.raises(ReviewError, match="crm:c9"):
        reject_pairs(spark, store, [("crm:c1", "crm:c9")])

    # c1-c2 rejected although c3 links both by rules; c4 accepted with c1 and with c2: the
    # decisions alone (no source changed) re-cluster, and no path puts c1 and c2 together
    assert reject_pairs(spark, store, [("crm:c2", "crm:c1")], decided_by="reviewer") == 1
    assert accept_pairs(spark, store, [("crm:c4", "crm:c1"), ("crm:c2", "crm:c4")]) == 2
    summary = run_pipeline(spark, config, **QUIET)
    parts = set(partition(spark, config).values())
    assert _apart(parts, "crm:c1", "crm:c2") and len(parts) == 2
    assert any({"crm:c1", "crm:c4"} <= keys for keys in parts)  # accepted: the strongest link
    assert summary.edges_by_rule[S.ACCEPTED_RULE] == 2
    assert _edge_rules(spark, config)[("crm:c1", "crm:c4")] == (S.ACCEPTED_RULE, S.LINK)
    cut_by = {tuple(row) for row in store.read(S.CUT_EDGES).select(S.RECORD_KEY_L, S.RECORD_KEY_R, "cut_by").collect()}
    assert ("crm:c2", "crm:c4", "rejected") in cut_by and {c for _, _, c in cut_by} == {"rejected"}

    # the same sources and decisions (written as SQL would: no validation, either key order,
    # any case) resolved in one full run give the same entities
    full = world_config(world.folder, tmp_path / "full", backend=backend)
    full_store = _store(spark, full)
    full_store.create_if_missing(S.REVIEW_DECISIONS, S.REVIEW_DECISIONS_SCHEMA)
    now = datetime.now(timezone.utc)
    decisions = [
        ("crm:c1", "crm:c2", "REJECT", "sql", now, None),
        ("crm:c4", "crm:c1", "accept", "sql", now - timedelta(minutes=5), None),
        ("crm:c2", "crm:c4", " Accept", "sql", now, None),
        ("crm:c1", "crm:c2", "maybe", "sql", now + timedelta(minutes=1), "not a decision: ignored"),
    ]
    full_store.append(S.REVIEW_DECISIONS, spark.createDataFrame(decisions, S.REVIEW_DECISIONS_SCHEMA))
    run_pipeline(spark, full, mode="full", **QUIET)
    assert set(partition(spark, full).values()) == parts

    # the reviewer changes their mind on c1-c4: the latest decision counts; c4 goes to c2
    reject_pairs(spark, store, [("crm:c1", "crm:c4")])
    run_pipeline(spark, config, **QUIET)
    after = set(partition(spark, config).values())
    assert _apart(after, "crm:c1", "crm:c4") and _apart(after, "crm:c1", "crm:c2")
    assert any({"crm:c2", "crm:c4"} <= keys for keys in after)
    assert ("crm:c1", "crm:c4") not in _edge_rules(spark, config)  # no model evidence was left
