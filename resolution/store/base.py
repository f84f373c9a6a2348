"""The Delta table store interface that every Delta backend implements.

The pipeline reads and writes its output tables only through :class:`DeltaStore`, so it never
knows whether delta-spark (JVM) or delta-rs (the ``deltalake`` package) does the work. Both
backends write the same Delta protocol tables, with the change data feed enabled.
"""

from __future__ import annotations

import logging
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, final

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, MapType, StructField, StructType

logger = logging.getLogger(__name__)

CHANGE_DATA_FEED_PROPERTY = "delta.enableChangeDataFeed"
DELETION_VECTORS_PROPERTY = "delta.enableDeletionVectors"
CHANGE_TYPE = "_change_type"
COMMIT_VERSION = "_commit_version"
COMMIT_TIMESTAMP = "_commit_timestamp"
CHANGE_COLUMNS = (CHANGE_TYPE, COMMIT_VERSION, COMMIT_TIMESTAMP)
SOURCE_ALIAS = "s"
TARGET_ALIAS = "t"

# Table names become folder names and SQL identifiers, so only plain identifiers are accepted.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

T = TypeVar("T")


class StoreError(RuntimeError):
    """A Delta table cannot be read or written as asked (missing table, wrong columns, ...)."""


class ChangeFeedUnavailableError(StoreError):
    """The change feed from the asked version is gone: the log entries were cleaned up
    (``delta.logRetentionDuration``). The caller compares snapshots instead."""


def earliest_commit_version(spark, location: str) -> int | None:
    """The oldest commit whose log entry is still in ``location``'s ``_delta_log`` (listed
    through Hadoop's file system, as the JVM backend reads it), or None when none is found."""
    jvm = spark.sparkContext._jvm
    log = jvm.org.apache.hadoop.fs.Path(location.rstrip("/") + "/_delta_log")
    fs = log.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(log):
        return None
    names = [status.getPath().getName() for status in fs.listStatus(log)]
    versions = [int(name[:20]) for name in names if len(name) == 25 and name.endswith(".json") and name[:20].isdigit()]
    return min(versions, default=None)


class ConcurrentCommitError(StoreError):
    """Another writer kept committing conflicting changes; the write was not applied."""


@dataclass(frozen=True)
class StoreLocation:
    """Where tables live: a warehouse folder (``<warehouse>/<table>``) or a catalog schema.

    ``catalog`` + ``schema`` (Unity Catalog) or ``schema`` alone (Hive metastore) name tables
    ``<catalog>.<schema>.<table>``; otherwise ``warehouse`` is a folder path or URI.
    """

    warehouse: str | None = None
    catalog: str | None = None
    schema: str | None = None

    def __post_init__(self) -> None:
        if self.catalog and not self.schema:
            raise StoreError(f"storage.catalog {self.catalog!r} needs storage.schema as well")
        if not self.warehouse and not self.schema:
            raise StoreError("storage needs a warehouse folder or a catalog schema")

    @property
    def is_catalog(self) -> bool:
        """True when tables are addressed by metastore name rather than by path."""
        return bool(self.schema)

    def table_id(self, name: str) -> str:
        """The path (warehouse) or qualified name (catalog) of table ``name``."""
        if not _TABLE_NAME.fullmatch(name):
            raise StoreError(f"invalid table name {name!r}: use letters, digits and underscores")
        if self.is_catalog:
            return ".".join(part for part in (self.catalog, self.schema, name) if part)
        return f"{str(self.warehouse).rstrip('/')}/{name}"


@dataclass(frozen=True)
class MergeMetrics:
    """Rows a MERGE inserted, updated (a non-key column changed) and deleted."""

    inserted: int
    updated: int
    deleted: int

    @property
    def total(self) -> int:
        """Rows changed in any way; 0 means the MERGE was a no-op."""
        return self.inserted + self.updated + self.deleted


@dataclass(frozen=True)
class MergePlan:
    """How a MERGE applies its source: the key columns, the data columns it writes, the
    optional delete flag column and the SQL that tells a changed row (None: all keys)."""

    keys: tuple[str, ...]
    columns: tuple[str, ...]
    delete_flag: str | None
    changed: str | None

    def clauses(self) -> list[tuple[str, str | None]]:
        """The MERGE's clauses as (``delete`` | ``update`` | ``insert``, SQL condition), in the
        order they must apply: a flagged row is deleted before it could update, a matched row
        updates only when it changed, and a flagged row is never inserted."""
        clauses: list[tuple[str, str | None]] = []
        if self.delete_flag:
            clauses.append(("delete", flag_is_set(self.delete_flag)))
        if self.changed:
            clauses.append(("update", self.changed))
        clauses.append(("insert", f"NOT {flag_is_set(self.delete_flag)}" if self.delete_flag else None))
        return clauses


