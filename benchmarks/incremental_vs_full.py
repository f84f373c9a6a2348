"""Incremental run with ~1% changed records versus a full run, on generated data.

    .venv/bin/python benchmarks/incremental_vs_full.py --people 55000 --changes 0.01
    .venv/bin/python benchmarks/incremental_vs_full.py --people 55000 --sources delta

After an initial full run and the change batch, the same work is done two ways from the same
saved warehouse, alternating ``--repeats`` times so JVM warm-up and machine noise hit both
alike: ``--mode incremental`` and ``--mode full`` (the weekly refresh: everything recomputed,
only differences written). Medians are printed: seconds per stage, rows changed (what the
MERGEs inserted, updated or deleted) and rows rewritten (rows in the Parquet files the commits
added: Delta MERGE is copy-on-write, so a file holding one changed row is rewritten whole).
In every repeat the two partitions and ids must be equal, or the benchmark exits 1.

``--sources csv`` reads CSV snapshots (change capture compares every record's hash);
``--sources delta`` reads Delta tables through their change data feed (only changes are read).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from delta_sources import write_delta_source
from deltalake import DeltaTable

from resolution.config import load_config
from resolution.generate import SOURCE_FILES, write_sources
from resolution.pipeline import run_pipeline
from resolution.session import get_spark_session
from resolution.store import open_store

REPO = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "standardize", "score", "cluster", "identify", "golden", "write"]
CHANGED_FILES = ("crm_contacts.csv", "support_tickets.csv")


def changed_frame(frame: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """``frame`` with ``fraction`` of its rows touched: 60% get a new email, 20% are deleted,
    20% are copied under a new key (a new record of the same person)."""
    n = max(1, int(len(frame) * fraction))
    chosen = rng.choice(len(frame), size=n, replace=False)
    updates, deletes = chosen[: n * 6 // 10], chosen[n * 6 // 10 : n * 8 // 10]
    email_column = "email" if "email" in frame else "requester_email"
    frame = frame.copy()
    frame.loc[updates, email_column] = [f"changed{i}@new.example" for i in range(len(updates))]
    inserts = frame.iloc[chosen[n * 8 // 10 :]].copy()
    key = frame.columns[0]
    inserts[key] = [f"NEW{i}" for i in range(len(inserts))]
    return pd.concat([frame.drop(index=deletes), inserts], ignore_index=True)


def to_delta(data: Path) -> None:
    """Each generated CSV as a Delta table (string columns) with the change data feed on."""
    for name in SOURCE_FILES.values():
        write_delta_source(data / Path(name).stem, pd.read_csv(data / name, dtype=str, keep_default_na=False))


def apply_changes(data: Path, fraction: float, *, seed: int, delta: bool) -> dict[str, int]:
    """Change ``fraction`` of the CRM and support records, in the CSVs or as one Delta MERGE."""
    rng = np.random.default_rng(seed)
    counts = {}
    for name in CHANGED_FILES:
        if not delta:
            frame = pd.read_csv(data / name, dtype=str, keep_default_na=False)
            changed_frame(frame, fraction, rng).to_csv(data / name, index=False)
            counts[name] = int(len(frame) * fraction)
            continue
        path = data / Path(name).stem
        frame = DeltaTable(str(path)).to_pandas()
        write_delta_source(path, changed_frame(frame, fraction, rng))  # one MERGE: only changes
        counts[name] = int(len(frame) * fraction)
    return counts


def rows_rewritten(warehouse: Path, before: dict[str, int]) -> int:
    """Rows in the data files the output tables' commits after ``before`` added."""
    total = 0
    for folder in warehouse.iterdir():
        if folder.name.startswith("_") or not DeltaTable.is_deltatable(str(folder)):
            continue
        table = DeltaTable(str(folder))
        for commit in table.history():
            if commit["version"] > before.get(folder.name, -1):
                metrics = commit.get("operationMetrics") or {}
                total += int(metrics.get("num_output_rows", metrics.get("num_added_rows", 0)) or 0)
    return total


