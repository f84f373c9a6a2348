"""Data quality checks on the output tables, run after each job (``idr check``).

Each check reads the committed tables and passes or fails with what it observed, so a
scheduler can fail the job and a person can see why:

- ``one_entity_per_record``: every live source record has exactly one membership row;
- ``no_orphaned_records``: no membership row without a live record, no golden profile without
  members, no entity without a golden profile;
- ``max_entity_size``: no entity holds more records than the configured limit;
- ``conflicting_values``: few entities hold two values of an attribute one person has once
  (a birth date, a national id): the sign of over-merging that needs no truth;
- ``entity_sizes``: how entities spread over sizes, against the last check (passes always: a
  shift is for a person to read);
- ``freshness:<source>``: the newest record of a source (by its timestamp column) is recent.

Results are appended to the ``quality_checks`` table (the data quality notebook charts them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.config import Config
from resolution.rules import any_two_differ
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
    strong = strong_attributes(config)
    if strong:
        results.append(_conflicting_values(records, membership, strong, config))
    results.append(_entity_sizes(membership, _last_observed(store, ENTITY_SIZES)))
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


def strong_attributes(config: Config) -> list[str]:
    """The attributes a person has one value of: ``quality.strong_attributes``, else the
    ``cannot_link`` attributes and those the model compares as dates or codes."""
    if config.quality.strong_attributes is not None:
        return list(config.quality.strong_attributes)
    compared = [a for a, kind in config.matching.comparisons.items() if kind in ("date", "code")]
    return list(dict.fromkeys([*config.cannot_link.attributes, *compared]))


def _conflicting_values(records: DataFrame, membership: DataFrame, attributes: list[str], config: Config) -> CheckResult:
    """Entities of two or more records holding two values of a strong attribute (differing
    beyond what ``cannot_link.tolerate`` allows): over-merged people, or typos."""
    tolerate = config.cannot_link.tolerate
    joined = records.select(S.RECORD_KEY, *attributes).join(membership.select(S.RECORD_KEY, S.ENTITY_ID), S.RECORD_KEY)
    entities = joined.groupBy(S.ENTITY_ID).agg(
        F.count(F.lit(1)).alias("__records"),
        *[any_two_differ(F.collect_set(F.col(name).cast("string")), tolerate.get(name, ())).alias(name)
          for name in attributes],
    ).filter(F.col("__records") > 1)
    any_conflict = F.col(attributes[0])
    for name in attributes[1:]:
        any_conflict = any_conflict | F.col(name)
    conflicting = entities.filter(any_conflict)
    row = entities.agg(F.count(F.lit(1)).alias("multi"),
                       *[F.sum(F.col(name).cast("int")).alias(name) for name in attributes]).first()
    multi = int(row["multi"] or 0)
    found = conflicting.count()
    share = found / multi if multi else 0.0
    per_attribute = ", ".join(f"{int(row[name] or 0)} of {name}" for name in attributes)
    return CheckResult(
        "conflicting_values",
        share <= config.quality.max_conflicting_share,
        f"{found} of {multi} entities of 2+ records ({share:.1%}) hold two values ({per_attribute})",
        f"<= {config.quality.max_conflicting_share:.1%}",
        f"e.g. {_examples(conflicting, S.ENTITY_ID)}; if they are over-merged people, add the attribute to "
        "cannot_link.attributes, else tolerate its typos (cannot_link.tolerate)" if found else "",
    )


ENTITY_SIZES = "entity_sizes"
_SIZE_BUCKETS = ((1, 1), (2, 2), (3, 5), (6, 10), (11, None))
_MULTI = re.compile(r"2\+ records: [\d,]+ \(([\d.]+)%\)")


def _last_observed(store: DeltaStore, check: str) -> str | None:
    """What the last recorded run of ``check`` observed, if any."""
    if not store.exists(S.QUALITY_CHECKS):
        return None
    last = (store.read(S.QUALITY_CHECKS).filter(F.col("check_name") == check)
            .orderBy(F.desc("checked_at")).select("observed").first())
    return None if last is None else last["observed"]


def _entity_sizes(membership: DataFrame, last: str | None) -> CheckResult:
    """Entities by size, and the share of entities of 2+ records against the last check."""
    sizes = membership.groupBy(S.ENTITY_ID).count()
    counts = {row["size"]: int(row["n"]) for row in sizes.groupBy(F.col("count").alias("size"))
              .agg(F.count(F.lit(1)).alias("n")).collect()}
    total = sum(counts.values())

    def within(low: int, high: int | None) -> int:
        return sum(n for size, n in counts.items() if size >= low and (high is None or size <= high))

    buckets = ", ".join(f"{low if high == low else f'{low}-{high}' if high else f'{low}+'}: {within(low, high):,}"
                        for low, high in _SIZE_BUCKETS)
    multi = within(2, None)
    observed = f"{total:,} entities ({buckets}); 2+ records: {multi:,} ({100 * multi / total if total else 0:.1f}%)"
    before = _MULTI.search(last or "")
    detail = f"at the last check 2+ records were {before.group(1)}%" if before else "no earlier check to compare"
    return CheckResult(ENTITY_SIZES, True, observed, "a distribution to compare run by run", detail)


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
