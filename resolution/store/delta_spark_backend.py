"""Delta tables through delta-spark (``DeltaTable``, MERGE, change data feed): the JVM backend.

The only module that imports ``delta``. It needs Delta's JVM package on the classpath
(``io.delta:delta-spark_2.13`` via ``spark.jars.packages``; built into Databricks) and works with
both warehouse paths and catalog (Unity Catalog / metastore) tables.
"""

from __future__ import annotations

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, DataFrameReader
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from resolution.store.base import (
    CHANGE_COLUMNS,
    CHANGE_DATA_FEED_PROPERTY,
    DELETION_VECTORS_PROPERTY,
    SOURCE_ALIAS,
    TARGET_ALIAS,
    ChangeFeedUnavailableError,
    DeltaStore,
    MergeMetrics,
    MergePlan,
    StoreError,
    earliest_commit_version,
    key_predicate,
    rows_that_change,
)

# The Python classes are siblings, not subclasses of one base, so all are listed.
_CONFLICTS: tuple[type[BaseException], ...] = (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    ConcurrentWriteException,
    DeltaConcurrentModificationException,
    MetadataChangedException,
    ProtocolChangedException,
)
_DUPLICATE_SOURCE_ROWS = "DELTA_MULTIPLE_SOURCE_ROW_MATCHING_TARGET_ROW_IN_MERGE"
_CHANGE_FIELDS = [
    StructField(CHANGE_COLUMNS[0], StringType()),
    StructField(CHANGE_COLUMNS[1], LongType()),
    StructField(CHANGE_COLUMNS[2], TimestampType()),
]


def _is_path(location: str) -> bool:
    return "/" in location or ":" in location


def _quoted(name: str) -> str:
    return f"`{name}`"


