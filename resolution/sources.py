"""Read source systems and split their rows into accepted current records and rejected rows.

Reading is the only side effect here (one module reads sources, STYLE.md 4). Validation is a
pure transform: every input row either becomes part of a current record, is superseded by a
later audit event of the same key, or lands in ``rejected_records`` with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, TimestampNTZType, TimestampType

from resolution.config import Config, ConfigError, SourceConfig
from resolution.rules import joined_parts, parse_timestamp
from resolution.schemas import (
    RECORD_KEY,
    ROW_HASH,
    SOURCE,
    SOURCE_ID,
    SOURCE_PRIORITY,
    SOURCE_TIMESTAMP,
)
from resolution.store.base import ChangeFeedUnavailableError

if TYPE_CHECKING:
    from resolution.store import DeltaStore

logger = logging.getLogger(__name__)

RAW_ROW = "raw_row"
REASON = "reason"
SOURCE_KEY = "source_key"
OPERATIONS = ("INSERT", "UPDATE", "DELETE")
CHANGE = "change"
UPSERT, DELETE, REJECT = "upsert", "delete", "reject"


@dataclass(frozen=True)
class IngestedSource:
    """A source's current records (raw attribute values) and its rejected rows."""

    name: str
    records: DataFrame
    rejected: DataFrame
    version: str | None


@dataclass(frozen=True)
class SourceChanges:
    """What changed in one source since the last committed run, as one frame.

    ``changes`` has one row per upserted record (``change`` = ``upsert``: record columns and
    ``row_hash``), per deleted record (``delete``: ``record_key``) and per rejected input row
    (``reject``: ``source_id`` if any, ``reason``, ``raw_row``), so a run reads each source
    once and materializes the whole capture in one step. ``complete``: True when the whole
    source was read, so its rejections are its full set.
    """

    name: str
    changes: DataFrame
    version: str | None
    complete: bool


def read_source(spark: SparkSession, source: SourceConfig, *, store: DeltaStore) -> DataFrame:
    """Read a source's rows as they are (Delta via the active store backend, files, or tables)."""
    if source.format == "delta":
        return store.read_location(source.location)
    if source.format == "table":
        return spark.table(source.location)
    reader = spark.read.options(**source.options)
    if source.format == "csv":
        # every column as a string: parsing is ours, so a bad value is a counted issue, not a crash
        return reader.option("header", "true").option("inferSchema", "false").csv(source.location)
    return reader.parquet(source.location)


def read_truth(spark: SparkSession, location: str, *, store: DeltaStore) -> DataFrame:
    """Read a ground-truth table for evaluation: a CSV file or folder (``*.csv``), a Delta
    table folder, a Parquet file or folder, or a metastore table name (``schema.table``)."""
    path = Path(location)
    if path.suffix.lower() == ".csv" or (path.is_dir() and any(path.glob("*.csv"))):
        return spark.read.option("header", "true").csv(location)
    if (path / "_delta_log").is_dir():
        return store.read_location(location)
    if path.exists() or "/" in location or ":" in location:
        return spark.read.parquet(location)
    return spark.table(location)


def source_version(source: SourceConfig, *, store: DeltaStore) -> str | None:
    """The Delta version of a Delta source (recorded in ``runs``), else None."""
    if source.format == "delta":
        version = store.location_version(source.location)
        return None if version is None else str(version)
    return None


def check_source_columns(raw: DataFrame, source: SourceConfig, *, config_file: str) -> None:
    """Fail with a ConfigError naming the key whose column the source does not have."""
    available = set(raw.columns)
    needed = [("key", source.key), ("timestamp", source.timestamp)]
    needed += [(f"columns.{attribute}", column) for attribute in source.columns for column in source.columns_of(attribute)]
    needed += [
        ("operation_column", source.operation_column),
        ("operation_time_column", source.operation_time_column),
    ]
    for key, column in needed:
        if column is not None and column not in available:
            raise ConfigError(
                config_file,
                f"sources[{source.name}].{key}",
                f"column {column!r} not found in {source.location} "
                f"(columns: {', '.join(sorted(available))})",
            )


