"""The score stage alone: our native scorer against Splink's Linker, on the same records and pairs.

    .venv/bin/python benchmarks/scoring.py
    .venv/bin/python benchmarks/scoring.py --records 100000 --changes 0.01 --repeats 3

Generates ``--records`` records (``idr generate``'s code), resolves them once with
``conf/benchmarks/generated.yml`` (not timed) and reads back the standardized live records,
junk identifiers masked as the score stage masks them. Then, in one process and alternating so
that noise hits each alike, ``--repeats`` times each: ``score_candidates`` over all records (a
full run's scoring) and over a changed subset (``--changes`` of the records, an incremental
run's), once with the native scorer (our blocking joins, Splink's SQL in one query) and once
through Splink's ``Linker`` (``via_linker=True``). Each result is written to a no-op sink so
every pair is computed. Prints the median seconds, the pairs kept and pairs per second, and
each native time as a ratio of the Linker's; the pairs and weights are the same on both sides
(``tests/test_scoring.py``). The machine is shared and noisy: read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

from resolution.config import CannotLinkConfig, load_config
from resolution.generate import write_sources
from resolution.matching import mask_oversized_identifiers
from resolution.pipeline import run_pipeline
from resolution.schemas import SOURCE_RECORDS
from resolution.scoring import load_model, score_candidates
from resolution.session import get_spark_session
from resolution.store import open_store

REPO = Path(__file__).resolve().parents[1]
RECORDS_PER_PERSON = 1.935  # the generator's average, so --records reads as records


def _config(work: Path):
    config = load_config(REPO / "conf" / "benchmarks" / "generated.yml")
    sources = tuple(
        dataclasses.replace(s, location=str(work / "data" / Path(s.location).name)) for s in config.sources
    )
    return dataclasses.replace(
        config, sources=sources, cannot_link=CannotLinkConfig(),
        storage=dataclasses.replace(config.storage, warehouse=str(work / "lakehouse"), backend="embedded"),
        matching=dataclasses.replace(config.matching, model=str(REPO / config.matching.model)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--changes", type=float, default=0.01, help="share of records scored incrementally")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="idr-scoring-"))
    write_sources(round(args.records / RECORDS_PER_PERSON), work / "data", seed=11)
    spark = get_spark_session("idr-scoring-bench")
    config = _config(work)
    run_pipeline(spark, config, mode="full", report=lambda line: None)
    live = open_store(spark, config).read(SOURCE_RECORDS)
    records = mask_oversized_identifiers(live, rules=config.identifiers).localCheckpoint()
    changed = records.sample(fraction=args.changes, seed=3).localCheckpoint()
    total, subset = records.count(), changed.count()
    model = load_model(config.matching.model, config)
    cases = {"full": None, f"changed {args.changes:.1%}": changed}
    times: dict[tuple[str, str], list[float]] = {}
    pairs: dict[tuple[str, str], int] = {}
    for _ in range(args.repeats):
        for case, seeds in cases.items():
            for scorer, via_linker in (("native", False), ("linker", True)):
                started = time.perf_counter()
                scored = score_candidates(spark, records, config=config, model=model, changed=seeds,
                                          via_linker=via_linker)
                kept = scored.agg(F.count(F.lit(1)).alias("n"), F.sum("match_weight").alias("w")).first()["n"]
                times.setdefault((case, scorer), []).append(time.perf_counter() - started)
                pairs[(case, scorer)] = kept
    print(f"\nscore stage, {total:,} records ({subset:,} changed), median of {args.repeats}; "
          "native: our blocking joins + Splink's SQL in one query; linker: Splink's Linker")
    print("| case | scorer | pairs kept | seconds | pairs/s | vs linker |\n|---|---|---|---|---|---|")
    for case in cases:
        linker = statistics.median(times[(case, "linker")])
        for scorer in ("native", "linker"):
            seconds = statistics.median(times[(case, scorer)])
            kept = pairs[(case, scorer)]
            print(f"| {case} | {scorer} | {kept:,} | {seconds:.1f} | {kept / seconds:,.0f} | {seconds / linker:.2f} |")
    spark.stop()


if __name__ == "__main__":
    main()
