"""Property: after any sequence of change batches, incremental runs equal one full run.

Batches mix CRM snapshot inserts/updates/deletes with KYC audit events (duplicates, late events
older than what was applied). After each batch the incremental partition must equal the
partition of a full run over the same state, and ids must follow the policy.

CI runs a couple of examples; run more with ``IDR_PROPERTY_EXAMPLES=20 pytest
tests/test_incremental_property.py``.
"""

from __future__ import annotations

import os
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolution.pipeline import run_pipeline
from tests.incremental_harness import (
    EMAILS,
    NAMES,
    PHONES,
    World,
    partition,
    primaries,
    world_config,
)

EXAMPLES = int(os.environ.get("IDR_PROPERTY_EXAMPLES", "2"))
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


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=batches)
def test_incremental_partition_equals_full_recompute(spark, tmp_path, batches):
    base = tmp_path / uuid.uuid4().hex[:8]
    world = World(base / "sources")
    world.upsert_crm("c1", 0, email=0, phone=0)
    world.write()
    config = world_config(world.folder, base / "incremental")
    run_pipeline(spark, config, **QUIET)
    before = partition(spark, config)

    for number, batch in enumerate(batches):
        _apply(world, batch)
        run_pipeline(spark, config, **QUIET)
        after = partition(spark, config)
        full = world_config(world.folder, base / f"full-{number}")
        run_pipeline(spark, full, mode="full", **QUIET)
        assert set(after.values()) == set(partition(spark, full).values()), f"batch {number}: {batch}"

        # ids: one primary per entity; an entity whose records did not change keeps its id
        assert set(primaries(spark, config)) == set(after)
        unchanged = {keys: entity for entity, keys in before.items()}
        for entity, keys in after.items():
            if keys in unchanged:
                assert entity == unchanged[keys], f"batch {number}: {sorted(keys)} changed id"
        before = after