class DeltaStore(ABC):
    """Read and write the pipeline's Delta tables, one backend per Delta engine.

    Every write is one Delta commit: it lands completely or not at all. A commit that conflicts
    with a concurrent writer is retried from a fresh snapshot up to ``max_commit_attempts``
    times, then fails with :class:`ConcurrentCommitError`.
    """

    name: str

    def __init__(
        self,
        spark: SparkSession,
        location: StoreLocation,
        *,
        max_commit_attempts: int = 5,
        retry_backoff_seconds: float = 0.1,
    ) -> None:
        self.spark = spark
        self.location = location
        self.max_commit_attempts = max(1, max_commit_attempts)
        self.retry_backoff_seconds = retry_backoff_seconds

    # The public flow, written once: create, schema check, empty source, retry on a conflicting
    # commit, metrics, log. Each backend fills in the ``_``-prefixed hooks below it.

    @final
    def create_if_missing(self, table: str, schema: StructType) -> None:
        """Create an empty Delta table with the change data feed on, unless it already exists."""
        if self.exists(table):
            return
        self._retry_on_conflict(table, lambda: self._create(table, schema))
        self._log_write("created", table, {"columns": schema.fieldNames()})

    @final
    def add_missing_columns(self, table: str, schema: StructType) -> list[str]:
        """Add the columns of ``schema`` an existing ``table`` lacks (nullable); return their names.

        A table written by an older release, or before the config mapped a new attribute,
        then takes this release's rows; its existing rows hold null there until rewritten.
        """
        if not self.exists(table):
            return []
        present = set(self.read(table).columns)
        missing = [field for field in schema.fields if field.name not in present]
        if missing:
            self._retry_on_conflict(table, lambda: self._add_columns(table, missing))
            self._log_write("added columns to", table, {"columns": [field.name for field in missing]})
        return [field.name for field in missing]

    @final
    def append(self, table: str, df: DataFrame) -> int:
        """Append ``df`` in one commit (creating the table from its schema if missing); return
        the rows appended."""
        return self._write(table, df, overwrite=False)

    @final
    def overwrite(self, table: str, df: DataFrame) -> None:
        """Replace the table's rows with ``df`` in one commit (creating the table if missing);
        the table keeps its schema and properties."""
        self._write(table, df, overwrite=True)

    @final
    def merge(
        self,
        table: str,
        df: DataFrame,
        *,
        keys: Sequence[str],
        delete_flag: str | None = None,
    ) -> MergeMetrics:
        """Upsert ``df`` into ``table`` by ``keys`` and return what changed.

        Unmatched source rows are inserted; a matched row is rewritten only when a non-key column
        differs (null-safe), so re-merging the same rows changes nothing. When ``delete_flag``
        names a boolean column of ``df``, matched rows flagged true are deleted and flagged rows
        are never inserted; the flag is not stored, and a flagged row needs only its keys.
        Creates the table if missing. A source with no row to apply commits nothing (the
        table's version does not move).
        """
        self.create_if_missing(table, StructType([f for f in df.schema if f.name != delete_flag]))
        table_schema = self._table_schema(table)
        columns = self._check_merge_columns(table, df, table_schema.fieldNames(), keys, delete_flag)
        plan = MergePlan(
            keys=tuple(keys),
            columns=tuple(columns),
            delete_flag=delete_flag,
            changed=changed_predicate(table_schema, keys),
        )
        source = self._merge_source(table, df, plan)
        if source is None:  # nothing to merge: no commit at all (a re-run must write nothing)
            return MergeMetrics(inserted=0, updated=0, deleted=0)
        try:
            metrics = self._retry_on_conflict(table, lambda: self._commit_merge(table, source, plan))
        finally:
            self._release(source)
        self._log_write("merged", table, metrics)
        return metrics

    @final
    def delete_where(self, table: str, condition: str) -> int:
        """Delete the rows matching SQL predicate ``condition``; return rows deleted."""
        deleted = self._retry_on_conflict(table, lambda: self._commit_delete(table, condition))
        self._log_write("deleted from", table, {"rows": deleted, "condition": condition})
        return deleted

    def _write(self, table: str, df: DataFrame, *, overwrite: bool) -> int:
        self.create_if_missing(table, df.schema)
        table_schema = self._table_schema(table)
        self._check_columns(table, df.columns, table_schema.fieldNames())
        source = self._write_source(table, df, table_schema)
        rows = self._retry_on_conflict(table, lambda: self._commit_write(table, source, overwrite=overwrite))
        self._log_write("overwrote" if overwrite else "appended", table, {"rows": rows})
        return rows

    # Reads: each backend's own.

    @abstractmethod
    def exists(self, table: str) -> bool:
        """True when ``table`` is a Delta table."""

    @abstractmethod
    def read(self, table: str) -> DataFrame:
        """The current snapshot, with the table's columns and types (empty if it has no rows)."""

    @abstractmethod
    def read_location(self, location: str) -> DataFrame:
        """Read a Delta table outside this store (a source): a folder path or a catalog name."""

    @abstractmethod
    def read_location_changes(self, location: str, *, starting_version: int) -> DataFrame:
        """The change data feed of a Delta source from ``starting_version`` (empty past the end)."""

    @abstractmethod
    def read_location_change_stream(
        self, location: str, *, starting_version: int, max_versions_per_trigger: int | None = None
    ) -> DataFrame:
        """A streaming DataFrame of a Delta source's change feed from ``starting_version``.

        Columns: the source's plus ``_change_type``, ``_commit_version``, ``_commit_timestamp``.
        Supports ``Trigger.AvailableNow``; a restarted query resumes from its checkpoint.
        """

    @abstractmethod
    def location_version(self, location: str) -> int | None:
        """The latest version of a Delta table outside this store (recorded per run)."""

    @abstractmethod
    def version(self, table: str) -> int | None:
        """The latest committed version, or None when the table does not exist."""

    @abstractmethod
    def read_changes(
        self, table: str, *, starting_version: int, ending_version: int | None = None
    ) -> DataFrame:
        """Change data feed rows between two versions (inclusive).

        The table's columns plus ``_change_type`` (insert, update_preimage, update_postimage,
        delete), ``_commit_version`` and ``_commit_timestamp``. A starting version past the
        latest one gives an empty DataFrame, so "changes since my last run" needs no special case.
        """

    # Write hooks. A ``_commit_*`` hook is one commit attempt from a fresh snapshot: the flow
    # reruns it when it raises one of ``_conflicts``.

    _conflicts: tuple[type[BaseException], ...] = ()

    @abstractmethod
    def _table_schema(self, table: str) -> StructType:
        """The existing table's Spark schema (declared nullability where the engine keeps it)."""

    @abstractmethod
    def _create(self, table: str, schema: StructType) -> None:
        """Create the empty table with the change data feed on (a no-op if it appeared meanwhile)."""

    @abstractmethod
    def _add_columns(self, table: str, fields: list[StructField]) -> None:
        """Add nullable columns ``fields`` to ``table`` in one commit."""

    @abstractmethod
    def _write_source(self, table: str, df: DataFrame, schema: StructType) -> Any:
        """``df`` ready to append to or overwrite the table (columns already checked)."""

    @abstractmethod
    def _commit_write(self, table: str, source: Any, *, overwrite: bool) -> int:
        """Append (or overwrite with) ``source`` in one commit; return the rows written."""

    @abstractmethod
    def _merge_source(self, table: str, df: DataFrame, plan: MergePlan) -> Any | None:
        """``df`` ready to MERGE, or None when no row of it would change the table."""

    @abstractmethod
    def _commit_merge(self, table: str, source: Any, plan: MergePlan) -> MergeMetrics:
        """MERGE ``source`` by ``plan`` in one commit and return its metrics."""

    @abstractmethod
    def _release(self, source: Any) -> None:
        """Free what :meth:`_merge_source` held (a cached DataFrame), after the commit."""

    @abstractmethod
    def _commit_delete(self, table: str, condition: str) -> int:
        """Delete the rows matching ``condition`` in one commit; return rows deleted."""

    # Shared helpers for the backends.

    def _check_merge_columns(
        self,
        table: str,
        df: DataFrame,
        table_columns: Sequence[str],
        keys: Sequence[str],
        delete_flag: str | None,
    ) -> list[str]:
        """Fail clearly before a MERGE whose source does not fit the table; return data columns."""
        if not keys:
            raise StoreError(f"merge into {table} needs at least one key column")
        if delete_flag is not None:
            flag_field = next((f for f in df.schema.fields if f.name == delete_flag), None)
            if flag_field is None or not isinstance(flag_field.dataType, BooleanType):
                raise StoreError(
                    f"merge into {table}: delete flag {delete_flag!r} must be a boolean column "
                    f"of the source (source columns: {', '.join(df.columns)})"
                )
        source_columns = [c for c in df.columns if c != delete_flag]
        self._check_columns(table, source_columns, table_columns)
        missing_keys = [k for k in keys if k not in table_columns]
        if missing_keys:
            raise StoreError(f"merge into {table}: key columns not in the table: {missing_keys}")
        return source_columns

    @staticmethod
    def _check_columns(table: str, columns: Sequence[str], table_columns: Sequence[str]) -> None:
        """Raise StoreError naming the columns ``columns`` lacks or adds compared to the table."""
        missing = [c for c in table_columns if c not in columns]
        extra = [c for c in columns if c not in table_columns]
        if missing or extra:
            raise StoreError(
                f"columns do not match table {table}: missing {missing or 'none'}, "
                f"extra {extra or 'none'}"
            )

    def _retry_on_conflict(self, table: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` (which must start from a fresh snapshot) until it commits.

        A conflicting commit leaves nothing behind in the Delta log, so rerunning the whole
        operation is safe; jittered backoff keeps racing writers from colliding in lockstep.
        """
        for number in range(1, self.max_commit_attempts + 1):
            try:
                return attempt()
            except self._conflicts as error:
                if number == self.max_commit_attempts:
                    raise ConcurrentCommitError(
                        f"{self.name}: gave up writing table {table} after {number} attempts "
                        f"because concurrent writers kept committing conflicting changes: {error}"
                    ) from error
                delay = self.retry_backoff_seconds * 2 ** (number - 1) * random.uniform(0.5, 1.5)
                logger.warning(
                    "%s: commit to %s conflicted (attempt %d of %d), retrying in %.2fs: %s",
                    self.name,
                    table,
                    number,
                    self.max_commit_attempts,
                    delay,
                    error,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # the loop either returns or raises

    def _log_write(self, operation: str, table: str, metrics: object) -> None:
        logger.info("%s %s %s: %s", self.name, operation, table, metrics)


def changed_predicate(
    schema: StructType,
    keys: Sequence[str],
    *,
    source: str = SOURCE_ALIAS,
    target: str = TARGET_ALIAS,
) -> str | None:
    """SQL that is true when any non-key column differs, null-safely; None if all are keys.

    Written to parse in both Spark SQL and DataFusion (delta-rs). Maps are compared as their
    key-sorted entries: Spark cannot compare maps at all and DataFusion compares them in
    entry order, which would call a reordered but equal map a change.
    """
    terms = []
    for field in schema.fields:
        if field.name in keys:
            continue
        left, right = f"{target}.`{field.name}`", f"{source}.`{field.name}`"
        if isinstance(field.dataType, MapType):
            left, right = (f"array_sort(map_entries({side}))" for side in (left, right))
        terms.append(f"NOT ({left} <=> {right})")
    return " OR ".join(terms) or None


def rows_that_change(
    source: DataFrame,
    target: DataFrame,
    keys: Sequence[str],
    changed: str | None,
    delete_flag: str | None,
) -> DataFrame:
    """The rows of a MERGE source that insert, update or delete a row of ``target``.

    ``changed`` is :func:`changed_predicate` of the table (None when every column is a key). A
    source row whose key matches no target row inserts unless flagged; a matched one deletes
    when flagged and updates when ``changed`` holds; any other row would change nothing.
    """
    matched = "_idr_matched"
    joined = source.alias(SOURCE_ALIAS).join(
        target.withColumn(matched, F.lit(True)).alias(TARGET_ALIAS),
        F.expr(key_predicate(keys)),
        "left",
    )
    is_matched = F.col(f"{TARGET_ALIAS}.{matched}").isNotNull()
    flag = F.expr(flag_is_set(delete_flag)) if delete_flag else F.lit(False)
    differs = F.expr(changed) if changed else F.lit(False)
    keep = (~is_matched & ~flag) | (is_matched & (flag | differs))
    return joined.where(keep).select(*[F.col(f"{SOURCE_ALIAS}.`{c}`") for c in source.columns])


def key_predicate(
    keys: Sequence[str], *, source: str = SOURCE_ALIAS, target: str = TARGET_ALIAS
) -> str:
    """SQL join condition of a MERGE on ``keys`` (plain equality: null keys never match)."""
    return " AND ".join(f"{target}.`{k}` = {source}.`{k}`" for k in keys)


def flag_is_set(delete_flag: str, *, source: str = SOURCE_ALIAS) -> str:
    """SQL that is true when the source row's delete flag is true (a null flag means keep)."""
    return f"coalesce({source}.`{delete_flag}`, false)"
