"""Incremental run with ~1% changed records versus a full run, on generated data.

    .venv/bin/python benchmarks/incremental_vs_full.py --people 55000 --changes 0.01

Prints seconds per stage and rows written for: the initial full run, the incremental run after
the change batch, and a full run over the same final state (whose partition must equal the
incremental one).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from resolution.config import load_config
from resolution.generate import write_sources
from resolution.pipeline import run_pipeline, store_for
from resolution.session import detect_backends, get_spark_session

REPO = Path(__file__).resolve().parents[1]


def change_batch(folder: Path, fraction: float, seed: int) -> dict[str, int]:
    """Update, delete and insert ``fraction`` of the CRM and support records in place."""
    rng = np.random.default_rng(seed)
    counts = {}
    for name in ("crm_contacts.csv", "support_tickets.csv"):
        frame = pd.read_csv(folder / name, dtype=str, keep_default_na=False)
        n = max(1, int(len(frame) * fraction))
        chosen = rng.choice(len(frame), size=n, replace=False)
        updates, deletes = chosen[: n * 6 // 10], chosen[n * 6 // 10 : n * 8 // 10]
        email_column = "email" if "email" in frame else "requester_email"
        frame.loc[updates, email_column] = [f"changed{i}@new.example" for i in range(len(updates))]
        inserts = frame.iloc[chosen[n * 8 // 10 :]].copy()
        key = frame.columns[0]
        inserts[key] = [f"NEW{i}" for i in range(len(inserts))]
        frame = pd.concat([frame.drop(index=deletes), inserts], ignore_index=True)
        frame.to_csv(folder / name, index=False)
        counts[name] = n
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=55000)
    parser.add_argument("--changes", type=float, default=0.01)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="idr-bench-"))
    shutil.rmtree(work, ignore_errors=True)
    data = work / "data"
    counts = write_sources(args.people, data, seed=3)
    records = sum(v for k, v in counts.items() if k != "truth")
    print(f"generated {records} records for {args.people} people in {data}")

    spark = get_spark_session("idr-benchmark")
    base = load_config(REPO / "conf" / "generated.yml")

    def config_for(warehouse: str):
        return dataclasses.replace(
            base,
            storage=dataclasses.replace(base.storage, warehouse=str(work / warehouse)),
            sources=tuple(
                dataclasses.replace(s, location=str(data / Path(s.location).name)) for s in base.sources
            ),
            matching=dataclasses.replace(base.matching, model=str(REPO / base.matching.model)),
        )

    results = {}
    started = time.perf_counter()
    results["full (initial)"] = run_pipeline(spark, config_for("lakehouse"), mode="full")
    results["full (initial)"].stage_seconds["wall"] = time.perf_counter() - started
    changed = change_batch(data, args.changes, seed=4)
    print(f"changed records per file: {changed}")
    started = time.perf_counter()
    results["incremental"] = run_pipeline(spark, config_for("lakehouse"))
    results["incremental"].stage_seconds["wall"] = time.perf_counter() - started
    started = time.perf_counter()
    results["full (same state)"] = run_pipeline(spark, config_for("lakehouse-full"), mode="full")
    results["full (same state)"].stage_seconds["wall"] = time.perf_counter() - started

    def partition(warehouse: str) -> set[frozenset[str]]:
        config = config_for(warehouse)
        store = store_for(spark, config, detect_backends(spark, prefer=config.storage.backend))
        frame = store.read("resolved_membership").select("record_key", "entity_id").toPandas()
        return {frozenset(group.record_key) for _, group in frame.groupby("entity_id")}

    equal = partition("lakehouse") == partition("lakehouse-full")
    stages = ["ingest", "standardize", "score", "cluster", "identify", "golden", "write", "wall"]
    print(f"\nrecords: {records}; change batch: {args.changes:.1%}; partitions equal: {equal}")
    print(f"{'run':<20}" + "".join(f"{s:>12}" for s in stages) + f"{'rows written':>14}")
    for name, summary in results.items():
        seconds = "".join(f"{summary.stage_seconds.get(s, 0):>12.1f}" for s in stages)
        print(f"{name:<20}{seconds}{sum(summary.rows_written.values()):>14}")
    inc, full = results["incremental"], results["full (same state)"]
    print(
        f"\nincremental / full: {inc.stage_seconds['wall'] / full.stage_seconds['wall']:.2f} of the time, "
        f"{sum(inc.rows_written.values()) / max(1, sum(full.rows_written.values())):.3f} of the rows written"
    )


if __name__ == "__main__":
    main()