def validate_rows(raw: DataFrame, source: SourceConfig, *, attributes: list[str]) -> IngestedSource:
    """Split raw rows into current records and rejected rows (with the reason for each).

    Rejected: a missing key, a key appearing more than once in a snapshot, an unparseable
    timestamp, an audit event with an unknown operation or no operation time. For audit sources
    the latest event per key wins and a DELETE removes the key.
    """
    checked = _prepared_rows(raw, source, attributes=attributes).withColumn(REASON, _rejection_reason(source))
    valid = checked.filter(F.col(REASON).isNull())
    current = _latest_audit_state(valid) if source.change_tracking == "audit" else valid
    rejected = checked.filter(F.col(REASON).isNotNull())
    records = current.select(
        F.lit(source.name).alias(SOURCE),
        SOURCE_ID,
        F.lit(source.priority).cast("int").alias(SOURCE_PRIORITY),
        SOURCE_TIMESTAMP,
        *attributes,
        # what change capture compares: the mapped raw values, before standardization
        F.sha2(
            F.to_json(F.struct(F.lit(source.priority), SOURCE_TIMESTAMP, *attributes)), 256
        ).alias(ROW_HASH),
    )
    return IngestedSource(
        name=source.name,
        records=records,
        rejected=rejected.select(
            F.lit(source.name).alias(SOURCE),
            F.col(SOURCE_ID).alias(SOURCE_KEY),
            REASON,
            RAW_ROW,
        ),
        version=None,
    )


def _prepared_rows(raw: DataFrame, source: SourceConfig, *, attributes: list[str]) -> DataFrame:
    """The trimmed key, parsed timestamp (and its raw text), mapped attributes as text, the
    audit operation columns and the raw row as JSON: what the checks and the records read."""
    raw_row = F.to_json(F.struct(*[F.col(f"`{c}`") for c in raw.columns]))
    key = F.trim(F.col(source.key).cast("string"))
    timestamp = (
        _timestamp_of(raw, source.timestamp, source.date_formats)
        if source.timestamp
        else F.lit(None).cast("timestamp")
    )
    raw_timestamp = (
        F.col(source.timestamp).cast("string") if source.timestamp else F.lit(None).cast("string")
    )
    return raw.select(
        F.when(key != "", key).alias(SOURCE_ID),
        timestamp.alias(SOURCE_TIMESTAMP),
        raw_timestamp.alias("__raw_timestamp"),
        *[
            (
                joined_parts([F.col(f"`{c}`") for c in source.columns_of(attribute)])
                if attribute in source.columns
                else F.lit(None).cast("string")
            ).alias(attribute)
            for attribute in attributes
        ],
        *_operation_columns(source),
        raw_row.alias(RAW_ROW),
    )


def _rejection_reason(source: SourceConfig) -> Column:
    """The first failed check of a prepared row as text; null when it passes them all."""
    checks = _row_checks(source)
    if source.change_tracking == "audit":
        checks += _audit_checks(source)
    condition, message = checks[0]
    reason = F.when(condition, message)
    for condition, message in checks[1:]:
        reason = reason.when(condition, message)
    if source.change_tracking != "audit":
        reason = reason.when(*_duplicate_key_check(reason, source))
    return reason


def _row_checks(source: SourceConfig) -> list[tuple[Column, Column]]:
    """(failed, reason) of every source: the key is present, the timestamp parses."""
    return [
        (F.col(SOURCE_ID).isNull(), F.lit(f"missing key: column {source.key!r} is empty")),
        (
            F.col("__raw_timestamp").isNotNull() & F.col(SOURCE_TIMESTAMP).isNull(),
            F.concat(
                F.lit(f"unparseable date in column {source.timestamp!r}: '"),
                F.col("__raw_timestamp"),
                F.lit("'"),
            ),
        ),
    ]


def _audit_checks(source: SourceConfig) -> list[tuple[Column, Column]]:
    """(failed, reason) of an audit event: a known operation and an operation time."""
    return [
        (
            ~F.col("__operation").isin(*OPERATIONS),
            F.concat(
                F.lit(f"unknown operation in column {source.operation_column!r}: '"),
                F.coalesce(F.col("__operation"), F.lit("null")),
                F.lit(f"' (expected {', '.join(OPERATIONS)})"),
            ),
        ),
        (
            F.col("__operation_time").isNull(),
            F.lit(f"missing or unparseable operation time in {source.operation_time_column!r}"),
        ),
    ]


def _duplicate_key_check(reason: Column, source: SourceConfig) -> tuple[Column, Column]:
    """(failed, reason) of a key held by more than one row that passes ``reason``'s checks.

    All copies are rejected. Counted over the same pass as the other checks, so the source is
    read once.
    """
    copies = F.count(F.when(reason.isNull(), F.lit(1))).over(Window.partitionBy(SOURCE_ID))
    return (
        copies > 1,
        F.concat(
            F.lit("duplicate key '"),
            F.col(SOURCE_ID),
            F.lit("' appears "),
            copies.cast("string"),
            F.lit(f" times in source {source.name!r}; all copies rejected"),
        ),
    )


def _operation_columns(source: SourceConfig) -> list:
    if source.change_tracking != "audit":
        return []
    return [
        F.upper(F.trim(F.col(source.operation_column).cast("string"))).alias("__operation"),
        parse_timestamp(F.col(source.operation_time_column), source.date_formats).alias(
            "__operation_time"
        ),
    ]