class DeltaSparkStore(DeltaStore):
    """Delta tables by path (warehouse) or by name (catalog), written by delta-spark.

    Tables it creates have the change data feed on and, with ``deletion_vectors`` (the
    default), deletion vectors: a MERGE marks replaced rows deleted instead of rewriting their
    files. Existing tables keep their properties.
    """

    name = "delta-spark"
    _conflicts = _CONFLICTS

    def __init__(self, spark, location, *, deletion_vectors: bool = True, **options) -> None:
        super().__init__(spark, location, **options)
        self.deletion_vectors = deletion_vectors

    def exists(self, table: str) -> bool:
        """True when the path holds a Delta table, or the catalog has the table."""
        table_id = self.location.table_id(table)
        if self.location.is_catalog:
            return self.spark.catalog.tableExists(table_id)
        return DeltaTable.isDeltaTable(self.spark, table_id)

    def _table_schema(self, table: str) -> StructType:
        return self.read(table).schema

    def _create(self, table: str, schema: StructType) -> None:
        builder = DeltaTable.createIfNotExists(self.spark)
        table_id = self.location.table_id(table)
        builder = builder.tableName(table_id) if self.location.is_catalog else builder.location(table_id)
        builder = builder.addColumns(schema).property(CHANGE_DATA_FEED_PROPERTY, "true")
        builder.property(DELETION_VECTORS_PROPERTY, "true" if self.deletion_vectors else "false").execute()

    def _add_columns(self, table: str, fields: list[StructField]) -> None:
        table_id = self.location.table_id(table)
        name = table_id if self.location.is_catalog else f"delta.`{table_id}`"
        columns = ", ".join(f"{_quoted(f.name)} {f.dataType.simpleString()}" for f in fields)
        self.spark.sql(f"ALTER TABLE {name} ADD COLUMNS ({columns})")

    def read(self, table: str) -> DataFrame:
        """The current snapshot (Delta keeps the declared nullability)."""
        table_id = self.location.table_id(table)
        if self.location.is_catalog:
            return self.spark.read.table(table_id)
        return self.spark.read.format("delta").load(table_id)

    def read_location(self, location: str) -> DataFrame:
        if _is_path(location):
            return self.spark.read.format("delta").load(location)
        return self.spark.read.table(location)

    def location_version(self, location: str) -> int | None:
        table = (
            DeltaTable.forPath(self.spark, location)
            if _is_path(location)
            else DeltaTable.forName(self.spark, location)
        )
        return int(table.history(1).select("version").head()[0])

    def version(self, table: str) -> int | None:
        """The latest committed version, or None when the table does not exist."""
        if not self.exists(table):
            return None
        return int(self._delta_table(table).history(1).select("version").head()[0])

    def _merge_source(self, table: str, df: DataFrame, plan: MergePlan) -> DataFrame | None:
        # Delta rewrites every file holding a matched key, whether or not a clause then applies:
        # only the rows that insert, change or delete go into the MERGE, so an unchanged row
        # rewrites nothing and a re-merge of the same rows commits nothing.
        source = rows_that_change(df, self.read(table), plan.keys, plan.changed, plan.delete_flag).persist()
        if source.isEmpty():
            source.unpersist()
            return None
        return source

    def _commit_merge(self, table: str, source: DataFrame, plan: MergePlan) -> MergeMetrics:
        before = self.version(table)
        # Explicit column maps instead of updateAll/insertAll: with schema auto-merge on (common
        # on Databricks) those would add the delete flag column to the table.
        assignments = {_quoted(c): f"{SOURCE_ALIAS}.{_quoted(c)}" for c in plan.columns}
        builder = (
            self._delta_table(table)
            .alias(TARGET_ALIAS)
            .merge(source.alias(SOURCE_ALIAS), key_predicate(plan.keys))
        )
        for kind, condition in plan.clauses():
            if kind == "delete":
                builder = builder.whenMatchedDelete(condition=condition)
            elif kind == "update":
                builder = builder.whenMatchedUpdate(condition=condition, set=assignments)
            else:
                builder = builder.whenNotMatchedInsert(condition=condition, values=assignments)
        try:
            result = builder.execute()
        except _CONFLICTS:
            raise
        except Exception as error:  # py4j / captured Spark errors share no narrower base
            if _DUPLICATE_SOURCE_ROWS in str(error):
                raise StoreError(f"merge into {table} failed: {error}") from error
            raise
        return self._merge_metrics(table, result, before)

    def _release(self, source: DataFrame) -> None:
        source.unpersist()

    def _commit_delete(self, table: str, condition: str) -> int:
        before = self.version(table)
        self._delta_table(table).delete(condition)
        metrics = self._commit_metrics(table, before)
        if "numDeletedRows" in metrics:
            return int(metrics["numDeletedRows"])
        if not metrics:  # nothing matched, so Delta skipped the commit
            return 0
        # Whole files dropped without a scan report no row count: compare with the old version.
        old = self._reader().option("versionAsOf", before)
        return self._load(old, table).count() - self.read(table).count()

    def read_changes(
        self, table: str, *, starting_version: int, ending_version: int | None = None
    ) -> DataFrame:
        """The change data feed (``readChangeFeed``) between two versions, inclusive."""
        latest = self.version(table)
        if latest is None:
            raise StoreError(f"table {table} does not exist")
        if starting_version > latest:  # Delta raises here; "no changes yet" is not an error
            schema = StructType([*self.read(table).schema.fields, *_CHANGE_FIELDS])
            return self.spark.createDataFrame([], schema)
        reader = self._reader().option("readChangeFeed", "true")
        reader = reader.option("startingVersion", starting_version)
        if ending_version is not None:
            reader = reader.option("endingVersion", ending_version)
        return self._load(reader, table)

    def read_location_changes(self, location: str, *, starting_version: int) -> DataFrame:
        latest = self.location_version(location)
        if latest is not None and starting_version > latest:
            schema = StructType([*self.read_location(location).schema.fields, *_CHANGE_FIELDS])
            return self.spark.createDataFrame([], schema)
        if _is_path(location):  # Delta fails lazily, deep in the run: check the log first
            earliest = earliest_commit_version(self.spark, location)
            if earliest is not None and starting_version < earliest:
                raise ChangeFeedUnavailableError(
                    f"{location}: the change feed from version {starting_version} is gone (the oldest "
                    f"log entry is version {earliest}; delta.logRetentionDuration)"
                )
        reader = self._reader().option("readChangeFeed", "true")
        reader = reader.option("startingVersion", starting_version)
        return reader.load(location) if _is_path(location) else reader.table(location)

    def read_location_change_stream(
        self, location: str, *, starting_version: int, max_versions_per_trigger: int | None = None
    ) -> DataFrame:
        """Delta's own streaming source with ``readChangeFeed``.

        Delta refuses a starting version past the table's latest, which is where a stream that
        has read everything starts; it then starts at the latest version and drops that
        version's rows instead ("latest" would skip a commit landing before the query starts).
        """
        latest = self.location_version(location)
        first = min(starting_version, latest) if latest is not None else starting_version
        reader = self.spark.readStream.format("delta").option("readChangeFeed", "true")
        reader = reader.option("startingVersion", first)
        if max_versions_per_trigger:
            reader = reader.option("maxFilesPerTrigger", max_versions_per_trigger)
        stream = reader.load(location) if _is_path(location) else reader.table(location)
        if first < starting_version:
            stream = stream.where(F.col(CHANGE_COLUMNS[1]) >= starting_version)
        return stream

    def _delta_table(self, table: str) -> DeltaTable:
        table_id = self.location.table_id(table)
        if self.location.is_catalog:
            return DeltaTable.forName(self.spark, table_id)
        return DeltaTable.forPath(self.spark, table_id)

    def _reader(self) -> DataFrameReader:
        return self.spark.read.format("delta")

    def _load(self, reader: DataFrameReader, table: str) -> DataFrame:
        table_id = self.location.table_id(table)
        return reader.table(table_id) if self.location.is_catalog else reader.load(table_id)

    def _write_source(self, table: str, df: DataFrame, schema: StructType) -> DataFrame:
        # insertInto (catalog tables) is positional: put the columns in the table's order.
        return df.select(*[F.col(_quoted(c)) for c in schema.fieldNames()])

    def _commit_write(self, table: str, source: DataFrame, *, overwrite: bool) -> int:
        before = self.version(table)
        table_id = self.location.table_id(table)
        if self.location.is_catalog:
            # insertInto keeps the table's properties (change data feed), which
            # saveAsTable(mode="overwrite") would replace.
            source.write.insertInto(table_id, overwrite=overwrite)
        else:
            source.write.format("delta").mode("overwrite" if overwrite else "append").save(table_id)
        return int(self._commit_metrics(table, before).get("numOutputRows", 0))

    def _commit_metrics(self, table: str, before: int | None) -> dict[str, str]:
        """operationMetrics of the latest commit, or {} when no commit followed ``before``.

        A concurrent writer committing in between would make this report its metrics; the
        pipeline holds one writer per table, so the latest commit is ours.
        """
        last = self._delta_table(table).history(1).select("version", "operationMetrics").head()
        if last is None or (before is not None and last["version"] <= before):
            return {}
        return dict(last["operationMetrics"] or {})

    def _merge_metrics(
        self, table: str, result: DataFrame | None, before: int | None
    ) -> MergeMetrics:
        """Metrics from the DataFrame MERGE returns (newer Delta), else from the commit history."""
        try:
            row = (
                result.head()
                if result is not None and "num_inserted_rows" in result.columns
                else None
            )
        except AttributeError:  # older Delta: execute() returns Unit, wrapped as DataFrame(None)
            row = None
        if row is not None:
            return MergeMetrics(
                inserted=int(row["num_inserted_rows"]),
                updated=int(row["num_updated_rows"]),
                deleted=int(row["num_deleted_rows"]),
            )
        metrics = self._commit_metrics(table, before)
        return MergeMetrics(
            inserted=int(metrics.get("numTargetRowsInserted", 0)),
            updated=int(metrics.get("numTargetRowsUpdated", 0)),
            deleted=int(metrics.get("numTargetRowsDeleted", 0)),
        )
