"""Delta tables through delta-rs (the ``deltalake`` package): the embedded default.

No JVM jar is needed: DataFrames cross to delta-rs as Arrow (collected on the driver, which
suits the local warehouse this backend serves), and Spark reads a table's current snapshot
straight from the Parquet files the Delta log lists. Only warehouse (path) tables are
supported; catalog tables need the delta-spark backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, Field, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxFiles,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import StructField, StructType

from resolution.store.base import (
    CHANGE_COLUMNS,
    CHANGE_DATA_FEED_PROPERTY,
    SOURCE_ALIAS,
    TARGET_ALIAS,
    ChangeFeedUnavailableError,
    DeltaStore,
    MergeMetrics,
    MergePlan,
    StoreError,
    StoreLocation,
    key_predicate,
)

_TABLE_CONFIGURATION = {CHANGE_DATA_FEED_PROPERTY: "true"}
# delta-rs returns the change columns as string_view / uint64 / naive ms timestamps: pin them
# to the types delta-spark gives, so both backends' change feeds have one schema.
_CHANGE_FIELDS = [
    pa.field(CHANGE_COLUMNS[0], pa.string()),
    pa.field(CHANGE_COLUMNS[1], pa.int64()),
    pa.field(CHANGE_COLUMNS[2], pa.timestamp("us", tz="UTC")),
]
# Parquet files alone cannot express these; reading them file by file would return wrong rows.
_UNSUPPORTED_READER_FEATURES = ("deletionVectors", "columnMapping")


def arrow_schema_for(schema: StructType) -> pa.Schema:
    """The Arrow schema delta-rs should store for a Spark schema (timestamps as UTC micros)."""
    return to_arrow_schema(schema, timezone="UTC")


def spark_schema_for(schema: pa.Schema) -> StructType:
    """The Spark schema of a table whose Delta schema converts to Arrow ``schema``."""
    return from_arrow_schema(schema, prefer_timestamp_ntz=True)


def _check_features(dt: DeltaTable, table: str) -> None:
    """Refuse a table whose rows this backend would get wrong, before reading or writing it.

    delta-rs 1.6 refuses to read deletion vectors but still appends to and MERGEs into such a
    table, rewriting files without the vectors: rows deleted by them would come back.
    """
    reader_features = dt.protocol().reader_features or []
    unsupported = [f for f in _UNSUPPORTED_READER_FEATURES if f in reader_features]
    if dt.metadata().configuration.get("delta.columnMapping.mode", "none") != "none":
        unsupported.append("columnMapping")
    if unsupported:
        raise StoreError(
            f"table {table} uses Delta features the deltalake (embedded) backend cannot read or "
            f"write correctly: {', '.join(dict.fromkeys(unsupported))}. Continue it with "
            "storage.backend: jvm; a warehouse meant for both backends is written by delta-spark "
            "with storage.deletion_vectors: false"
        )


class DeltaLakeStore(DeltaStore):
    """Delta tables under a warehouse folder, written by delta-rs and read by Spark."""

    name = "deltalake"
    _conflicts = (CommitFailedError,)

    def __init__(self, spark: SparkSession, location: StoreLocation, **options: Any) -> None:
        if location.is_catalog:
            raise StoreError(
                "the deltalake (delta-rs) backend writes tables by path only; catalog tables "
                f"({location.table_id('example')}) need the delta-spark backend: put Delta's JVM "
                "package on the classpath or set storage.warehouse instead"
            )
        super().__init__(spark, location, **options)

    def exists(self, table: str) -> bool:
        """True when the table's folder holds a Delta log."""
        return DeltaTable.is_deltatable(self.location.table_id(table))

    def _table_schema(self, table: str) -> StructType:
        return self._spark_schema(self._writable(table))

    def _create(self, table: str, schema: StructType) -> None:
        uri = self.location.table_id(table)
        DeltaTable.create(uri, arrow_schema_for(schema), mode="ignore", configuration=_TABLE_CONFIGURATION)

    def _add_columns(self, table: str, fields: list[StructField]) -> None:
        arrow = arrow_schema_for(StructType([StructField(f.name, f.dataType, True) for f in fields]))
        self._writable(table).alter.add_columns([Field.from_arrow(field) for field in arrow])

    def read(self, table: str) -> DataFrame:
        """Read the current snapshot's Parquet files with the table's Spark schema.

        Spark's file reader reports every column nullable, whatever the table declares.
        """
        return self._read_snapshot(self._open(table), table)

    def read_location(self, location: str) -> DataFrame:
        return self._read_snapshot(self._open_location(location), location)

    def location_version(self, location: str) -> int | None:
        return self._open_location(location).version()

    def _open_location(self, location: str) -> DeltaTable:
        if "/" not in location and ":" not in location:
            raise StoreError(
                f"Delta source {location!r} looks like a catalog table name: the deltalake backend "
                "reads Delta sources by path; use the delta-spark backend for catalog tables"
            )
        try:
            return DeltaTable(location)
        except DeltaError as error:
            raise StoreError(f"Delta source {location} cannot be opened: {error}") from error

    def _read_snapshot(self, dt: DeltaTable, table: str) -> DataFrame:
        _check_features(dt, table)
        schema = self._spark_schema(dt)
        files = dt.file_uris()
        if not files:
            return self.spark.createDataFrame([], schema)
        reader = self.spark.read.schema(schema)
        if dt.metadata().partition_columns:
            # Partition values live in the folder names, which Spark parses below basePath.
            reader = reader.option("basePath", dt.table_uri)
        return reader.parquet(*files)

    def version(self, table: str) -> int | None:
        """The latest committed version, or None when the table does not exist."""
        return self._open(table).version() if self.exists(table) else None

    def _write_source(self, table: str, df: DataFrame, schema: StructType) -> pa.Table:
        return self._to_arrow(table, df, self._arrow_schema(self._writable(table)))

    def _commit_write(self, table: str, source: pa.Table, *, overwrite: bool) -> int:
        write_deltalake(self._writable(table), source, mode="overwrite" if overwrite else "append")
        return source.num_rows

    def _merge_source(self, table: str, df: DataFrame, plan: MergePlan) -> pa.Table | None:
        table_schema = self._arrow_schema(self._writable(table))
        flag_fields = [pa.field(plan.delete_flag, pa.bool_())] if plan.delete_flag else []
        # Every source column nullable: a row flagged for deletion carries only its keys.
        source_fields = [field.with_nullable(True) for field in table_schema]
        source = self._to_arrow(table, df, pa.schema([*source_fields, *flag_fields]))
        return source if source.num_rows else None

    def _commit_merge(self, table: str, source: pa.Table, plan: MergePlan) -> MergeMetrics:
        except_cols = [plan.delete_flag] if plan.delete_flag else None
        merger = self._writable(table).merge(
            source, key_predicate(plan.keys), source_alias=SOURCE_ALIAS, target_alias=TARGET_ALIAS
        )
        for kind, condition in plan.clauses():
            if kind == "delete":
                merger = merger.when_matched_delete(condition)
            elif kind == "update":
                merger = merger.when_matched_update_all(predicate=condition, except_cols=except_cols)
            else:
                merger = merger.when_not_matched_insert_all(predicate=condition, except_cols=except_cols)
        try:
            raw = merger.execute()
        except CommitFailedError:
            raise
        except DeltaError as error:  # e.g. two source rows matching one target row
            raise StoreError(f"merge into {table} failed: {error}") from error
        return MergeMetrics(
            inserted=int(raw.get("num_target_rows_inserted", 0)),
            updated=int(raw.get("num_target_rows_updated", 0)),
            deleted=int(raw.get("num_target_rows_deleted", 0)),
        )

    def _release(self, source: pa.Table) -> None:
        """The Arrow table is freed with its last reference: nothing to do."""

    def _commit_delete(self, table: str, condition: str) -> int:
        dt = self._writable(table)
        before = dt.count()
        try:
            raw = dt.delete(condition)
        except CommitFailedError:
            raise
        except DeltaError as error:  # e.g. a predicate DataFusion cannot parse
            raise StoreError(f"delete from {table} where {condition} failed: {error}") from error
        # delta-rs omits the count when whole files are dropped without being scanned.
        if "num_deleted_rows" in raw:
            return int(raw["num_deleted_rows"])
        return before - DeltaTable(dt.table_uri).count()

    def read_changes(
        self, table: str, *, starting_version: int, ending_version: int | None = None
    ) -> DataFrame:
        """The change data feed via delta-rs ``load_cdf``, collected through Arrow."""
        return self._changes(self._open(table), starting_version, ending_version)

    def read_location_changes(self, location: str, *, starting_version: int) -> DataFrame:
        return self._changes(self._open_location(location), starting_version, None)

    def _changes(
        self, dt: DeltaTable, starting_version: int, ending_version: int | None
    ) -> DataFrame:
        _check_features(dt, dt.table_uri)
        table_schema = self._arrow_schema(dt)
        schema = pa.schema([*table_schema, *_CHANGE_FIELDS])
        if starting_version > dt.version():
            changes = schema.empty_table()
        else:
            try:
                reader = dt.load_cdf(starting_version=starting_version, ending_version=ending_version)
            except DeltaError as error:
                if "Invalid table version" not in str(error):
                    raise
                raise ChangeFeedUnavailableError(
                    f"{dt.table_uri}: the change feed from version {starting_version} is gone "
                    f"(delta.logRetentionDuration): {error}"
                ) from error
            changes = pa.table(reader).select(schema.names).cast(schema)
        return self.spark.createDataFrame(changes, schema=spark_schema_for(schema))

    def read_location_change_stream(
        self, location: str, *, starting_version: int, max_versions_per_trigger: int | None = None
    ) -> DataFrame:
        """A streaming read of a Delta source's change feed, through a Python data source.

        Spark has no Delta streaming source without Delta's JVM package, so the offsets are
        Delta versions and each micro-batch reads its versions' changes with delta-rs.
        """
        dt = self._open_location(location)
        if dt.metadata().configuration.get(CHANGE_DATA_FEED_PROPERTY, "false").lower() != "true":
            raise StoreError(
                f"Delta source {location} does not have the change data feed on: set table "
                f"property {CHANGE_DATA_FEED_PROPERTY} = true to stream it"
            )
        schema = spark_schema_for(pa.schema([*self._arrow_schema(dt), *_CHANGE_FIELDS]))
        self.spark.dataSource.register(DeltaChangeFeedSource)
        reader = (
            self.spark.readStream.format(DeltaChangeFeedSource.name())
            .schema(schema)
            .option("path", dt.table_uri)
            .option("startingVersion", str(starting_version))
        )
        if max_versions_per_trigger:
            reader = reader.option("maxVersionsPerTrigger", str(max_versions_per_trigger))
        return reader.load()

    def _open(self, table: str) -> DeltaTable:
        """A fresh snapshot of ``table``; every commit attempt starts from one."""
        try:
            return DeltaTable(self.location.table_id(table))
        except DeltaError as error:
            raise StoreError(f"table {table} is not a Delta table: {error}") from error

    def _writable(self, table: str) -> DeltaTable:
        """A fresh snapshot of ``table``, refused when delta-rs would write it wrongly."""
        dt = self._open(table)
        _check_features(dt, table)
        return dt

    @staticmethod
    def _arrow_schema(dt: DeltaTable) -> pa.Schema:
        return pa.schema(dt.schema().to_arrow())

    def _spark_schema(self, dt: DeltaTable) -> StructType:
        return spark_schema_for(self._arrow_schema(dt))

    def _to_arrow(self, table: str, df: DataFrame, schema: pa.Schema) -> pa.Table:
        """Collect ``df`` as Arrow with exactly ``schema``'s column order and types (the
        columns were checked against the table's)."""
        try:
            return df.select(*[F.col(f"`{name}`") for name in schema.names]).toArrow().cast(schema)
        except (ValueError, NotImplementedError) as error:  # Arrow's cast errors subclass these
            raise StoreError(f"rows do not fit the schema of table {table}: {error}") from error


