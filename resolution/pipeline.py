"""The resolution run: ingest -> standardize -> score -> cluster -> identify -> MERGE.

This module orchestrates; the steps live in their own modules as DataFrame transforms, and all
Delta reads and writes go through the store backend. A run prints stage-by-stage progress and
ends with a summary, and its record lands in the ``runs`` table whether it succeeds or fails.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.clustering import DST, SRC, get_connected_components
from resolution.config import Config
from resolution.golden import build_golden_profiles
from resolution.identity import assign_entity_ids, clusters_for_records
from resolution.matching import OVERSIZED_SUFFIX, classify_edges, mask_oversized_identifiers
from resolution.outputs import DELETE_FLAG, changed_rows, stamp_run
from resolution.scoring import load_model, score_candidates
from resolution.session import Backends, detect_backends
from resolution.sources import IngestedSource, ingest_sources
from resolution.standardize import standardize_records
from resolution.store import DeltaStore, MergeMetrics, StoreLocation, get_store

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did: the figures printed at the end and written to the ``runs`` table."""

    run_id: str
    mode: str
    backends: str
    status: str = "RUNNING"
    records_read: dict[str, int] = field(default_factory=dict)
    source_versions: dict[str, str] = field(default_factory=dict)
    records_in: int = 0
    records_new: int = 0
    records_updated: int = 0
    records_deleted: int = 0
    records_rejected: int = 0
    value_issues: dict[str, int] = field(default_factory=dict)
    edges_by_rule: dict[str, int] = field(default_factory=dict)
    review_pairs: int = 0
    entities: int = 0
    entities_created: int = 0
    entities_merged: int = 0
    entities_split: int = 0
    largest_entity: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def lines(self) -> list[str]:
        """The human-readable summary printed at the end of a run."""
        out = [f"run {self.run_id} ({self.mode}) {self.status}"]
        out.append(
            "  records read: "
            + ", ".join(f"{name} {count}" for name, count in self.records_read.items())
            + f"; rejected {self.records_rejected}"
        )
        out.append(
            f"  source records: {self.records_in} live, {self.records_new} new, "
            f"{self.records_updated} updated, {self.records_deleted} deleted"
        )
        if self.value_issues:
            out.append(
                "  values nulled: "
                + ", ".join(f"{issue} {count}" for issue, count in sorted(self.value_issues.items()))
            )
        out.append(
            "  edges by rule: "
            + (", ".join(f"{rule} {count}" for rule, count in sorted(self.edges_by_rule.items())) or "none")
            + f"; review pairs {self.review_pairs}"
        )
        out.append(
            f"  entities: {self.entities} (created {self.entities_created}, merged "
            f"{self.entities_merged}, split {self.entities_split}); largest {self.largest_entity} records"
        )
        out.append(
            "  seconds: "
            + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in self.stage_seconds.items())
            + f"; total {sum(self.stage_seconds.values()):.1f}"
        )
        if self.error:
            out.append(f"  error: {self.error}")
        return out


class Progress:
    """Times stages and reports each as it starts and ends."""

    def __init__(self, summary: RunSummary, report: Callable[[str], None]):
        self.summary, self.report = summary, report

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.report(f"[{name}] ...")
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self.summary.stage_seconds[name] = round(seconds, 3)
        self.report(f"[{name}] done in {seconds:.1f}s")


def store_for(spark: SparkSession, config: Config, backends: Backends) -> DeltaStore:
    """The Delta store of the configured warehouse or catalog.schema."""
    storage = config.storage
    location = StoreLocation(warehouse=storage.warehouse, catalog=storage.catalog, schema=storage.schema)
    return get_store(spark, backends.delta, location)


def show_table(spark: SparkSession, config: Config, *, table: str, limit: int = 20) -> None:
    """Print the first rows of an output table, ordered by its natural key."""
    store = store_for(spark, config, detect_backends(spark, prefer=config.storage.backend))
    if not store.exists(table):
        print(f"table {table} does not exist yet in {store.location.table_id(table)}")
        return
    frame = store.read(table)
    order = [c for c in (S.ENTITY_ID, S.RECORD_KEY, S.RECORD_KEY_L, "started_at") if c in frame.columns]
    frame.orderBy(*order).show(limit, truncate=60)


def _read_or_empty(spark: SparkSession, store: DeltaStore, table: str, schema) -> DataFrame:
    if store.exists(table):
        return store.read(table)
    return spark.createDataFrame([], schema)


def _union_all(frames: list[DataFrame]) -> DataFrame:
    return reduce(lambda left, right: left.unionByName(right), frames)


def _count_map(frame: DataFrame, column: str) -> dict[str, int]:
    return {row[0]: row[1] for row in frame.groupBy(column).count().collect() if row[0] is not None}


