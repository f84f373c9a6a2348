"""``idr stream``: the incremental run as Spark Structured Streaming micro-batches.

Each micro-batch of a source's changes goes through ``foreachBatch`` to the same incremental
step as ``idr run`` (:func:`resolution.pipeline.run_pipeline` with the batch as that source's
feed), so a stream and scheduled runs can share one warehouse and agree with a full recompute.

What is streamed, per source:

- ``delta_cdf`` or ``audit`` on a Delta table: its change data feed, from the version after the
  one the last committed run read (delta-spark's streaming source, or, on the embedded backend,
  a Python data source reading the feed with delta-rs).
- ``audit`` on a folder of CSV or Parquet files: new files, each holding events.

A ``snapshot`` source has no change events to stream: schedule ``idr run`` for it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from resolution.config import Config, ConfigError, SourceConfig
from resolution.pipeline import run_pipeline
from resolution.run_log import PipelineBusyError, RunSummary, last_successful_run
from resolution.schemas import RESOLVED_MEMBERSHIP, SOURCE_VERSIONS
from resolution.session import detect_backends
from resolution.sources import read_source
from resolution.store import CHANGE_COLUMNS, COMMIT_TIMESTAMP, DeltaStore, open_store

STREAMABLE = ("audit", "delta_cdf")


@dataclass(frozen=True)
class StreamOptions:
    """How ``idr stream`` runs.

    ``trigger_seconds``: micro-batch interval; ``available_now``: process what is there in
    as many micro-batches as needed, then stop (for schedulers and tests);
    ``max_versions_per_trigger``: cap the Delta versions one micro-batch reads;
    ``lock_wait_seconds``: how long a micro-batch waits for a run that holds the pipeline.
    """

    source: str
    checkpoint: str
    trigger_seconds: float = 10.0
    available_now: bool = False
    max_versions_per_trigger: int | None = None
    lock_wait_seconds: float = 3600.0


@dataclass
class BatchReport:
    """One non-empty micro-batch: its id, input rows, the run it made, and how long it took."""

    batch_id: int
    rows: int
    seconds: float
    source_lag_seconds: float | None
    summary: RunSummary

    def line(self) -> str:
        """The log line printed per micro-batch."""
        s = self.summary
        lag = "" if self.source_lag_seconds is None else f"; source commit to resolved {self.source_lag_seconds:.1f}s"
        return (
            f"micro-batch {self.batch_id}: {self.rows} rows -> run {s.run_id} {s.status}: "
            f"{s.records_new} new, {s.records_updated} updated, {s.records_deleted} deleted; "
            f"entities created {s.entities_created}, merged {s.entities_merged}, split "
            f"{s.entities_split}; {self.seconds:.1f}s{lag}"
        )


@dataclass
class MicroBatchHandler:
    """The ``foreachBatch`` function: one incremental run per non-empty micro-batch.

    An empty micro-batch (Spark runs one when a query starts) does nothing at all.
    """

    spark: SparkSession
    config: Config
    source: str
    lock_wait_seconds: float
    report: Callable[[str], None]
    batches: list[BatchReport] = field(default_factory=list)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        batch = batch.persist()  # read by several steps of the run: fetch it once
        try:
            stats = batch.agg(
                F.count(F.lit(1)).alias("rows"),
                (F.max(COMMIT_TIMESTAMP) if COMMIT_TIMESTAMP in batch.columns else F.lit(None)).alias("newest"),
            ).first()
            if not stats["rows"]:  # e.g. the first batch of a query that starts up to date
                return
            summary = self._run(batch, batch_id)
            # PySpark returns timestamps as naive local datetimes, which .timestamp() reads right.
            lag = None if stats["newest"] is None else time.time() - stats["newest"].timestamp()
            result = BatchReport(batch_id, int(stats["rows"]), time.perf_counter() - started, lag, summary)
            self.batches.append(result)
            self.report(result.line())
        finally:
            batch.unpersist()

    def _run(self, batch: DataFrame, batch_id: int) -> RunSummary:
        deadline = time.monotonic() + self.lock_wait_seconds
        wait = 5.0
        while True:
            run_id = f"stream-{self.source}-b{batch_id}-{uuid.uuid4().hex[:6]}"
            try:
                return run_pipeline(
                    self.spark,
                    self.config,
                    mode="incremental",
                    feeds={self.source: batch},
                    run_id=run_id,
                    report=self.report,
                )
            except PipelineBusyError as busy:
                if time.monotonic() + wait > deadline:
                    raise
                self.report(f"micro-batch {batch_id} waits {wait:.0f}s: {busy}")
                time.sleep(wait)
                wait = min(wait * 2, 60.0)


def start_stream(
    spark: SparkSession,
    config: Config,
    options: StreamOptions,
    *,
    report: Callable[[str], None] = print,
) -> tuple[StreamingQuery, MicroBatchHandler]:
    """Start the streaming query that resolves ``options.source``'s changes as they arrive.

    Without a committed run yet, a full run comes first (the stream then picks up after it).
    Returns the running query and its handler (whose ``batches`` lists what each did).
    """
    source = _streamable_source(config, options.source)
    backends = detect_backends(spark, prefer=config.storage.backend)
    store = open_store(spark, config, backends)
    if last_successful_run(store) is None:
        report(f"no committed run in the warehouse yet: a full run comes before streaming {source.name}")
        run_pipeline(spark, config, mode="full", report=report)
    versions = dict(last_successful_run(store)[SOURCE_VERSIONS] or {})
    changes = change_stream(spark, config, source, store=store, versions=versions,
                            max_versions_per_trigger=options.max_versions_per_trigger)
    handler = MicroBatchHandler(spark, config, source.name, options.lock_wait_seconds, report)
    writer = (
        changes.writeStream.foreachBatch(handler)
        .option("checkpointLocation", options.checkpoint)
        .queryName(f"idr-{source.name}")
    )
    if options.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{options.trigger_seconds} seconds")
    report(
        f"streaming {source.name} ({source.change_tracking}, {source.format}) into "
        f"{store.location.table_id(RESOLVED_MEMBERSHIP).rsplit('/', 1)[0]}; checkpoint "
        f"{options.checkpoint}"
    )
    return writer.start(), handler


def change_stream(
    spark: SparkSession,
    config: Config,
    source: SourceConfig,
    *,
    store: DeltaStore,
    versions: dict[str, str],
    max_versions_per_trigger: int | None = None,
) -> DataFrame:
    """The streaming DataFrame of a source's changes (see the module docstring)."""
    if source.format in ("delta", "table"):
        recorded = versions.get(source.name)
        if recorded is None:  # a source added since the last run: start after its current state
            current = store.location_version(source.location)
            recorded = str(current) if current is not None else "-1"
        stream = store.read_location_change_stream(
            source.location,
            starting_version=int(recorded) + 1,
            max_versions_per_trigger=max_versions_per_trigger,
        )
        if source.change_tracking == "audit":  # the events themselves; the feed only says which
            stream = stream.drop(*CHANGE_COLUMNS)
        return stream
    if not os.path.isdir(source.location):
        raise ConfigError(
            config.path,
            f"sources[{source.name}].path",
            f"streaming reads new files from a folder, but {source.location} is not a folder",
        )
    schema = read_source(spark, source, store=store).schema
    reader = spark.readStream.schema(schema).options(**source.options)
    if source.format == "csv":
        return reader.option("header", "true").csv(source.location)
    return reader.parquet(source.location)


def _streamable_source(config: Config, name: str) -> SourceConfig:
    try:
        source = config.source(name)
    except KeyError:
        names = ", ".join(s.name for s in config.sources)
        raise ConfigError(config.path, "sources", f"no source named {name!r} (sources: {names})") from None
    if source.change_tracking not in STREAMABLE:
        raise ConfigError(
            config.path,
            f"sources[{name}].change_tracking",
            f"only {' or '.join(STREAMABLE)} sources can be streamed, this one is "
            f"{source.change_tracking!r}: a snapshot has no change events (schedule `idr run`)",
        )
    if source.change_tracking == "audit" and source.format not in ("delta", "table", "csv", "parquet"):
        raise ConfigError(config.path, f"sources[{name}].format", "cannot stream this format")
    return source


def default_checkpoint(config: Config, source: str) -> str:
    """``<warehouse>/_streams/<source>``; catalog storage needs an explicit location."""
    if config.storage.warehouse is None:
        raise ConfigError(
            config.path,
            "storage",
            "tables live in a catalog: give the stream a --checkpoint location (e.g. a Volume path)",
        )
    return f"{config.storage.warehouse.rstrip('/')}/_streams/{source}"
