"""Incremental runs: change capture, local re-clustering, stable ids, equal to a full run."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from resolution import schemas as S
from resolution.cli import EXIT_BUSY, main
from resolution.config import load_config
from resolution.pipeline import run_pipeline
from resolution.run_log import LOCK_TIMEOUT, PipelineBusyError
from resolution.store import available_store_backends, open_store
from tests.incremental_harness import World, partition, primaries, world_config, world_document

QUIET = {"report": lambda line: None}


def _full_partition(spark, world: World, tmp_path, label: str):
    """The partition one full run gives over the world's current state (fresh warehouse)."""
    config = world_config(world.folder, tmp_path / f"full-{label}")
    run_pipeline(spark, config, mode="full", **QUIET)
    return set(partition(spark, config).values())


def _lineage(spark, config):
    store = open_store(spark, config)
    if not store.exists(S.ENTITY_LINEAGE):
        return []
    return sorted(
        (row.entity_id, row.other_entity_id, row.event) for row in store.read(S.ENTITY_LINEAGE).collect()
    )


def test_incremental_runs_follow_updates_deletes_and_audit_events(spark, tmp_path):
    world = World(tmp_path / "sources")
    world.upsert_crm("c1", 0, email=0, phone=None)
    world.upsert_crm("c2", 0, email=0, phone=1)
    world.upsert_crm("c3", 0, email=None, phone=1)  # bridged to c1 through c2's phone
    world.upsert_crm("c4", 1, email=2, phone=None)
    world.kyc_event("INSERT", "k1", 1, email=2, phone=3)
    world.write()
    config = world_config(world.folder, tmp_path / "lakehouse")

    first = run_pipeline(spark, config, **QUIET)
    assert first.mode == "full"
    assert set(partition(spark, config).values()) == {
        frozenset({"crm:c1", "crm:c2", "crm:c3"}),
        frozenset({"crm:c4", "kyc:k1"}),
    }
    ids_before = {keys: entity for entity, keys in partition(spark, config).items()}

    # Batch 1: c2 loses its phone -> c3 splits off; k1 is deleted; a late, older kyc UPDATE
    # for k1 arrives after its DELETE and must be ignored; a new kyc record joins c1 by email.
    world.upsert_crm("c2", 0, email=0, phone=None)
    world.kyc_event("DELETE", "k1", 1, email=2, phone=3)
    world.kyc_event("UPDATE", "k1", 1, email=2, phone=3, minutes_ago=30)
    world.kyc_event("INSERT", "k2", 0, email=0, phone=4)
    world.write()
    second = run_pipeline(spark, config, **QUIET)
    assert second.mode == "incremental"
    groups = partition(spark, config)
    assert set(groups.values()) == _full_partition(spark, world, tmp_path, "1")
    assert set(groups.values()) == {
        frozenset({"crm:c1", "crm:c2", "kyc:k2"}),
        frozenset({"crm:c3"}),
        frozenset({"crm:c4"}),
    }
    # the majority part keeps the id; c3 takes its own; c4's entity keeps its id
    old_id = ids_before[frozenset({"crm:c1", "crm:c2", "crm:c3"})]
    assert groups[old_id] == frozenset({"crm:c1", "crm:c2", "kyc:k2"})
    assert groups["crm:c3"] == frozenset({"crm:c3"})
    assert groups[ids_before[frozenset({"crm:c4", "kyc:k1"})]] == frozenset({"crm:c4"})
    assert (old_id, "crm:c3", "SPLIT") in _lineage(spark, config)
    assert (second.records_new, second.records_updated, second.records_deleted) == (1, 1, 1)

    # Batch 2: c3 gets c4's email -> the two entities merge. c4's entity is still called
    # kyc:k1 (ids outlive their anchor); by age it is c4's (Jan 5), so c3's id (Jan 4) survives.
    world.upsert_crm("c3", 0, email=2, phone=1)
    world.write()
    run_pipeline(spark, config, **QUIET)
    groups = partition(spark, config)
    assert set(groups.values()) == _full_partition(spark, world, tmp_path, "2")
    assert groups["crm:c3"] == frozenset({"crm:c3", "crm:c4"})
    lineage = _lineage(spark, config)
    assert ("crm:c3", "kyc:k1", "MERGED") in lineage and ("kyc:k1", "crm:c3", "RETIRED") in lineage
    assert primaries(spark, config)["crm:c3"] == "crm:c3"


