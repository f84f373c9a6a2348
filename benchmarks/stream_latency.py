"""Latency of ``idr stream``: small commits to a Delta source, resolved micro-batch by micro-batch.

    .venv/bin/python benchmarks/stream_latency.py --people 55000 --commits 6 --rows 20

Generates the three-source data (about 1.85 records per person), makes the support tickets a
Delta table with its change data feed on, runs a full resolution, then streams the support
table while a writer thread commits ``--rows`` changed tickets every ``--interval`` seconds.
Prints, per micro-batch: rows read, seconds to resolve and commit it, and the latency from the
source commit to the resolved entity (which includes waiting for the next trigger).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from deltalake import DeltaTable
from incremental_vs_full import changed_frame, replace_content, to_delta

from resolution.config import load_config
from resolution.generate import write_sources
from resolution.pipeline import run_pipeline
from resolution.session import get_spark_session
from resolution.streaming import StreamOptions, start_stream

REPO = Path(__file__).resolve().parents[1]


def commit_changes(table_path: Path, rows: int, rng: np.random.Generator) -> None:
    """One Delta commit touching about ``rows`` tickets (updates, deletes and inserts)."""
    table = DeltaTable(str(table_path))
    frame = table.to_pandas()
    new = changed_frame(frame, rows / len(frame), rng)
    key = frame.columns[0]
    new.loc[new[key].str.startswith("NEW"), key] += f"-{time.time_ns()}"  # fresh keys each commit
    replace_content(table, new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=55000)
    parser.add_argument("--commits", type=int, default=6, help="source commits to stream")
    parser.add_argument("--rows", type=int, default=20, help="changed tickets per commit")
    parser.add_argument("--interval", type=float, default=20.0, help="seconds between commits")
    parser.add_argument("--trigger-seconds", type=float, default=2.0)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="idr-stream-"))
    shutil.rmtree(work, ignore_errors=True)
    data = work / "data"
    counts = write_sources(args.people, data, seed=3)
    to_delta(data)
    records = sum(v for k, v in counts.items() if k != "truth")
    print(f"generated {records} records for {args.people} people in {data}")

    base = load_config(REPO / "conf" / "generated.yml")
    support = data / "support_tickets"

    def source(s):
        if s.name == "support":
            return dataclasses.replace(s, format="delta", location=str(support), change_tracking="delta_cdf")
        return dataclasses.replace(s, location=str(data / Path(s.location).name))

    config = dataclasses.replace(
        base,
        storage=dataclasses.replace(base.storage, warehouse=str(work / "lakehouse")),
        sources=tuple(source(s) for s in base.sources),
        matching=dataclasses.replace(base.matching, model=str(REPO / base.matching.model)),
    )
    spark = get_spark_session("idr-stream-benchmark")
    started = time.perf_counter()
    run_pipeline(spark, config, mode="full", report=lambda line: None)
    print(f"full run: {time.perf_counter() - started:.1f}s")

    options = StreamOptions(
        source="support", checkpoint=str(work / "checkpoint"), trigger_seconds=args.trigger_seconds
    )
    query, handler = start_stream(spark, config, options, report=lambda line: print(line) if line.startswith("micro") else None)
    rng = np.random.default_rng(11)

    def write() -> None:
        for _ in range(args.commits):
            time.sleep(args.interval)
            commit_changes(support, args.rows, rng)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join()
    latest = DeltaTable(str(support)).version()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not any(
        int(b.summary.source_versions.get("support", -1)) >= latest for b in handler.batches
    ):
        time.sleep(1)
    query.stop()

    print(f"\nrecords: {records}; commits: {args.commits} x ~{args.rows} tickets; trigger {args.trigger_seconds}s")
    print(f"{'batch':>6}{'rows':>8}{'resolve s':>12}{'commit->resolved s':>20}")
    for batch in handler.batches:
        lag = f"{batch.source_lag_seconds:>20.1f}" if batch.source_lag_seconds is not None else f"{'':>20}"
        print(f"{batch.batch_id:>6}{batch.rows:>8}{batch.seconds:>12.1f}{lag}")
    seconds = [b.seconds for b in handler.batches]
    lags = [b.source_lag_seconds for b in handler.batches if b.source_lag_seconds is not None]
    if seconds:
        print(f"\nresolve per micro-batch: median {statistics.median(seconds):.1f}s, max {max(seconds):.1f}s; "
              f"commit to resolved: median {statistics.median(lags):.1f}s, max {max(lags):.1f}s")


if __name__ == "__main__":
    main()