def run_pipeline(
    spark: SparkSession,
    config: Config,
    *,
    report: Callable[[str], None] = print,
    run_id: str | None = None,
) -> RunSummary:
    """Resolve every live source record into entities and MERGE the results into Delta tables."""
    backends = detect_backends(spark, prefer=config.storage.backend)
    report(backends.describe())
    store = store_for(spark, config, backends)
    run_id = run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = RunSummary(run_id=run_id, mode="full", backends=backends.describe())
    started_at = datetime.now(timezone.utc)
    _write_run(spark, store, summary, started_at=started_at, finished=False)
    try:
        _resolve(spark, config, store, backends, summary, Progress(summary, report))
        summary.status = "SUCCEEDED"
    except Exception as error:
        summary.status = "FAILED"
        summary.error = f"{type(error).__name__}: {error}"
        _write_run(spark, store, summary, started_at=started_at, finished=True)
        raise
    _write_run(spark, store, summary, started_at=started_at, finished=True)
    for line in summary.lines():
        report(line)
    return summary


def _resolve(
    spark: SparkSession,
    config: Config,
    store: DeltaStore,
    backends: Backends,
    summary: RunSummary,
    progress: Progress,
) -> None:
    now = F.lit(datetime.now(timezone.utc)).cast("timestamp")
    records_schema = S.source_records_schema(config.attribute_kinds)
    with progress.stage("ingest"):
        ingested = ingest_sources(spark, config, store=store)
        rejected = _union_all([source.rejected for source in ingested]).cache()
        summary.records_rejected = rejected.count()
        summary.source_versions = {s.name: s.version for s in ingested if s.version is not None}

    with progress.stage("standardize"):
        standardized = standardize_ingested(ingested, config=config)
        records = stamp_run(
            standardized.withColumn(S.ROW_HASH, _row_hash(config)),
            schema=records_schema,
            run_id=summary.run_id,
            now=now,
        ).cache()
        summary.records_read = {name: count for name, count in sorted(_count_map(records, S.SOURCE).items())}
        summary.records_in = sum(summary.records_read.values())
        issues = records.select(F.explode(S.VALUE_ISSUES).alias("issue"))
        summary.value_issues = _count_map(issues, "issue")

    with progress.stage("score"):
        model = load_model(config.matching.model, config)
        matchable = mask_oversized_identifiers(records, rules=config.identifiers).cache()
        for rule in config.identifiers:
            masked = matchable.filter(F.col(f"{rule.attribute}{OVERSIZED_SUFFIX}")).count()
            if masked:
                summary.value_issues[f"{rule.attribute}:oversized_group"] = masked
        scored = score_candidates(spark, matchable, config=config, model=model)
        edges = classify_edges(
            scored,
            link_threshold=config.matching.link_threshold,
            review_threshold=config.matching.review_threshold,
        ).cache()
        links = edges.filter(F.col(S.EDGE_STATUS) == S.LINK)
        summary.edges_by_rule = _count_map(links, S.RULE)

    with progress.stage("cluster"):
        clustering = get_connected_components(
            spark, backends.clustering, max_edges=config.matching.max_embedded_graph_edges
        )
        components = clustering.components(
            links.select(F.col(S.RECORD_KEY_L).alias(SRC), F.col(S.RECORD_KEY_R).alias(DST))
        )
        clustered = clusters_for_records(records, components).cache()

    with progress.stage("identify"):
        previous = _read_or_empty(spark, store, S.RESOLVED_MEMBERSHIP, S.RESOLVED_MEMBERSHIP_SCHEMA)
        membership, lineage = assign_entity_ids(
            clustered, previous.select(S.RECORD_KEY, S.ENTITY_ID, S.IS_PRIMARY)
        )
        membership = membership.cache()
        sizes = membership.groupBy(S.ENTITY_ID).count()
        largest = sizes.agg(F.max("count")).first()[0]
        summary.entities = sizes.count()
        summary.largest_entity = int(largest or 0)
        previous_ids = previous.select(S.ENTITY_ID).distinct()
        summary.entities_created = sizes.join(previous_ids, S.ENTITY_ID, "left_anti").count()
        lineage = lineage.cache()
        events = _count_map(lineage, "event")
        summary.entities_merged = events.get("RETIRED", 0)
        summary.entities_split = events.get("SPLIT", 0)
        if summary.largest_entity > config.matching.max_entity_size:
            logger.warning(
                "largest entity has %d records, above matching.max_entity_size=%d",
                summary.largest_entity,
                config.matching.max_entity_size,
            )

    with progress.stage("golden"):
        golden = build_golden_profiles(records, membership, config=config)

    with progress.stage("write"):
        run = {"run_id": summary.run_id, "now": now}
        metrics = _merge_changes(
            spark, store, S.SOURCE_RECORDS, records, records_schema, keys=[S.RECORD_KEY]
        )
        summary.records_new, summary.records_deleted = metrics.inserted, metrics.deleted
        summary.records_updated = metrics.updated
        _merge_changes(
            spark,
            store,
            S.MATCH_EDGES,
            stamp_run(edges, schema=S.MATCH_EDGES_SCHEMA, **run),
            S.MATCH_EDGES_SCHEMA,
            keys=[S.RECORD_KEY_L, S.RECORD_KEY_R],
        )
        review = _review_pairs(edges, membership).cache()
        summary.review_pairs = review.count()
        _merge_changes(
            spark,
            store,
            S.REVIEW_QUEUE,
            stamp_run(review, schema=S.REVIEW_QUEUE_SCHEMA, **run),
            S.REVIEW_QUEUE_SCHEMA,
            keys=[S.RECORD_KEY_L, S.RECORD_KEY_R],
        )
        _merge_changes(
            spark,
            store,
            S.RESOLVED_MEMBERSHIP,
            stamp_run(membership, schema=S.RESOLVED_MEMBERSHIP_SCHEMA, **run),
            S.RESOLVED_MEMBERSHIP_SCHEMA,
            keys=[S.RECORD_KEY],
        )
        golden_schema = S.golden_profiles_schema(config.attribute_kinds, config.survivorship.arrays)
        _merge_changes(
            spark,
            store,
            S.GOLDEN_PROFILES,
            stamp_run(golden, schema=golden_schema, **run),
            golden_schema,
            keys=[S.ENTITY_ID],
        )
        _merge_changes(
            spark,
            store,
            S.REJECTED_RECORDS,
            stamp_run(rejected, schema=S.REJECTED_RECORDS_SCHEMA, **run),
            S.REJECTED_RECORDS_SCHEMA,
            keys=[S.SOURCE, "raw_row"],
        )
        if lineage.first() is not None:
            store.append(
                S.ENTITY_LINEAGE,
                lineage.select(
                    F.lit(summary.run_id).alias(S.RUN_ID),
                    S.ENTITY_ID,
                    "other_entity_id",
                    "event",
                    F.col("record_count").cast("long"),
                    now.alias("occurred_at"),
                ),
            )
        else:
            store.create_if_missing(S.ENTITY_LINEAGE, S.ENTITY_LINEAGE_SCHEMA)
    for frame in (rejected, records, matchable, edges, clustered, membership, lineage):
        frame.unpersist()


