"""Small runs: what a new user waits for on the 31-record demo, per stage, in seconds and Spark jobs.

    .venv/bin/python benchmarks/small_runs.py
    .venv/bin/python benchmarks/small_runs.py --backend jvm --repeats 5

In one process: the session's start-up, then ``--repeats`` times, alternating so noise hits
each alike: a full run of ``conf/example.yml`` into a new warehouse (the first one on a cold
JVM, reported apart), a run with no source change over it, and a rules-only full run (the same
config without its ``matching`` section) into another new warehouse. Prints the median seconds
and Spark jobs of each stage. With Spark's default session settings (adaptive execution and
code generation on), as ``idr run`` uses them.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from resolution.config import MatchingConfig, load_config
from resolution.pipeline import run_pipeline
from resolution.session import get_spark_session

REPO = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "standardize", "score", "cluster", "identify", "golden", "write"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("embedded", "jvm"), default="embedded")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="idr-small-"))
    base = load_config(REPO / "conf" / "example.yml")

    def config_for(warehouse: str, *, model: bool = True):
        config = dataclasses.replace(
            base,
            storage=dataclasses.replace(base.storage, warehouse=str(work / warehouse), backend=args.backend),
            sources=tuple(
                dataclasses.replace(s, location=str(work / warehouse / "inbox") if s.format == "delta"
                                    else str(REPO / s.location))
                for s in base.sources
            ),
            matching=dataclasses.replace(base.matching, model=str(REPO / base.matching.model)),
        )
        return config if model else dataclasses.replace(config, matching=MatchingConfig())

    started = time.perf_counter()
    spark = get_spark_session("idr-small-runs", backend=args.backend)
    startup = time.perf_counter() - started

    def timed(config, mode: str = "auto"):
        began = time.perf_counter()
        summary = run_pipeline(spark, config, mode=mode, report=lambda line: None)
        assert summary.status == "SUCCEEDED", summary.error
        return time.perf_counter() - began, summary

    first = timed(config_for("cold"))
    runs: dict[str, list] = {"full run (model)": [], "no-change run": [], "full run (rules only)": []}
    for repeat in range(args.repeats):
        warehouse = f"warm-{repeat}"
        runs["full run (model)"].append(timed(config_for(warehouse)))
        runs["no-change run"].append(timed(config_for(warehouse)))
        runs["full run (rules only)"].append(timed(config_for(f"rules-{repeat}", model=False)))
    shutil.rmtree(work, ignore_errors=True)

    print(f"\nbackend {args.backend}; session start-up {startup:.1f} s; first full run on a cold JVM "
          f"{first[0]:.1f} s ({sum(first[1].stage_jobs.values())} Spark jobs); medians of {args.repeats} below")
    print(f"{'run':<24}{'wall s':>8}" + "".join(f"{s:>13}" for s in STAGES) + f"{'jobs':>7}{'entities':>10}")
    for name, results in runs.items():
        wall = statistics.median(seconds for seconds, _ in results)
        cells = []
        for stage in STAGES:
            seconds = statistics.median(summary.stage_seconds.get(stage, 0.0) for _, summary in results)
            jobs = statistics.median(summary.stage_jobs.get(stage, 0) for _, summary in results)
            cells.append(f"{seconds:>6.1f}s/{jobs:>4.0f}j")
        jobs = statistics.median(sum(summary.stage_jobs.values()) for _, summary in results)
        print(f"{name:<24}{wall:>8.1f}" + "".join(f"{c:>13}" for c in cells) + f"{jobs:>7.0f}{results[0][1].entities:>10}")


if __name__ == "__main__":
    main()