def versions(warehouse: Path) -> dict[str, int]:
    if not warehouse.exists():
        return {}
    return {f.name: DeltaTable(str(f)).version() for f in warehouse.iterdir() if DeltaTable.is_deltatable(str(f))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=55000)
    parser.add_argument("--changes", type=float, default=0.01)
    parser.add_argument("--sources", choices=("csv", "delta"), default="csv")
    parser.add_argument("--repeats", type=int, default=3, help="alternating incremental/full pairs")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="idr-bench-"))
    shutil.rmtree(work, ignore_errors=True)
    data = work / "data"
    counts = write_sources(args.people, data, seed=3)
    records = sum(v for k, v in counts.items() if k != "truth")
    delta = args.sources == "delta"
    if delta:
        to_delta(data)
    print(f"generated {records} records for {args.people} people in {data} ({args.sources})")

    spark = get_spark_session("idr-benchmark")
    base = load_config(REPO / "conf" / "generated.yml")

    def source(config_source):
        name = Path(config_source.location).name
        if not delta:
            return dataclasses.replace(config_source, location=str(data / name))
        return dataclasses.replace(
            config_source, format="delta", location=str(data / Path(name).stem), change_tracking="delta_cdf"
        )

    def config_for(warehouse: str):
        return dataclasses.replace(
            base,
            storage=dataclasses.replace(base.storage, warehouse=str(work / warehouse)),
            sources=tuple(source(s) for s in base.sources),
            matching=dataclasses.replace(base.matching, model=str(REPO / base.matching.model)),
        )

    def timed(warehouse: str, mode: str):
        before = versions(work / warehouse)
        started = time.perf_counter()
        summary = run_pipeline(spark, config_for(warehouse), mode=mode, report=lambda line: None)
        summary.stage_seconds["wall"] = time.perf_counter() - started
        return summary, rows_rewritten(work / warehouse, before)

    initial = timed("lakehouse", "full")
    print(f"initial full run (cold JVM): {initial[0].stage_seconds['wall']:.1f}s")
    shutil.copytree(work / "lakehouse", work / "lakehouse-before")
    changed = apply_changes(data, args.changes, seed=4, delta=delta)
    print(f"changed records per source: {changed}")
    def membership(warehouse: str) -> dict[str, frozenset[str]]:
        config = config_for(warehouse)
        store = open_store(spark, config)
        frame = store.read("resolved_membership").select("record_key", "entity_id").toPandas()
        return {entity: frozenset(group.record_key) for entity, group in frame.groupby("entity_id")}

    # Alternate the two so JVM warm-up and machine noise hit both alike; report medians.
    results: dict[str, list] = {"incremental": [], "full": []}
    unequal = 0
    for repeat in range(args.repeats):
        for name, warehouse in (("incremental", "lakehouse"), ("full", "lakehouse-full")):
            shutil.rmtree(work / warehouse, ignore_errors=True)
            shutil.copytree(work / "lakehouse-before", work / warehouse)
            results[name].append(timed(warehouse, name))
        same = membership("lakehouse") == membership("lakehouse-full")
        unequal += not same
        print(f"repeat {repeat + 1}: incremental {results['incremental'][-1][0].stage_seconds['wall']:.1f}s, "
              f"full {results['full'][-1][0].stage_seconds['wall']:.1f}s; same entities and ids: {same}")

    print(f"\nrecords: {records}; sources: {args.sources}; change batch: {args.changes:.1%}; "
          f"same entities and ids in {args.repeats - unequal} of {args.repeats} repeats; "
          f"median of {args.repeats} alternating runs each, both from the same saved warehouse")
    columns = [*STAGES, "wall"]
    print(f"{'run':<14}" + "".join(f"{s:>12}" for s in columns) + f"{'rows changed':>14}{'rows rewritten':>16}")
    medians = {}
    for name, runs in results.items():
        stage = {s: statistics.median(r[0].stage_seconds.get(s, 0) for r in runs) for s in columns}
        changed_rows = sum(runs[0][0].rows_written.values())
        medians[name] = (stage, changed_rows, runs[0][1])
        print(f"{name:<14}" + "".join(f"{stage[s]:>12.1f}" for s in columns) + f"{changed_rows:>14}{runs[0][1]:>16}")
    (inc, inc_rows, inc_rewritten), (full, full_rows, full_rewritten) = medians["incremental"], medians["full"]
    print(
        f"\nincremental / full: {inc['wall'] / full['wall']:.2f} of the time, "
        f"{inc_rows / max(1, full_rows):.3f} of the rows changed, "
        f"{inc_rewritten / max(1, full_rewritten):.2f} of the rows rewritten"
    )
    if unequal:
        raise SystemExit(f"incremental and full runs differ in {unequal} repeat(s)")


if __name__ == "__main__":
    main()