def test_incremental_run_without_changes_writes_nothing_but_its_run(spark, tmp_path):
    world = World(tmp_path / "sources")
    world.upsert_crm("c1", 0, email=0, phone=None)
    world.upsert_crm("c2", 1, email=0, phone=None)
    world.upsert_crm("c3", 2, email=1, phone=None)
    world.crm["bad"] = ["", "Ann", "Lee", "", "", "2024-01-01", ""]  # no key: rejected
    world.write()
    config = world_config(world.folder, tmp_path / "lakehouse")
    first = run_pipeline(spark, config, **QUIET)
    store = open_store(spark, config)
    tables = [S.SOURCE_RECORDS, S.MATCH_EDGES, S.RESOLVED_MEMBERSHIP, S.GOLDEN_PROFILES,
              S.REVIEW_QUEUE, S.REJECTED_RECORDS, S.ENTITY_LINEAGE]
    before = {table: store.version(table) for table in tables}
    world.write()  # same content, rewritten files
    lines: list[str] = []
    summary = run_pipeline(spark, config, report=lines.append)
    assert summary.mode == "incremental"
    assert {table: store.version(table) for table in tables} == before
    assert any("nothing to re-resolve" in line for line in lines)
    # its figures are the tables' (read, not recomputed)
    assert (summary.records_read, summary.records_rejected) == (first.records_read, 1)
    assert (summary.entities, summary.largest_entity) == (first.entities, first.largest_entity) == (2, 2)

    # the bad row leaves the CSV: no record changed, but its rejection is gone
    del world.crm["bad"]
    world.write()
    third = run_pipeline(spark, config, report=lines.append)
    assert third.records_rejected == 0
    assert store.read(S.REJECTED_RECORDS).count() == 0
    assert {table: store.version(table) for table in tables if table != S.REJECTED_RECORDS} == {
        table: version for table, version in before.items() if table != S.REJECTED_RECORDS
    }


def test_dry_run_reports_changes_and_commits_nothing_else(spark, tmp_path):
    world = World(tmp_path / "sources")
    world.upsert_crm("c1", 0, email=0, phone=1)
    world.upsert_crm("c2", 1, email=2, phone=None)
    world.upsert_crm("c3", 2, email=3, phone=None)
    world.write()
    config = world_config(world.folder, tmp_path / "lakehouse")
    run_pipeline(spark, config, **QUIET)
    store = open_store(spark, config)
    tables = [S.SOURCE_RECORDS, S.MATCH_EDGES, S.RESOLVED_MEMBERSHIP, S.GOLDEN_PROFILES, S.RUNS]
    before = {table: store.version(table) for table in tables}

    world.upsert_crm("c2", 1, email=0, phone=None)  # c2 joins c1: c2's entity is merged away
    world.delete_crm("c3")
    world.upsert_crm("c5", 3, email=5, phone=None)
    world.write()
    lines: list[str] = []
    run_pipeline(spark, config, dry_run=True, report=lines.append)

    assert {table: store.version(table) for table in tables} == before
    changes = {
        row.record_key: (row.current_entity_id, row.proposed_entity_id, row.change_type)
        for row in store.read(S.DRY_RUN_CHANGES).collect()
    }
    assert changes == {
        "crm:c2": ("crm:c2", "crm:c1", "MERGED"),
        "crm:c3": ("crm:c3", None, "DELETED"),
        "crm:c5": (None, "crm:c5", "NEW"),
    }
    assert any(line.startswith("dry run: would change DELETED 1, MERGED 1, NEW 1") for line in lines)