def _timestamp_of(raw: DataFrame, column: str, formats) -> Column:
    """A source's timestamp column: a timestamp or date as it is; text parsed with the formats."""
    if isinstance(raw.schema[column].dataType, TimestampType | TimestampNTZType | DateType):
        return F.col(column).cast("timestamp")
    return parse_timestamp(F.col(column), formats)


def _latest_audit_state(events: DataFrame) -> DataFrame:
    """Latest event per key wins; at the same instant DELETE beats UPDATE beats INSERT.

    The raw row breaks any remaining tie, so duplicate events are harmless and the outcome
    never depends on the order rows arrive in.
    """
    order = Window.partitionBy(SOURCE_ID).orderBy(
        F.col("__operation_time").desc(),
        F.array_position(F.array(*[F.lit(op) for op in OPERATIONS]), F.col("__operation")).desc(),
        F.col(RAW_ROW).desc(),
    )
    latest = events.withColumn("__event_rank", F.row_number().over(order))
    return latest.filter((F.col("__event_rank") == 1) & (F.col("__operation") != "DELETE"))


def _record_key(source_id: Column, source: SourceConfig) -> Column:
    return F.concat_ws(":", F.lit(source.name), source_id)


def _upserts(records: DataFrame, source: SourceConfig) -> DataFrame:
    return records.withColumn(RECORD_KEY, _record_key(F.col(SOURCE_ID), source)).withColumn(
        CHANGE, F.lit(UPSERT)
    )


def _deletes(record_keys: DataFrame, source: SourceConfig) -> DataFrame:
    return record_keys.select(RECORD_KEY, F.lit(source.name).alias(SOURCE), F.lit(DELETE).alias(CHANGE))


def _rejects(rejected: DataFrame) -> DataFrame:
    return rejected.select(
        SOURCE, F.col(SOURCE_KEY).alias(SOURCE_ID), REASON, RAW_ROW, F.lit(REJECT).alias(CHANGE)
    )


def _change_frame(upserts: DataFrame, deletes: DataFrame, rejects: DataFrame) -> DataFrame:
    """Upserts, deletes and rejections of one source as one frame with a ``change`` column."""
    return upserts.unionByName(deletes, allowMissingColumns=True).unionByName(
        rejects, allowMissingColumns=True
    )


def diff_snapshot(
    current: IngestedSource, previous: DataFrame, source: SourceConfig, *, full: bool = False
) -> DataFrame:
    """Compare a source's current state with its last ingested state (row hash per key).

    ``previous`` has ``record_key, row_hash`` of this source's committed records. Returns the
    change frame (see :class:`SourceChanges`): new or changed records, vanished keys and the
    rejected rows. With ``full``, every current record counts as changed.
    """
    keyed = current.records.withColumn(RECORD_KEY, _record_key(F.col(SOURCE_ID), source))
    before = previous.select(RECORD_KEY, F.col(ROW_HASH).alias("__previous_hash"))
    compared = keyed.join(before, RECORD_KEY, "full")
    is_upsert = F.col(SOURCE_ID).isNotNull() & (
        F.lit(full)
        | F.col("__previous_hash").isNull()
        | (F.col("__previous_hash") != F.col(ROW_HASH))
    )
    upserts = compared.filter(is_upsert).select(*current.records.columns).transform(
        lambda records: _upserts(records, source)
    )
    deletes = compared.filter(F.col(SOURCE_ID).isNull()).transform(lambda keys: _deletes(keys, source))
    return _change_frame(upserts, deletes, _rejects(current.rejected))


def reduce_change_feed(
    feed: DataFrame, source: SourceConfig, *, after_version: int, attributes: list[str]
) -> DataFrame:
    """Changes of a Delta source after ``after_version``: the latest change per key wins.

    ``feed`` has the source's columns plus Delta's ``_change_type`` and ``_commit_version``
    (a ``load_cdf`` read or a streamed micro-batch). Returns the change frame.
    """
    feed = feed.filter(
        (F.col("_change_type") != "update_preimage") & (F.col("_commit_version") > after_version)
    )
    key = F.trim(F.col(source.key).cast("string"))
    latest = feed.withColumn(
        "__rank",
        F.row_number().over(
            Window.partitionBy(key).orderBy(
                F.col("_commit_version").desc(), (F.col("_change_type") == "delete").asc()
            )
        ),
    ).filter(F.col("__rank") == 1)
    source_columns = [c for c in feed.columns if not c.startswith("_change") and not c.startswith("_commit")]
    upserted = validate_rows(
        latest.filter(F.col("_change_type") != "delete").select(*[F.col(f"`{c}`") for c in source_columns]),
        source,
        attributes=attributes,
    )
    deleted = latest.filter((F.col("_change_type") == "delete") & key.isNotNull()).select(
        _record_key(key, source).alias(RECORD_KEY)
    )
    return _change_frame(
        _upserts(upserted.records, source), _deletes(deleted, source), _rejects(upserted.rejected)
    )


