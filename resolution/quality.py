"""Data quality checks on the output tables, run after each job (``idr check``).

Each check reads the committed tables and passes or fails with what it observed, so a
scheduler can fail the job and a person can see why:

- ``one_entity_per_record``: every live source record has exactly one membership row;
- ``no_orphaned_records``: no membership row without a live record, no golden profile without
  members, no entity without a golden profile;
- ``max_entity_size``: no entity holds more records than the configured limit;
- ``freshness:<source>``: the newest record of a source (by its timestamp column) is recent.

Results are appended to the ``quality_checks`` table (the data quality notebook charts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.config import Config
from resolution.store import DeltaStore

PASS, FAIL = "PASS", "FAIL"
EXAMPLES = 5  # record keys or entity ids quoted in a failed check's detail


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: what it saw against what it expects."""

    check: str
    passed: bool
    observed: str
    expected: str
    detail: str = ""

    @property
    def status(self) -> str:
        return PASS if self.passed else FAIL

    def line(self) -> str:
        """``PASS max_entity_size: largest 4 records (expected <= 500)``, plus the detail."""
        text = f"{self.status} {self.check}: {self.observed} (expected {self.expected})"
        return f"{text}; {self.detail}" if self.detail else text


def run_checks(store: DeltaStore, config: Config) -> list[CheckResult]:
    """Every check of ``config.quality`` on the tables of ``store`` (read-only)."""
    needed = (S.SOURCE_RECORDS, S.RESOLVED_MEMBERSHIP, S.GOLDEN_PROFILES)
    missing = [table for table in needed if not store.exists(table)]
    if missing:
        return [
            CheckResult(
                "tables_exist", False, f"missing {', '.join(missing)}", "all output tables",
                "run `idr run` first",
            )
        ]
    records = store.read(S.SOURCE_RECORDS)
    membership = store.read(S.RESOLVED_MEMBERSHIP)
    golden = store.read(S.GOLDEN_PROFILES)
    results = [
        _one_entity_per_record(records, membership),
        _no_orphans(records, membership, golden),
        _max_entity_size(membership, config.quality.max_entity_size or config.matching.max_entity_size),
    ]
    for source in config.sources:
        limit = config.quality.freshness_of(source.name)
        if limit is not None and source.timestamp is not None:
            results.append(_freshness(records, source.name, limit.total_seconds()))
    return results


def _examples(frame: DataFrame, column: str) -> str:
    return ", ".join(str(row[0]) for row in frame.select(column).orderBy(column).limit(EXAMPLES).collect())


def _one_entity_per_record(records: DataFrame, membership: DataFrame) -> CheckResult:
    keys = records.select(S.RECORD_KEY)
    without = keys.join(membership, S.RECORD_KEY, "left_anti").cache()
    several = membership.groupBy(S.RECORD_KEY).count().filter(F.col("count") > 1).cache()
    counts = (without.count(), several.count())
    detail = []
    if counts[0]:
        detail.append(f"without an entity: {_examples(without, S.RECORD_KEY)}")
    if counts[1]:
        detail.append(f"in several entities: {_examples(several, S.RECORD_KEY)}")
    without.unpersist()
    several.unpersist()
    return CheckResult(
        "one_entity_per_record",
        counts == (0, 0),
        f"{counts[0]} live record(s) without an entity, {counts[1]} in more than one",
        "0 and 0",
        "; ".join(detail),
    )


def _no_orphans(records: DataFrame, membership: DataFrame, golden: DataFrame) -> CheckResult:
    dead_members = membership.join(records.select(S.RECORD_KEY), S.RECORD_KEY, "left_anti")
    entities = membership.select(S.ENTITY_ID).distinct()
    empty_profiles = golden.select(S.ENTITY_ID).join(entities, S.ENTITY_ID, "left_anti")
    no_profile = entities.join(golden.select(S.ENTITY_ID), S.ENTITY_ID, "left_anti")
    found = [
        ("membership rows of records no longer live", dead_members, S.RECORD_KEY),
        ("golden profiles without members", empty_profiles, S.ENTITY_ID),
        ("entities without a golden profile", no_profile, S.ENTITY_ID),
    ]
    counts = [(label, frame.count(), frame, column) for label, frame, column in found]
    return CheckResult(
        "no_orphaned_records",
        all(count == 0 for _, count, _, _ in counts),
        ", ".join(f"{count} {label}" for label, count, _, _ in counts),
        "0 of each",
        "; ".join(f"{label}: {_examples(frame, column)}" for label, count, frame, column in counts if count),
    )


def _max_entity_size(membership: DataFrame, limit: int) -> CheckResult:
    sizes = membership.groupBy(S.ENTITY_ID).count()
    largest = sizes.orderBy(F.col("count").desc(), S.ENTITY_ID).first()
    size = int(largest["count"]) if largest else 0
    over = sizes.filter(F.col("count") > limit).count() if size > limit else 0
    return CheckResult(
        "max_entity_size",
        size <= limit,
        f"largest entity {size} record(s)" + (f" ({largest[S.ENTITY_ID]})" if largest else ""),
        f"<= {limit}",
        f"{over} entit{'y' if over == 1 else 'ies'} above the limit" if over else "",
    )


def _freshness(records: DataFrame, source: str, limit_seconds: float) -> CheckResult:
    newest = (
        records.filter(F.col(S.SOURCE) == source)
        .agg(
            F.max(S.SOURCE_TIMESTAMP).alias("newest"),
            (F.unix_timestamp(F.current_timestamp()) - F.unix_timestamp(F.max(S.SOURCE_TIMESTAMP))).alias("age"),
        )
        .first()
    )
    expected = f"newest record at most {_duration(limit_seconds)} old"
    if newest is None or newest["newest"] is None:
        return CheckResult(f"freshness:{source}", False, "no live record with a timestamp", expected)
    age = float(newest["age"])
    return CheckResult(
        f"freshness:{source}",
        age <= limit_seconds,
        f"newest record {newest['newest']} UTC, {_duration(age)} old",
        expected,
    )


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def write_results(spark: SparkSession, store: DeltaStore, results: list[CheckResult], *, run_id: str) -> None:
    """Append the results to ``quality_checks`` (one row per check) under ``run_id``."""
    now = datetime.now(timezone.utc)
    rows = [(run_id, r.check, r.status, r.observed, r.expected, r.detail or None, now) for r in results]
    store.create_if_missing(S.QUALITY_CHECKS, S.QUALITY_CHECKS_SCHEMA)
    store.append(S.QUALITY_CHECKS, spark.createDataFrame(rows, S.QUALITY_CHECKS_SCHEMA))


def summary_line(results: list[CheckResult]) -> str:
    """One line for schedulers: ``quality checks PASSED (5)`` or which ones failed."""
    failed = [result.check for result in results if not result.passed]
    if not failed:
        return f"quality checks PASSED ({len(results)})"
    return f"quality checks FAILED ({len(failed)} of {len(results)}): {', '.join(failed)}"
