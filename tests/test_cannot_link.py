"""Cannot-link constraints in a pipeline run: the cut is explained, and incremental equals full."""

from __future__ import annotations

from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.pipeline import run_pipeline
from resolution.store import open_store
from tests.incremental_harness import World, partition, world_config

QUIET = {"report": lambda line: None}
CONSTRAINTS = {"attributes": ["dob"], "unique_sources": ["kyc"]}


def _cuts(spark, config) -> set[tuple[str, str, str]]:
    store = open_store(spark, config)
    rows = store.read(S.CUT_EDGES).select(S.RECORD_KEY_L, S.RECORD_KEY_R, F.col("cut_by")).collect()
    return {(min(row[0], row[1]), max(row[0], row[1]), row[2]) for row in rows}


def test_a_shared_email_does_not_merge_two_birth_dates_and_the_cut_is_recorded(spark, tmp_path):
    world = World(tmp_path / "sources", dobs=True)
    world.upsert_crm("c1", 0, email=0, phone=None)  # born 1980
    world.upsert_crm("c2", 1, email=0, phone=1)  # born 1990, same (family) email
    world.upsert_crm("c3", 1, email=None, phone=1)  # no birth date, c2's phone
    world.write()
    config = world_config(world.folder, tmp_path / "incremental", cannot_link=CONSTRAINTS)
    run_pipeline(spark, config, **QUIET)
    assert set(partition(spark, config).values()) == {frozenset({"crm:c1"}), frozenset({"crm:c2", "crm:c3"})}
    assert _cuts(spark, config) == {("crm:c1", "crm:c2", "different:dob")}
    # without the constraint the family email merges them all
    plain = world_config(world.folder, tmp_path / "plain")
    run_pipeline(spark, plain, **QUIET)
    assert set(partition(spark, plain).values()) == {frozenset({"crm:c1", "crm:c2", "crm:c3"})}

    # c2 leaves the family email: nothing left to cut; a KYC record of c1 joins, a second is cut
    world.upsert_crm("c2", 1, email=2, phone=1)
    world.kyc_event("INSERT", "k1", 0, 0, None)  # born 1980 like c1, same email
    world.kyc_event("INSERT", "k4", 0, 0, None)  # born 1980 too, but KYC is duplicate-free
    world.write()
    run_pipeline(spark, config, **QUIET)
    after = set(partition(spark, config).values())
    full = world_config(world.folder, tmp_path / "full", cannot_link=CONSTRAINTS)
    run_pipeline(spark, full, mode="full", **QUIET)
    assert after == set(partition(spark, full).values())
    assert frozenset({"crm:c2", "crm:c3"}) in after
    assert sum(1 for keys in after if "crm:c1" in keys and any(k.startswith("kyc:") for k in keys)) == 1
    cuts = _cuts(spark, config)
    assert cuts == _cuts(spark, full)
    assert {constraint for _, _, constraint in cuts} == {"unique_source:kyc"}


# Deleting the record behind a cut (the other side rejoins, the cut goes): CUTS in
# tests/test_incremental_property.py, whose check compares the cut_edges with a full run's.