def test_a_second_run_is_refused_while_one_holds_the_pipeline(spark, tmp_path):
    world = World(tmp_path / "sources")
    world.upsert_crm("c1", 0, email=0, phone=None)
    world.write()
    config = world_config(world.folder, tmp_path / "lakehouse")
    holder = {}

    def start_another(table: str) -> None:
        if table == S.MATCH_EDGES and not holder:
            holder["seen"] = True
            with pytest.raises(PipelineBusyError, match="another run is in progress: first-run"):
                run_pipeline(spark, config, run_id="second-run", **QUIET)

    run_pipeline(spark, config, run_id="first-run", on_table_written=start_another, **QUIET)
    assert holder == {"seen": True}
    store = open_store(spark, config)
    statuses = {row.run_id: row.status for row in store.read(S.RUNS).collect()}
    assert statuses == {"first-run": "SUCCEEDED", "second-run": "REFUSED"}


def _running_row(run_id: str, owner: str, started_at: datetime) -> dict:
    """A ``runs`` row of a run that holds the pipeline (RUNNING, not finished)."""
    row = {field.name: None for field in S.RUNS_SCHEMA.fields}
    return {**row, S.RUN_ID: run_id, "mode": "incremental", "status": "RUNNING", "owner": owner,
            "started_at": started_at}


def test_a_dead_runs_hold_is_taken_over_and_a_live_one_makes_idr_run_exit_3(spark, tmp_path, capsys):
    world = World(tmp_path / "sources")
    world.upsert_crm("c1", 0, email=0, phone=None)
    world.write()
    path = tmp_path / "world.yml"
    path.write_text(yaml.safe_dump(world_document(world.folder, tmp_path / "lakehouse", model=False)))
    config = load_config(path)
    run_pipeline(spark, config, run_id="first-run", **QUIET)
    store = open_store(spark, config)

    finished = subprocess.Popen(["true"])
    finished.wait()  # its pid is no process now
    now = datetime.now(timezone.utc)
    dead = [
        _running_row("died-here", f"{socket.gethostname()}:{finished.pid}", now - timedelta(minutes=1)),
        _running_row("died-elsewhere", "another-host:1", now - LOCK_TIMEOUT - timedelta(minutes=1)),
    ]
    store.append(S.RUNS, spark.createDataFrame(dead, S.RUNS_SCHEMA))
    world.upsert_crm("c2", 1, email=0, phone=None)
    world.write()
    summary = run_pipeline(spark, config, run_id="taker", **QUIET)
    assert summary.status == "SUCCEEDED" and summary.records_new == 1
    runs = {row.run_id: row for row in store.read(S.RUNS).collect()}
    for run_id in ("died-here", "died-elsewhere"):
        assert (runs[run_id].status, runs[run_id].error) == ("ABANDONED", "found dead by run taker")
        assert runs[run_id].finished_at is not None

    # a run of this (live) process holds the pipeline: the CLI refuses with exit code 3
    store.append(S.RUNS, spark.createDataFrame([_running_row("holder", f"{socket.gethostname()}:{os.getpid()}", now)],
                                               S.RUNS_SCHEMA))
    capsys.readouterr()
    assert main(["run", "--config", str(path), "--run-id", "refused"]) == EXIT_BUSY == 3
    assert "run refused: another run is in progress: holder" in capsys.readouterr().err
    statuses = {row.run_id: row.status for row in store.read(S.RUNS).collect()}
    assert (statuses["holder"], statuses["refused"]) == ("RUNNING", "REFUSED")


def _world_with_a_pending_change(spark, tmp_path, *, backend: str = "embedded") -> tuple[World, object]:
    """A resolved warehouse and a source change that splits one entity and merges two."""
    world = World(tmp_path / "sources")
    world.upsert_crm("c1", 0, email=0, phone=1)
    world.upsert_crm("c2", 1, email=2, phone=None)
    world.upsert_crm("c3", 2, email=None, phone=1)
    world.write()
    config = world_config(world.folder, tmp_path / "lakehouse", backend=backend)
    run_pipeline(spark, config, **QUIET)
    # c1 drops its phone (c3 splits off) and takes c2's email (c1 and c2 merge)
    world.upsert_crm("c1", 0, email=2, phone=None)
    world.write()
    return world, config