def capture_changes(
    spark: SparkSession,
    config: Config,
    *,
    store: DeltaStore,
    previous: DataFrame,
    versions: dict[str, str],
    full: bool,
    feeds: dict[str, DataFrame] | None = None,
) -> list[SourceChanges]:
    """Per source, what changed since the last committed run.

    ``previous``: ``source, record_key, row_hash`` of the committed ``source_records``;
    ``versions``: the Delta versions read by that run. A ``delta_cdf`` source with a recorded
    version reads only its change feed; every other source is read whole and compared with
    ``previous`` (``snapshot``; ``audit`` first reduces events to the latest state per key).
    With ``full``, change feeds are not used and every current record counts as changed.

    ``feeds`` (streaming): new rows per source name, from a micro-batch; only those sources
    are captured. A ``delta_cdf`` feed holds change-feed rows; an ``audit`` feed holds new
    events, and the keys it names are re-resolved from the whole audit table, so late and
    duplicate events are handled exactly as in a batch run.
    """
    captured = []
    for source in config.sources:
        own_previous = previous.filter(F.col(SOURCE) == source.name)
        last = versions.get(source.name)
        if feeds is not None:
            if source.name in feeds:
                captured.append(
                    _capture_feed(spark, config, source, feeds[source.name], store=store,
                                  previous=own_previous, last=last)
                )
            continue
        version = source_version(source, store=store)
        if source.change_tracking == "delta_cdf" and not full and last is not None:
            try:
                feed = store.read_location_changes(source.location, starting_version=int(last) + 1)
            except ChangeFeedUnavailableError as gone:  # the same changes, from the whole source
                logger.warning("source %s: %s; comparing the whole source with the last run instead",
                               source.name, gone)
            else:
                changes = reduce_change_feed(feed, source, after_version=int(last), attributes=config.attributes)
                captured.append(SourceChanges(source.name, changes, version, False))
                continue
        raw = read_source(spark, source, store=store)
        check_source_columns(raw, source, config_file=config.path)
        current = validate_rows(raw, source, attributes=config.attributes)
        changes = diff_snapshot(current, own_previous, source, full=full)
        captured.append(SourceChanges(source.name, changes, version, True))
    return captured


def _capture_feed(
    spark: SparkSession,
    config: Config,
    source: SourceConfig,
    feed: DataFrame,
    *,
    store: DeltaStore,
    previous: DataFrame,
    last: str | None,
) -> SourceChanges:
    """The changes a streamed micro-batch of ``source`` brings (see :func:`capture_changes`)."""
    if source.change_tracking == "delta_cdf":
        after = int(last) if last is not None else -1
        newest = feed.agg(F.max("_commit_version")).first()[0]
        version = str(max(after, newest)) if newest is not None else last
        changes = reduce_change_feed(feed, source, after_version=after, attributes=config.attributes)
        return SourceChanges(source.name, changes, version, False)
    if source.change_tracking != "audit":
        raise ConfigError(
            config.path,
            f"sources[{source.name}].change_tracking",
            "a streamed source must be 'audit' or 'delta_cdf' (a snapshot has no change events)",
        )
    check_source_columns(feed, source, config_file=config.path)
    fed = validate_rows(feed, source, attributes=config.attributes)
    key = F.trim(F.col(source.key).cast("string"))
    keys = feed.select(key.alias("__key")).filter(F.col("__key").isNotNull() & (F.col("__key") != "")).distinct()
    raw = read_source(spark, source, store=store)
    check_source_columns(raw, source, config_file=config.path)
    events = raw.join(keys, key == F.col("__key"), "left_semi")
    resolved = validate_rows(events, source, attributes=config.attributes)
    # Only the fed keys are compared: every other committed record is untouched.
    before = previous.join(
        keys.select(_record_key(F.col("__key"), source).alias(RECORD_KEY)), RECORD_KEY, "left_semi"
    )
    current = IngestedSource(source.name, resolved.records, fed.rejected, None)
    return SourceChanges(source.name, diff_snapshot(current, before, source), source_version(source, store=store), False)


def ingest_sources(
    spark: SparkSession, config: Config, *, store: DeltaStore
) -> list[IngestedSource]:
    """Read and validate every configured source (full state, for training)."""
    ingested = []
    for source in config.sources:
        raw = read_source(spark, source, store=store)
        check_source_columns(raw, source, config_file=config.path)
        result = validate_rows(raw, source, attributes=config.attributes)
        ingested.append(
            IngestedSource(
                name=result.name,
                records=result.records,
                rejected=result.rejected,
                version=source_version(source, store=store),
            )
        )
    return ingested