def standardize_ingested(ingested: list[IngestedSource], *, config: Config) -> DataFrame:
    """Standardize each source with its own date formats and union them into one frame."""
    return _union_all(
        [
            standardize_records(
                source.records, config=config, date_formats=config.source(source.name).date_formats
            )
            for source in ingested
        ]
    )


def _review_pairs(edges: DataFrame, membership: DataFrame) -> DataFrame:
    """Review-band pairs whose records ended in different entities: the ones a person decides.

    A review pair inside one entity is already settled by stronger links.
    """
    entity = membership.select(S.RECORD_KEY, S.ENTITY_ID)
    return (
        edges.filter(F.col(S.EDGE_STATUS) == S.REVIEW)
        .join(entity.withColumnRenamed(S.RECORD_KEY, S.RECORD_KEY_L).withColumnRenamed(S.ENTITY_ID, "__l"), S.RECORD_KEY_L)
        .join(entity.withColumnRenamed(S.RECORD_KEY, S.RECORD_KEY_R).withColumnRenamed(S.ENTITY_ID, "__r"), S.RECORD_KEY_R)
        .filter(F.col("__l") != F.col("__r"))
        .withColumn("status", F.lit("open"))
    )


def _row_hash(config: Config):
    """Hash of a record's source-derived content: what snapshot change capture compares."""
    columns = [S.SOURCE_PRIORITY, S.SOURCE_TIMESTAMP, *config.attributes]
    return F.sha2(F.to_json(F.struct(*[F.col(c) for c in columns])), 256)


def _merge_changes(spark, store: DeltaStore, table: str, rows: DataFrame, schema, *, keys):
    """MERGE only the rows that differ from what ``table`` holds (and delete the vanished)."""
    current = _read_or_empty(spark, store, table, schema)
    changes = changed_rows(rows, current, keys=keys).cache()
    try:
        store.create_if_missing(table, schema)
        if changes.first() is None:
            return MergeMetrics(inserted=0, updated=0, deleted=0)
        return store.merge(table, changes, keys=keys, delete_flag=DELETE_FLAG)
    finally:
        changes.unpersist()


def _write_run(
    spark: SparkSession, store: DeltaStore, summary: RunSummary, *, started_at: datetime, finished: bool
) -> None:
    row = {
        **dataclasses.asdict(summary),
        "started_at": started_at,
        "finished_at": datetime.now(timezone.utc) if finished else None,
    }
    frame = spark.createDataFrame([row], S.RUNS_SCHEMA)
    if finished:
        store.merge(S.RUNS, frame, keys=[S.RUN_ID])
    else:
        store.append(S.RUNS, frame)
