"""Property: after any sequence of change batches, incremental runs equal one full run.

Batches mix CRM snapshot inserts/updates/deletes with KYC audit events (duplicates, late events
older than what was applied). After each batch the incremental partition must equal the
partition of a full run over the same state, and ids must follow the policy.

CI runs one example of each test (without and with cannot-link constraints: each takes a minute
or two); run more with ``IDR_PROPERTY_EXAMPLES=20 pytest tests/test_incremental_property.py``.
"""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolution.pipeline import run_pipeline
from resolution.store import available_store_backends
from tests.incremental_harness import (
    DOBS,
    EMAILS,
    NAMES,
    PHONES,
    World,
    partition,
    primaries,
    world_config,
)

EXAMPLES = int(os.environ.get("IDR_PROPERTY_EXAMPLES", "1"))
QUIET = {"report": lambda line: None}

identifier = st.one_of(st.none(), st.integers(0, len(EMAILS) - 1))
phone = st.one_of(st.none(), st.integers(0, len(PHONES) - 1))
name = st.integers(0, len(NAMES) - 1)
crm_key = st.sampled_from([f"c{i}" for i in range(1, 8)])
kyc_key = st.sampled_from([f"k{i}" for i in range(1, 5)])
operation = st.one_of(
    st.tuples(st.just("upsert"), crm_key, name, identifier, phone),
    st.tuples(st.just("delete"), crm_key),
    st.tuples(st.just("kyc"), st.sampled_from(["INSERT", "UPDATE", "DELETE"]), kyc_key, name,
              identifier, phone, st.sampled_from([0, 0, 25])),
)
batches = st.lists(st.lists(operation, min_size=1, max_size=6), min_size=2, max_size=3)


def _apply(world: World, batch) -> None:
    for op in batch:
        if op[0] == "upsert":
            world.upsert_crm(op[1], op[2], email=op[3], phone=op[4])
        elif op[0] == "delete":
            world.delete_crm(op[1])
        else:
            _, kind, key, who, email, number, late = op
            world.kyc_event(kind, key, who, email, number, minutes_ago=late)
            if late == 0 and kind != "DELETE":  # a duplicate delivery of the same event
                world.kyc_events.append(list(world.kyc_events[-1]))
    world.write()


PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(batches=batches)
def test_incremental_partition_equals_full_recompute(spark, tmp_path, batches):
    _check_incremental_equals_full(spark, tmp_path, batches)


# birth dates by key (c3, c6, k3: none; c1, c4, k1, k4: 1980; c2, c5, k2: 1990) and a
# duplicate-free KYC source: shared emails and phones keep linking records that must stay apart
CONSTRAINTS = {"attributes": ["dob"], "unique_sources": ["kyc"]}


@PROPERTY
@given(batches=batches)
def test_incremental_equals_full_recompute_with_cannot_link_constraints(spark, tmp_path, batches):
    _check_incremental_equals_full(spark, tmp_path, batches, cannot_link=CONSTRAINTS)


# c3 bridges c1 (email 0) and c2 (phone 1): a merge; then c3 goes (a split) while a KYC record
# arrives with c2's email and a late DELETE older than its INSERT (ignored: latest event wins).
BRIDGE_THEN_SPLIT = [
    [("upsert", "c2", 1, 1, 1), ("upsert", "c3", 2, 0, 1)],
    [("delete", "c3"), ("kyc", "INSERT", "k1", 3, 1, None, 0), ("kyc", "DELETE", "k1", 3, 1, None, 25)],
]


def test_incremental_equals_full_recompute_on_the_jvm_backend(spark, tmp_path):
    """The same check with delta-spark writing every table (the full runs stay embedded, so the
    two backends must also agree with each other)."""
    reason = available_store_backends(spark)["delta-spark"]
    if reason is not None:
        pytest.skip(f"jvm backend unavailable: {reason}")
    _check_incremental_equals_full(spark, tmp_path, BRIDGE_THEN_SPLIT, backend="jvm")


def _check_incremental_equals_full(
    spark, tmp_path, batches, *, cannot_link: dict | None = None, backend: str = "embedded"
) -> None:
    base = tmp_path / uuid.uuid4().hex[:8]
    world = World(base / "sources", dobs=cannot_link is not None)
    world.upsert_crm("c1", 0, email=0, phone=0)
    world.write()
    config = world_config(world.folder, base / "incremental", cannot_link=cannot_link, backend=backend)
    run_pipeline(spark, config, **QUIET)
    before = partition(spark, config)

    for number, batch in enumerate(batches):
        _apply(world, batch)
        run_pipeline(spark, config, **QUIET)
        after = partition(spark, config)
        full = world_config(world.folder, base / f"full-{number}", cannot_link=cannot_link)
        run_pipeline(spark, full, mode="full", **QUIET)
        assert set(after.values()) == set(partition(spark, full).values()), f"batch {number}: {batch}"
        if cannot_link:  # and no entity breaks a constraint
            for keys in after.values():
                dobs = {DOBS[int(key.split(":")[1][1:]) % len(DOBS)] for key in keys} - {""}
                assert len(dobs) <= 1 and sum(key.startswith("kyc:") for key in keys) <= 1, sorted(keys)

        # ids: one primary per entity; an entity whose records did not change keeps its id
        assert set(primaries(spark, config)) == set(after)
        unchanged = {keys: entity for entity, keys in before.items()}
        for entity, keys in after.items():
            if keys in unchanged:
                assert entity == unchanged[keys], f"batch {number}: {sorted(keys)} changed id"
        before = after