def _assert_completed(spark, world: World, config, tmp_path) -> None:
    """The warehouse holds what a full run gives, each lineage event and membership row once."""
    assert set(partition(spark, config).values()) == _full_partition(spark, world, tmp_path, "final")
    lineage = _lineage(spark, config)
    assert len(lineage) == len(set(lineage)), "no lineage event is written twice"
    assert {event for _, _, event in lineage} >= {"SPLIT", "MERGED", "RETIRED"}
    store = open_store(spark, config)
    members = store.read(S.RESOLVED_MEMBERSHIP).groupBy(S.RECORD_KEY).count()
    assert members.filter("count > 1").count() == 0
    assert {row.record_key for row in store.read(S.SOURCE_RECORDS).collect()} == {"crm:c1", "crm:c2", "crm:c3"}


def _die_after_write(number: int, seen: list[str]) -> Callable[[str], None]:
    def written(table: str) -> None:
        seen.append(table)
        if len(seen) == number:
            raise RuntimeError(f"injected failure after write {number} ({table})")

    return written


def test_runs_that_die_after_each_write_in_turn_are_completed_by_the_next(spark, tmp_path):
    """Run k dies right after its k-th table write; run k+1 picks up what k left, until one
    run gets through every write. One chain covers every failure point (CI-sized); the test
    below covers each point alone, from a clean warehouse (``pytest -m slow``)."""
    world, config = _world_with_a_pending_change(spark, tmp_path)
    failure_points: list[str] = []
    for number in range(1, 20):
        seen: list[str] = []
        try:
            run_pipeline(spark, config, on_table_written=_die_after_write(number, seen), **QUIET)
        except RuntimeError as error:
            assert "injected failure" in str(error)
            failure_points.append(seen[-1])
            continue
        break
    assert set(failure_points) >= {
        S.SOURCE_RECORDS, S.MATCH_EDGES, S.REVIEW_QUEUE, S.RESOLVED_MEMBERSHIP,
        S.GOLDEN_PROFILES, S.ENTITY_LINEAGE, S.REJECTED_RECORDS,
    }
    # source_records is written last: once it is, the change is fully applied, and the run
    # after it finds nothing to redo (it stops after ingest and writes no table)
    assert failure_points[-1] == S.SOURCE_RECORDS and len(failure_points) == len(set(failure_points))
    assert seen == []
    _assert_completed(spark, world, config, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "failing_table",
    [S.ENTITY_LINEAGE, S.MATCH_EDGES, S.REVIEW_QUEUE, S.GOLDEN_PROFILES,
     S.RESOLVED_MEMBERSHIP, S.REJECTED_RECORDS, S.SOURCE_RECORDS],
)
def test_a_run_that_dies_after_a_write_is_completed_by_the_next_run(spark, tmp_path, failing_table):
    _die_after_then_complete(spark, tmp_path, failing_table)


def test_a_jvm_run_that_dies_after_writing_membership_is_completed_by_the_next(spark, tmp_path):
    """Failure injection on delta-spark: the run dies between two MERGEs of its commit set."""
    reason = available_store_backends(spark)["delta-spark"]
    if reason is not None:
        pytest.skip(f"jvm backend unavailable: {reason}")
    _die_after_then_complete(spark, tmp_path, S.RESOLVED_MEMBERSHIP, backend="jvm")


def _die_after_then_complete(spark, tmp_path, failing_table: str, *, backend: str = "embedded") -> None:
    world, config = _world_with_a_pending_change(spark, tmp_path, backend=backend)

    def die(table: str) -> None:
        if table == failing_table:
            raise RuntimeError(f"injected failure after writing {table}")

    with pytest.raises(RuntimeError, match="injected failure"):
        run_pipeline(spark, config, on_table_written=die, **QUIET)
    run_pipeline(spark, config, **QUIET)
    _assert_completed(spark, world, config, tmp_path)