class _VersionRange(InputPartition):
    """The Delta versions one micro-batch reads, inclusive."""

    def __init__(self, first: int, last: int) -> None:
        super().__init__((first, last))
        self.first, self.last = first, last


class DeltaChangeFeedReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Offsets are ``{"version": v}``, the last Delta version a micro-batch has read."""

    def __init__(self, options: Mapping[str, str], schema: StructType) -> None:
        # ``options`` is Spark's case-insensitive map: look keys up in it, never in a dict copy.
        self.path = options["path"]
        self.starting_version = int(options.get("startingVersion", "0"))
        self.max_versions = int(options.get("maxVersionsPerTrigger", "0")) or None
        self.schema = schema
        self.target_version: int | None = None

    def initialOffset(self) -> dict:  # noqa: N802 - the PySpark data source API
        return {"version": self.starting_version - 1}

    def prepareForTriggerAvailableNow(self) -> None:  # noqa: N802
        self.target_version = DeltaTable(self.path).version()

    def getDefaultReadLimit(self) -> ReadLimit:  # noqa: N802
        # Spark's limits count rows, files or bytes: a Delta version counts as one "file" here.
        return ReadMaxFiles(self.max_versions) if self.max_versions else ReadAllAvailable()

    def latestOffset(self, start: dict, limit: ReadLimit) -> dict:  # noqa: N802
        latest = DeltaTable(self.path).version()
        if self.target_version is not None:
            latest = min(latest, self.target_version)
        if isinstance(limit, ReadMaxFiles):
            latest = min(latest, start["version"] + limit.max_files)
        return {"version": max(latest, start["version"])}

    def partitions(self, start: dict, end: dict) -> list[InputPartition]:
        if end["version"] <= start["version"]:
            return []
        return [_VersionRange(start["version"] + 1, end["version"])]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, _VersionRange)
        target = arrow_schema_for(self.schema)
        changes = DeltaTable(self.path).load_cdf(
            starting_version=partition.first, ending_version=partition.last
        )
        yield from pa.table(changes).select(target.names).cast(target).to_batches()


class DeltaChangeFeedSource(DataSource):
    """``spark.readStream.format("idr_delta_changes")``: a Delta table's change feed via delta-rs.

    Options: ``path``, ``startingVersion`` (first version read), ``maxVersionsPerTrigger``.
    The schema must be given (the table's columns plus ``_change_type``, ``_commit_version``,
    ``_commit_timestamp``); :meth:`DeltaLakeStore.read_location_change_stream` does so.
    """

    @classmethod
    def name(cls) -> str:
        return "idr_delta_changes"

    def schema(self) -> StructType:
        raise StoreError("idr_delta_changes needs an explicit schema: use read_location_change_stream")

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:  # noqa: N802
        return DeltaChangeFeedReader(self.options, schema)
