"""The resolution run: ingest -> standardize -> score -> cluster -> identify -> MERGE.

This module orchestrates; the steps live in their own modules as DataFrame transforms, and all
Delta reads and writes go through the store backend. A run prints stage-by-stage progress and
ends with a summary, and its record lands in the ``runs`` table whether it succeeds or fails.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from resolution import schemas as S
from resolution.clustering import DST, SRC, get_connected_components
from resolution.clustering.constrained import constrain_clusters
from resolution.config import Config
from resolution.golden import build_golden_profiles
from resolution.identity import CLUSTER, assign_entity_ids, clusters_for_records, id_events
from resolution.matching import (
    IDENTIFIER,
    OVERSIZED_SUFFIX,
    VALUE,
    blocking_candidates,
    classify_edges,
    group_size_limit,
    identifier_group_sizes,
    identifier_values,
    mask_oversized_identifiers,
)
from resolution.outputs import DELETE_FLAG, changed_rows, stamp_run
from resolution.realtime.inbox import ensure_inbox
from resolution.review import accepted_pairs, decided_keys, rejected_pairs
from resolution.schemas import SCORED_SCHEMA
from resolution.scoring import candidate_rules, load_model, score_candidates
from resolution.session import Backends, detect_backends
from resolution.sources import (
    CHANGE,
    DELETE,
    RAW_ROW,
    REASON,
    REJECT,
    SOURCE_KEY,
    UPSERT,
    capture_changes,
)
from resolution.standardize import standardize_records
from resolution.store import DeltaStore, MergeMetrics, StoreLocation, get_store

logger = logging.getLogger(__name__)

LOCK_TIMEOUT = timedelta(hours=6)
ROWS_PER_PARTITION = 50_000  # for materialized intermediate frames
BROADCAST_ROWS = 100_000  # a materialized frame this small is broadcast in joins


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
    edges_cut: dict[str, int] = field(default_factory=dict)  # printed, not in the runs table
    entities: int = 0
    entities_created: int = 0
    entities_merged: int = 0
    entities_split: int = 0
    largest_entity: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_jobs: dict[str, int] = field(default_factory=dict)  # Spark jobs each stage ran
    rows_written: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def one_line(self) -> str:
        """The run in one line of ``key=value`` fields, the last line a job prints (for schedulers)."""
        fields = {
            "mode": self.mode.replace(" ", "_"),
            "records": self.records_in,
            "new": self.records_new,
            "updated": self.records_updated,
            "deleted": self.records_deleted,
            "rejected": self.records_rejected,
            "links": sum(self.edges_by_rule.values()),
            "review": self.review_pairs,
            "entities": self.entities,
            "created": self.entities_created,
            "merged": self.entities_merged,
            "split": self.entities_split,
            "largest": self.largest_entity,
            "seconds": f"{sum(self.stage_seconds.values()):.1f}",
        }
        return f"idr run {self.run_id} {self.status} " + " ".join(f"{k}={v}" for k, v in fields.items())

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
            "  edges scored this run, by rule: "
            + (", ".join(f"{rule} {count}" for rule, count in sorted(self.edges_by_rule.items())) or "none")
            + f"; review pairs re-examined {self.review_pairs}"
        )
        if self.edges_cut:
            out.append(
                "  links cut by cannot-link constraints (in the re-clustered part): "
                + ", ".join(f"{name} {count}" for name, count in sorted(self.edges_cut.items()))
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
        if self.stage_jobs:
            out.append(
                "  spark jobs: "
                + ", ".join(f"{stage} {jobs}" for stage, jobs in self.stage_jobs.items())
                + f"; total {sum(self.stage_jobs.values())}"
            )
        if self.rows_written:
            out.append(
                "  rows written: "
                + ", ".join(f"{table} {rows}" for table, rows in self.rows_written.items() if rows)
                + f"; total {sum(self.rows_written.values())}"
            )
        if self.error:
            out.append(f"  error: {self.error}")
        return out


class Progress:
    """Times stages and reports each as it starts and ends.

    Spark jobs of a stage carry the description ``idr <run_id>: <stage>``, so the Spark UI
    (and Databricks' job view) shows which step of which run each job belongs to.
    """

    def __init__(self, summary: RunSummary, report: Callable[[str], None], spark: SparkSession | None = None):
        self.summary, self.report, self.spark = summary, report, spark
        self._own_group = False

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.report(f"[{name}] ...")
        group = self._describe_jobs(f"idr {self.summary.run_id}: {name}")
        before = self._jobs_of(group)
        started = time.perf_counter()
        try:
            yield
        finally:
            after = self._jobs_of(group)
            self._describe_jobs(None)
        seconds = time.perf_counter() - started
        self.summary.stage_seconds[name] = round(seconds, 3)
        if before is not None and after is not None:
            self.summary.stage_jobs[name] = after - before
        self.report(f"[{name}] done in {seconds:.1f}s")

    def _describe_jobs(self, description: str | None) -> str | None:
        """Name the next jobs ``description`` (None: stop); returns the job group they run in.

        Jobs get a group of ours only where none is set: a Databricks notebook cell runs its
        jobs in its own group (its Cancel button cancels that group), which is kept.
        """
        if self.spark is None:
            return None
        try:
            context = self.spark.sparkContext
            context.setJobDescription(description)
            if description is None:
                if self._own_group:
                    context.setLocalProperty("spark.jobGroup.id", None)
                self._own_group = False
                return None
            group = context.getLocalProperty("spark.jobGroup.id")
            if group is None:
                group, self._own_group = description, True
                context.setLocalProperty("spark.jobGroup.id", group)
            return group
        except Exception:  # Spark Connect sessions have no SparkContext
            self.spark = None
            return None

    def _jobs_of(self, group: str | None) -> int | None:
        """How many Spark jobs ran in ``group`` so far (as far as Spark's status store retains them)."""
        if self.spark is None or group is None:
            return None
        try:
            return len(self.spark.sparkContext.statusTracker().getJobIdsForGroup(group))
        except Exception:
            return None


def store_for(spark: SparkSession, config: Config, backends: Backends) -> DeltaStore:
    """The Delta store of the configured warehouse or catalog.schema."""
    storage = config.storage
    location = StoreLocation(warehouse=storage.warehouse, catalog=storage.catalog, schema=storage.schema)
    options = {"deletion_vectors": storage.deletion_vectors} if backends.delta == "delta-spark" else {}
    return get_store(spark, backends.delta, location, **options)


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


MODES = ("auto", "full", "incremental")
# the review_decisions version a run has read, kept among the runs' source versions
DECISIONS_VERSION = "_review_decisions"


class PipelineBusyError(RuntimeError):
    """Another run holds the pipeline; the message names it."""


def run_pipeline(
    spark: SparkSession,
    config: Config,
    *,
    mode: str = "auto",
    dry_run: bool = False,
    report: Callable[[str], None] = print,
    run_id: str | None = None,
    on_table_written: Callable[[str], None] | None = None,
    feeds: dict[str, DataFrame] | None = None,
) -> RunSummary:
    """Resolve the sources into entities and MERGE what changed into the Delta tables.

    ``mode``: ``full`` treats every live record as changed; ``incremental`` recomputes only
    changed records and the entities they touch; ``auto`` is incremental once a run has
    succeeded. ``dry_run`` computes everything, writes ``dry_run_changes`` and nothing else.
    ``on_table_written`` is called after each table write (monitoring; failure-injection tests).
    ``feeds`` (streaming): new rows per source name from a micro-batch; only those sources are
    captured, incrementally (see :func:`resolution.sources.capture_changes`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if feeds is not None and mode == "full":
        raise ValueError("a streamed micro-batch (feeds) is applied incrementally, not in full mode")
    backends = detect_backends(spark, prefer=config.storage.backend)
    report(backends.describe())
    store = store_for(spark, config, backends)
    ensure_inbox(config)  # the service's inbox is a source before the service ever wrote to it
    last = last_successful_run(store)
    if mode == "auto":
        mode = "incremental" if last is not None and store.exists(S.SOURCE_RECORDS) else "full"
    run_id = run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    label = "stream" if feeds is not None else mode
    summary = RunSummary(
        run_id=run_id, mode=f"{label}{' (dry run)' if dry_run else ''}", backends=backends.describe()
    )
    started_at = datetime.now(timezone.utc)
    if not dry_run:
        _acquire(spark, store, summary, started_at=started_at)
    try:
        context = RunContext(
            spark=spark,
            config=config,
            store=store,
            backends=backends,
            summary=summary,
            progress=Progress(summary, report, spark),
            full=mode == "full",
            versions=dict(last["source_versions"] or {}) if last is not None else {},
            written=on_table_written or (lambda table: None),
            feeds=feeds,
        )
        _resolve(context, dry_run=dry_run)
        summary.status = "SUCCEEDED"
    except Exception as error:
        summary.status = "FAILED"
        summary.error = describe_error(error)
        if not dry_run:
            _write_run(spark, store, summary, started_at=started_at, finished=True)
        raise
    if not dry_run:
        _write_run(spark, store, summary, started_at=started_at, finished=True)
    for line in summary.lines():
        report(line)
    return summary


def describe_error(error: BaseException, *, limit: int = 2000) -> str:
    """The error's type and first line: Spark's analysis errors append whole query plans."""
    first_line = str(error).strip().split("\n", 1)[0]
    return f"{type(error).__name__}: {first_line}"[:limit]


@dataclass
class RunContext:
    """Everything one run's stages share."""

    spark: SparkSession
    config: Config
    store: DeltaStore
    backends: Backends
    summary: RunSummary
    progress: Progress
    full: bool
    versions: dict[str, str]
    written: Callable[[str], None]
    feeds: dict[str, DataFrame] | None = None

    def table(self, name: str, schema: StructType) -> DataFrame:
        """The committed rows of an output table (empty with ``schema`` before the first run).

        A column of ``schema`` the table does not have yet (written by an older release, or
        before the config mapped an attribute) reads as null; the run's write adds it.
        """
        frame = _read_or_empty(self.spark, self.store, name, schema)
        if all(column in frame.columns for column in schema.fieldNames()):
            return frame
        return frame.select(
            *[F.col(f.name) if f.name in frame.columns else F.lit(None).cast(f.dataType).alias(f.name)
              for f in schema.fields]
        )


def last_successful_run(store: DeltaStore):
    """The ``runs`` row of the latest committed (not dry) run, or None before the first one."""
    if not store.exists(S.RUNS):
        return None
    succeeded = store.read(S.RUNS).filter(
        (F.col("status") == "SUCCEEDED") & ~F.col("mode").contains("dry run")
    )
    return succeeded.orderBy(F.col("finished_at").desc(), F.col(S.RUN_ID).desc()).first()


def _acquire(spark: SparkSession, store: DeltaStore, summary: RunSummary, *, started_at) -> None:
    """Register this run as RUNNING; refuse to start while another live run holds the pipeline.

    A RUNNING row whose process is gone (same host, dead pid) or that started more than
    ``LOCK_TIMEOUT`` ago is considered dead and marked ABANDONED: its work is redone by this
    run, whose writes only apply what differs from the tables.
    """
    _write_run(spark, store, summary, started_at=started_at, finished=False)
    running = store.read(S.RUNS).filter(
        (F.col("status") == "RUNNING") & (F.col(S.RUN_ID) != summary.run_id)
    ).collect()
    for other in sorted(running, key=lambda row: (row["started_at"], row[S.RUN_ID])):
        if _is_dead(other, started_at):
            abandoned = RunSummary(run_id=other[S.RUN_ID], mode=other["mode"], backends=other["backends"])
            abandoned.status, abandoned.error = "ABANDONED", f"found dead by run {summary.run_id}"
            _write_run(spark, store, abandoned, started_at=other["started_at"], finished=True)
            continue
        if (_utc(other["started_at"]), other[S.RUN_ID]) < (started_at, summary.run_id):
            summary.status = "REFUSED"
            summary.error = f"run {other[S.RUN_ID]} ({other['owner']}) has held the pipeline since {other['started_at']}"
            _write_run(spark, store, summary, started_at=started_at, finished=True)
            raise PipelineBusyError(
                f"another run is in progress: {other[S.RUN_ID]} started at {other['started_at']} "
                f"by {other['owner']}; wait for it to finish (or, if it died, it is taken over "
                f"after {LOCK_TIMEOUT})"
            )


def _is_dead(run, now: datetime) -> bool:
    host, _, pid = (run["owner"] or "").partition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return now - _utc(run["started_at"]) > LOCK_TIMEOUT


def _utc(moment: datetime) -> datetime:
    """Spark returns session-time-zone (UTC) timestamps without tzinfo."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _resolve(ctx: RunContext, *, dry_run: bool) -> None:
    config, summary, store, spark = ctx.config, ctx.summary, ctx.store, ctx.spark
    now = F.lit(datetime.now(timezone.utc)).cast("timestamp")
    records_schema = S.source_records_schema(config.attribute_kinds)
    golden_schema = S.golden_profiles_schema(config.attribute_kinds, config.survivorship.arrays)
    stamp = {"run_id": summary.run_id, "now": now}

    with ctx.progress.stage("ingest"):
        old_records = ctx.table(S.SOURCE_RECORDS, records_schema).cache()
        captured = capture_changes(
            spark,
            config,
            store=store,
            previous=old_records.select(S.SOURCE, S.RECORD_KEY, S.ROW_HASH),
            versions=ctx.versions,
            full=ctx.full,
            feeds=ctx.feeds,
        )
        # One materialization reads every source once; the rest are filters of it.
        changes = _union_all([source.changes for source in captured]).transform(materialize)
        kind = F.col(CHANGE)
        rejected = changes.filter(kind == REJECT).select(
            S.SOURCE, F.col(S.SOURCE_ID).alias(SOURCE_KEY), REASON, RAW_ROW
        )
        deleted = changes.filter(kind == DELETE).select(S.RECORD_KEY)
        change_counts = _count_map(changes, CHANGE)
        summary.records_rejected = change_counts.get(REJECT, 0)
        summary.source_versions = {**ctx.versions}
        summary.source_versions.update({s.name: s.version for s in captured if s.version is not None})
        decisions_version = store.version(S.REVIEW_DECISIONS)
        unchanged = (
            not ctx.full
            and not change_counts.get(UPSERT)
            and not change_counts.get(DELETE)
            and ctx.versions.get(DECISIONS_VERSION) == (None if decisions_version is None else str(decisions_version))
        )
    if unchanged:
        _finish_unchanged(ctx, old_records, rejected, captured, dry_run=dry_run)
        for frame in (old_records, changes):
            frame.unpersist()
        return

    with ctx.progress.stage("standardize"):
        upserted = changes.filter(kind == UPSERT)
        changed = stamp_run(
            standardize_sources(
                [(source.name, upserted.filter(F.col(S.SOURCE) == source.name)) for source in captured],
                config=config,
            ),
            schema=records_schema,
            **stamp,
        ).transform(materialize)
        changed_keys = changed.select(S.RECORD_KEY)
        gone_or_changed = changed_keys.unionByName(deleted)
        if ctx.full:
            live = changed
        else:
            # Not materialized: every use scans the cached old records, which is cheaper than
            # copying all of them each run.
            live = old_records.join(F.broadcast(gone_or_changed), S.RECORD_KEY, "left_anti").unionByName(changed)
        summary.records_read = dict(sorted(_count_map(live, S.SOURCE).items()))
        summary.records_in = sum(summary.records_read.values())
        issues = changed.select(F.explode(S.VALUE_ISSUES).alias("issue"))
        summary.value_issues = _count_map(issues, "issue")

    with ctx.progress.stage("score"):
        model = load_model(config.matching.model, config) if config.matching.model else None
        rules = config.identifiers
        # Reviewers' decisions: accepted pairs are links, rejected pairs constraints (cluster).
        review_accepted = review_rejected = None
        if decisions_version is not None:
            decisions = store.read(S.REVIEW_DECISIONS).transform(materialize)
            review_rejected = rejected_pairs(decisions).transform(materialize)
            review_accepted = _pairs_within(accepted_pairs(decisions), live.select(S.RECORD_KEY))
            summary.source_versions[DECISIONS_VERSION] = str(decisions_version)
        if ctx.full:
            rescored = changed_keys
            matchable = mask_oversized_identifiers(live, rules=rules).transform(materialize)
        else:
            # Records whose identifier group crossed max_group_size (either way) are rescored
            # too: their rule edges appear or vanish although the records did not change.
            old_rows = old_records.join(gone_or_changed, S.RECORD_KEY, "left_semi")
            crossed = _crossed_group_records(live, new_rows=changed, old_rows=old_rows, rules=rules)
            rescored = changed_keys.unionByName(crossed)
            if decisions_version is not None:
                # records of pairs decided since the last run: their edges follow the decision
                since = ctx.versions.get(DECISIONS_VERSION)
                decided = decided_keys(store, since_version=int(since) if since is not None else None)
                rescored = rescored.unionByName(decided.join(live, S.RECORD_KEY, "left_semi"))
            rescored = rescored.distinct().transform(materialize)
            # Only records sharing a blocking key with a rescored one can pair with it: score
            # against those (masked by their groups' sizes over all live records).
            seeds = live.join(F.broadcast(rescored), S.RECORD_KEY, "left_semi").transform(materialize)
            pool = blocking_candidates(live, seeds, rules=candidate_rules(config)).unionByName(seeds)
            pool = pool.dropDuplicates([S.RECORD_KEY]).transform(materialize)
            sizes = identifier_group_sizes(
                live, rules=rules, values=identifier_values(pool, rules=rules).select(IDENTIFIER, VALUE).distinct()
            )
            matchable = mask_oversized_identifiers(pool, rules=rules, sizes=sizes).transform(materialize)
        to_score = matchable if ctx.full else matchable.join(rescored, S.RECORD_KEY, "left_semi")
        if rules:  # junk identifier values nulled among the records scored this run
            flags = [f"{rule.attribute}{OVERSIZED_SUFFIX}" for rule in rules]
            masked = to_score.agg(*[F.sum(F.col(flag).cast("long")).alias(flag) for flag in flags]).first()
            for rule, flag in zip(rules, flags, strict=True):
                if masked[flag]:
                    summary.value_issues[f"{rule.attribute}:oversized_group"] = int(masked[flag])
        if ctx.full:
            scored = score_candidates(spark, matchable, config=config, model=model)
        elif rescored.first() is None:  # nothing changed: no pair to score
            scored = None
        else:
            scored = score_candidates(spark, matchable, config=config, model=model, changed=to_score)
        if scored is None:
            scored = spark.createDataFrame([], SCORED_SCHEMA)
        new_edges = classify_edges(
            scored,
            link_threshold=config.matching.link_threshold,
            review_threshold=config.matching.review_threshold,
            accepted=None if review_accepted is None else _edges_touching(review_accepted, rescored),
        ).transform(materialize)
        touched = rescored.unionByName(deleted).distinct().transform(materialize)
        new_links = new_edges.filter(F.col(S.EDGE_STATUS) == S.LINK)
        summary.edges_by_rule = _count_map(new_links, S.RULE)

    with ctx.progress.stage("cluster"):
        old_membership = ctx.table(S.RESOLVED_MEMBERSHIP, S.RESOLVED_MEMBERSHIP_SCHEMA).cache()
        # The affected part of the graph: entities holding a changed, deleted or newly linked
        # record, plus the changed records. Links cross entities only where a constraint cut
        # them, and the entities a cut joins are added below, so this part is closed.
        seeds = touched.unionByName(
            new_links.select(F.col(S.RECORD_KEY_L).alias(S.RECORD_KEY))
        ).unionByName(new_links.select(F.col(S.RECORD_KEY_R).alias(S.RECORD_KEY)))
        affected_entities = old_membership.join(seeds, S.RECORD_KEY, "left_semi").select(S.ENTITY_ID).distinct()
        old_cuts = ctx.table(S.CUT_EDGES, S.CUT_EDGES_SCHEMA)
        if not ctx.full:
            # Entities a constraint split apart were one connected component: re-cluster them together.
            affected_entities = _entities_joined_by_cuts(old_membership, affected_entities, old_cuts)
        affected_keys = (
            old_membership.join(affected_entities, S.ENTITY_ID, "left_semi")
            .select(S.RECORD_KEY)
            .unionByName(seeds)
            .distinct()
            .transform(materialize)
        )
        region = affected_keys.unionByName(deleted).distinct()
        affected = live.join(affected_keys, S.RECORD_KEY, "left_semi").transform(materialize)
        old_edges = ctx.table(S.MATCH_EDGES, S.MATCH_EDGES_SCHEMA)
        if ctx.full:  # every old edge is replaced
            old_touched_edges = old_edges
            kept_region_edges = spark.createDataFrame([], S.MATCH_EDGES_SCHEMA)
        else:
            # The old edges of the region, read once: those touching a rescored or deleted
            # record are replaced by this run's edges; the others are kept.
            region_edges = _edges_touching(old_edges, region).transform(materialize)
            old_touched_edges = _edges_touching(region_edges, touched)
            kept_region_edges = region_edges.join(
                old_touched_edges.select(S.RECORD_KEY_L, S.RECORD_KEY_R),
                [S.RECORD_KEY_L, S.RECORD_KEY_R],
                "left_anti",
            )
        # A reviewer's acceptance is the strongest link (constraints and rejections still apply).
        weight = F.when(F.col(S.RULE) == S.ACCEPTED_RULE, F.lit(float("inf"))).otherwise(F.col(S.MATCH_WEIGHT))
        links = (
            kept_region_edges.filter(F.col(S.EDGE_STATUS) == S.LINK)
            .select(*new_links.columns)
            .unionByName(new_links)
            .select(S.RECORD_KEY_L, S.RECORD_KEY_R, weight.alias(S.MATCH_WEIGHT))
        )
        clustering = get_connected_components(
            spark, ctx.backends.clustering, max_edges=config.matching.max_embedded_graph_edges
        )
        components = clustering.components(
            links.select(F.col(S.RECORD_KEY_L).alias(SRC), F.col(S.RECORD_KEY_R).alias(DST))
        )
        clustered = clusters_for_records(affected, components).transform(materialize)
        cuts = spark.createDataFrame([], S.CUT_EDGES_SCHEMA).select(*S.CUT_EDGES_SCHEMA.fieldNames()[:4])
        if config.cannot_link or (review_rejected is not None and review_rejected.first() is not None):
            constrained = config.cannot_link
            labels, cuts = constrain_clusters(
                clustered.join(affected.select(S.RECORD_KEY, *constrained.attributes), S.RECORD_KEY),
                links,
                attributes=constrained.attributes,
                unique_sources=constrained.unique_sources,
                rejected_pairs=review_rejected,
            )
            cuts = cuts.transform(materialize)
            clustered = (
                clustered.drop(CLUSTER).join(labels, S.RECORD_KEY).select(*clustered.columns).transform(materialize)
            )
        summary.edges_cut = _count_map(cuts, "cut_by")

    with ctx.progress.stage("identify"):
        previous = old_membership.join(region, S.RECORD_KEY, "left_semi").transform(materialize)
        taken = old_membership.select(S.ENTITY_ID).unionByName(
            ctx.table(S.ENTITY_LINEAGE, S.ENTITY_LINEAGE_SCHEMA).select(S.ENTITY_ID)
        )
        before = previous.select(S.RECORD_KEY, S.ENTITY_ID, S.IS_PRIMARY)
        membership = assign_entity_ids(clustered, before, taken=taken).transform(materialize)
        lineage = id_events(clustered, before, membership).transform(materialize)
        untouched = old_membership.join(region, S.RECORD_KEY, "left_anti")
        everyone = untouched.select(S.RECORD_KEY, S.ENTITY_ID).unionByName(membership.select(S.RECORD_KEY, S.ENTITY_ID))
        sizes = everyone.groupBy(S.ENTITY_ID).count()
        totals = sizes.agg(F.count(F.lit(1)).alias("entities"), F.max("count").alias("largest")).first()
        summary.entities, summary.largest_entity = int(totals["entities"]), int(totals["largest"] or 0)
        summary.entities_created = (
            membership.select(S.ENTITY_ID).distinct()
            .join(old_membership.select(S.ENTITY_ID).distinct(), S.ENTITY_ID, "left_anti")
            .count()
        )
        events = _count_map(lineage, "event")
        summary.entities_merged = events.get("MERGED", 0)
        summary.entities_split = events.get("SPLIT", 0)
        if summary.largest_entity > config.matching.max_entity_size:
            logger.warning(
                "largest entity has %d records, above matching.max_entity_size=%d",
                summary.largest_entity,
                config.matching.max_entity_size,
            )

    with ctx.progress.stage("golden"):
        golden = build_golden_profiles(affected, membership, config=config)
        old_ids = previous.select(S.ENTITY_ID).unionByName(membership.select(S.ENTITY_ID)).distinct()
        old_golden = ctx.table(S.GOLDEN_PROFILES, golden_schema).join(old_ids, S.ENTITY_ID, "left_semi")
        review = _review_pairs(
            kept_region_edges.select(*new_edges.columns).unionByName(new_edges),
            untouched.select(S.RECORD_KEY, S.ENTITY_ID).unionByName(membership.select(S.RECORD_KEY, S.ENTITY_ID)),
            rejected=review_rejected,
        ).transform(materialize)
        summary.review_pairs = review.count()
        old_review = _edges_touching(ctx.table(S.REVIEW_QUEUE, S.REVIEW_QUEUE_SCHEMA), region)
        old_region_cuts = old_cuts if ctx.full else _edges_touching(old_cuts, region)

    if dry_run:
        with ctx.progress.stage("dry-run"):
            _write_dry_run(ctx, membership, previous, deleted, lineage, now=now)
        return

    with ctx.progress.stage("write"):
        # Order matters for failure safety: source_records last, so a run that dies midway
        # sees the same changes again and completes the other tables (every write applies
        # only what differs from the table, so redoing a write is harmless).
        base_version = store.version(S.RESOLVED_MEMBERSHIP)
        _write_lineage(ctx, lineage, base_version=base_version, now=now)
        ctx.written(S.ENTITY_LINEAGE)
        _merge_changes(
            ctx, S.MATCH_EDGES, stamp_run(new_edges, schema=S.MATCH_EDGES_SCHEMA, **stamp),
            old_touched_edges, S.MATCH_EDGES_SCHEMA, keys=[S.RECORD_KEY_L, S.RECORD_KEY_R],
        )
        _merge_changes(
            ctx, S.REVIEW_QUEUE, stamp_run(review, schema=S.REVIEW_QUEUE_SCHEMA, **stamp),
            old_review, S.REVIEW_QUEUE_SCHEMA, keys=[S.RECORD_KEY_L, S.RECORD_KEY_R],
        )
        _merge_changes(
            ctx, S.CUT_EDGES, stamp_run(cuts, schema=S.CUT_EDGES_SCHEMA, **stamp),
            old_region_cuts, S.CUT_EDGES_SCHEMA, keys=[S.RECORD_KEY_L, S.RECORD_KEY_R],
        )
        _merge_changes(
            ctx, S.GOLDEN_PROFILES, stamp_run(golden, schema=golden_schema, **stamp),
            old_golden, golden_schema, keys=[S.ENTITY_ID],
        )
        _merge_changes(
            ctx, S.RESOLVED_MEMBERSHIP, stamp_run(membership, schema=S.RESOLVED_MEMBERSHIP_SCHEMA, **stamp),
            previous, S.RESOLVED_MEMBERSHIP_SCHEMA, keys=[S.RECORD_KEY],
        )
        complete = [source.name for source in captured if source.complete]
        old_rejected = ctx.table(S.REJECTED_RECORDS, S.REJECTED_RECORDS_SCHEMA).filter(
            F.col(S.SOURCE).isin(complete)
        )
        _merge_changes(
            ctx, S.REJECTED_RECORDS, stamp_run(rejected, schema=S.REJECTED_RECORDS_SCHEMA, **stamp),
            old_rejected, S.REJECTED_RECORDS_SCHEMA, keys=[S.SOURCE, "raw_row"],
        )
        metrics = _merge_changes(
            ctx, S.SOURCE_RECORDS, changed, old_records.join(gone_or_changed, S.RECORD_KEY, "left_semi"),
            records_schema, keys=[S.RECORD_KEY],
        )
        summary.records_new, summary.records_deleted = metrics.inserted, metrics.deleted
        summary.records_updated = metrics.updated
    for frame in (old_records, changes, changed, live, matchable, rescored, new_edges, touched,
                  old_membership, affected, clustered, previous, membership, lineage, review):
        frame.unpersist()


def _finish_unchanged(ctx: RunContext, old_records, rejected, captured, *, dry_run: bool) -> None:
    """A run that found no source change and no new review decision: nothing to re-resolve.

    Every later stage would only re-derive what the tables hold (the invariant: an unchanged
    input changes nothing), so the run reads its figures from the tables and writes only what
    a run always records: new rejections of the sources read and the source versions (in the
    ``runs`` row), so the next run starts from them.
    """
    summary, store = ctx.summary, ctx.store
    stage = "dry-run" if dry_run else "write"
    with ctx.progress.stage(stage):
        ctx.progress.report("  no source record changed and no review decision is new: nothing to re-resolve")
        summary.records_read = dict(sorted(_count_map(old_records, S.SOURCE).items()))
        summary.records_in = sum(summary.records_read.values())
        if store.exists(S.RESOLVED_MEMBERSHIP):
            sizes = store.read(S.RESOLVED_MEMBERSHIP).groupBy(S.ENTITY_ID).count()
            totals = sizes.agg(F.count(F.lit(1)).alias("entities"), F.max("count").alias("largest")).first()
            summary.entities, summary.largest_entity = int(totals["entities"]), int(totals["largest"] or 0)
        if dry_run:
            empty = ctx.spark.createDataFrame([], S.DRY_RUN_CHANGES_SCHEMA)
            store.overwrite(S.DRY_RUN_CHANGES, empty)
            ctx.progress.report(f"dry run: would change nothing. Details: table {S.DRY_RUN_CHANGES}")
            return
        complete = [source.name for source in captured if source.complete]
        old_rejected = ctx.table(S.REJECTED_RECORDS, S.REJECTED_RECORDS_SCHEMA).filter(F.col(S.SOURCE).isin(complete))
        # a rejected row fixed or removed from a source read whole leaves rejected_records
        if summary.records_rejected or old_rejected.first() is not None:
            now = F.lit(datetime.now(timezone.utc)).cast("timestamp")
            _merge_changes(
                ctx, S.REJECTED_RECORDS,
                stamp_run(rejected, schema=S.REJECTED_RECORDS_SCHEMA, run_id=summary.run_id, now=now),
                old_rejected, S.REJECTED_RECORDS_SCHEMA, keys=[S.SOURCE, "raw_row"],
            )


def materialize(frame: DataFrame) -> DataFrame:
    """Compute ``frame`` now and cut its lineage.

    Later steps then plan against a short lineage: without this the plans of a run nest the
    whole chain (standardization, Splink's SQL, clustering) and planning alone can exhaust the
    driver's heap.

    Unions (sources, standardization per source) multiply partitions, and a few hundred
    changed rows spread over dozens of partitions cost a task each in every later step, so a
    frame with more partitions than its rows need is coalesced (no shuffle).

    A frame small enough to ship to every executor is marked for broadcast: joined with a
    large table it then needs no shuffle (Spark's size estimate of a checkpoint is its origin
    plan's, often far above the real size, so the planner would not see it is small).
    """
    # lazy: the count computes and keeps the partitions (one job, where an eager checkpoint
    # then a count take two or more)
    checkpointed = frame.localCheckpoint(eager=False)
    rows = checkpointed.count()
    partitions = checkpointed.rdd.getNumPartitions()
    wanted = max(1, -(-rows // ROWS_PER_PARTITION))
    if wanted < partitions:
        checkpointed = checkpointed.coalesce(wanted)
    return F.broadcast(checkpointed) if rows <= BROADCAST_ROWS else checkpointed


def _entities_joined_by_cuts(membership: DataFrame, entities: DataFrame, cuts: DataFrame) -> DataFrame:
    """``entities`` (``entity_id``) plus every entity a cut edge joins to one of them, repeatedly.

    An entity split by a constraint is part of a connected component with its other parts (the
    cut edges join them); re-clustering one part alone could take a different decision from a
    full run, so the whole component is re-clustered. Cut edges are few and local: this takes
    a round or two.
    """
    if cuts.first() is None:
        return entities
    entities = entities.transform(materialize)
    while True:
        keys = membership.join(entities, S.ENTITY_ID, "left_semi").select(S.RECORD_KEY)
        crossing = _edges_touching(cuts, keys)
        ends = crossing.select(F.col(S.RECORD_KEY_L).alias(S.RECORD_KEY)).unionByName(
            crossing.select(F.col(S.RECORD_KEY_R).alias(S.RECORD_KEY))
        )
        reached = membership.join(ends, S.RECORD_KEY, "left_semi").select(S.ENTITY_ID)
        added = reached.join(entities, S.ENTITY_ID, "left_anti").distinct().transform(materialize)
        if added.first() is None:
            return entities
        entities = entities.unionByName(added).transform(materialize)


def _pairs_within(pairs: DataFrame, keys: DataFrame) -> DataFrame:
    """Pairs (``record_key_l, record_key_r``) with both endpoints among ``keys``."""
    return pairs.join(keys.select(F.col(S.RECORD_KEY).alias(S.RECORD_KEY_L)), S.RECORD_KEY_L, "left_semi").join(
        keys.select(F.col(S.RECORD_KEY).alias(S.RECORD_KEY_R)), S.RECORD_KEY_R, "left_semi"
    )


def _edges_touching(edges: DataFrame, keys: DataFrame) -> DataFrame:
    """Edges with at least one endpoint among ``keys`` (a frame with ``record_key``)."""
    left_keys = keys.select(F.col(S.RECORD_KEY).alias(S.RECORD_KEY_L))
    right_keys = keys.select(F.col(S.RECORD_KEY).alias(S.RECORD_KEY_R))
    by_left = edges.join(left_keys, S.RECORD_KEY_L, "left_semi")
    # edges matched by their right endpoint only, so no edge appears twice
    by_right_only = edges.join(right_keys, S.RECORD_KEY_R, "left_semi").join(
        left_keys, S.RECORD_KEY_L, "left_anti"
    )
    return by_left.unionByName(by_right_only)


def _crossed_group_records(live: DataFrame, *, new_rows: DataFrame, old_rows: DataFrame, rules) -> DataFrame:
    """Live records holding an identifier value whose group crossed ``max_group_size``.

    Only values of a changed or deleted record (``old_rows``: their committed rows,
    ``new_rows``: the changed records now) can change group size. Their sizes now are counted
    over ``live``; their sizes before are those minus what the new rows added plus what the
    old rows held.
    """
    group = [IDENTIFIER, VALUE]
    added = identifier_values(new_rows, rules=rules).groupBy(*group).agg(F.count(F.lit(1)).alias("__added"))
    removed = identifier_values(old_rows, rules=rules).groupBy(*group).agg(F.count(F.lit(1)).alias("__removed"))
    moved = added.join(removed, group, "full")
    after = identifier_group_sizes(live, rules=rules, values=moved).withColumnRenamed("count", "__after")
    size_after = F.coalesce(F.col("__after"), F.lit(0))
    size_before = size_after - F.coalesce(F.col("__added"), F.lit(0)) + F.coalesce(F.col("__removed"), F.lit(0))
    limit = group_size_limit(rules)
    flipped = moved.join(after, group, "left").filter((size_before > limit) != (size_after > limit))
    holders = identifier_values(live, rules=rules).join(flipped.select(*group), group, "left_semi")
    return holders.select(S.RECORD_KEY).distinct()


def _write_lineage(ctx: RunContext, lineage: DataFrame, *, base_version: int | None, now) -> None:
    """Append id events once: keyed by the membership version they were computed against.

    A run that failed after writing lineage recomputes the same events against the same
    membership version, so the MERGE adds nothing twice.
    """
    events = lineage.select(
        F.sha2(
            F.concat_ws("|", S.ENTITY_ID, F.coalesce("other_entity_id", F.lit("")), "event",
                        F.lit(str(base_version))),
            256,
        ).alias("event_key"),
        F.lit(ctx.summary.run_id).alias(S.RUN_ID),
        S.ENTITY_ID,
        "other_entity_id",
        "event",
        F.col("record_count").cast("long"),
        now.alias("occurred_at"),
    )
    ctx.store.create_if_missing(S.ENTITY_LINEAGE, S.ENTITY_LINEAGE_SCHEMA)
    if events.first() is not None:
        current = ctx.store.read(S.ENTITY_LINEAGE).select("event_key")
        fresh = events.join(current, "event_key", "left_anti")
        if fresh.first() is not None:
            ctx.summary.rows_written[S.ENTITY_LINEAGE] = ctx.store.append(S.ENTITY_LINEAGE, fresh)


def _write_dry_run(ctx: RunContext, membership, previous, deleted, lineage, *, now) -> None:
    """What a real run would change, per record: NEW, MOVED, MERGED, SPLIT or DELETED."""
    old = previous.select(S.RECORD_KEY, F.col(S.ENTITY_ID).alias("current_entity_id"))
    new = membership.select(S.RECORD_KEY, F.col(S.ENTITY_ID).alias("proposed_entity_id"))
    retired = lineage.filter(F.col("event") == "RETIRED").select(F.col(S.ENTITY_ID).alias("current_entity_id"))
    split_off = lineage.filter(F.col("event") == "SPLIT").select(F.col("other_entity_id").alias("proposed_entity_id"))
    compared = (
        old.join(new, S.RECORD_KEY, "full")
        .join(retired.withColumn("__retired", F.lit(True)), "current_entity_id", "left")
        .join(split_off.withColumn("__split", F.lit(True)), "proposed_entity_id", "left")
    )
    change = (
        F.when(F.col("proposed_entity_id").isNull(), F.lit("DELETED"))
        .when(F.col("current_entity_id").isNull(), F.lit("NEW"))
        .when(F.col("current_entity_id") == F.col("proposed_entity_id"), F.lit(None))
        .when(F.col("__retired"), F.lit("MERGED"))
        .when(F.col("__split"), F.lit("SPLIT"))
        .otherwise(F.lit("MOVED"))
    )
    changes = compared.withColumn("change_type", change).filter(F.col("change_type").isNotNull()).select(
        S.RECORD_KEY,
        "current_entity_id",
        "proposed_entity_id",
        "change_type",
        F.lit(ctx.summary.run_id).alias(S.RUN_ID),
        now.alias("computed_at"),
    ).cache()
    ctx.store.overwrite(S.DRY_RUN_CHANGES, changes.select(*S.DRY_RUN_CHANGES_SCHEMA.fieldNames()))
    counts = _count_map(changes, "change_type")
    ctx.progress.report(
        "dry run: would change "
        + (", ".join(f"{kind} {count}" for kind, count in sorted(counts.items())) or "nothing")
        + f"; entities {ctx.summary.entities} (new {ctx.summary.entities_created}, merges "
        f"{ctx.summary.entities_merged}, splits {ctx.summary.entities_split}); largest "
        f"{ctx.summary.largest_entity} records. Details: table {S.DRY_RUN_CHANGES}"
    )
    changes.unpersist()


def standardize_sources(
    raw_by_source: list[tuple[str, DataFrame]], *, config: Config
) -> DataFrame:
    """Standardize each source's raw records with its own date formats, as one frame."""
    return _union_all(
        [
            standardize_records(raw, config=config, date_formats=config.source(name).date_formats)
            for name, raw in raw_by_source
        ]
    )


def _review_pairs(edges: DataFrame, membership: DataFrame, *, rejected: DataFrame | None) -> DataFrame:
    """Review-band pairs whose records ended in different entities: the ones a person decides.

    A review pair inside one entity is already settled by stronger links (an accepted pair is
    a link, so it leaves the queue). Status ``open``, or ``rejected`` once a reviewer rejected it.
    """
    entity = membership.select(S.RECORD_KEY, S.ENTITY_ID)
    pairs = (
        edges.filter(F.col(S.EDGE_STATUS) == S.REVIEW)
        .join(entity.withColumnRenamed(S.RECORD_KEY, S.RECORD_KEY_L).withColumnRenamed(S.ENTITY_ID, "__l"), S.RECORD_KEY_L)
        .join(entity.withColumnRenamed(S.RECORD_KEY, S.RECORD_KEY_R).withColumnRenamed(S.ENTITY_ID, "__r"), S.RECORD_KEY_R)
        .filter(F.col("__l") != F.col("__r"))
        .drop(S.EDGE_STATUS)  # the queue's status column replaces the edge's
    )
    if rejected is None:
        return pairs.withColumn("status", F.lit("open"))
    flagged = rejected.select(S.RECORD_KEY_L, S.RECORD_KEY_R, F.lit("rejected").alias("status"))
    return pairs.join(flagged, [S.RECORD_KEY_L, S.RECORD_KEY_R], "left").withColumn(
        "status", F.coalesce(F.col("status"), F.lit("open"))
    )


def _merge_changes(
    ctx: RunContext, table: str, rows: DataFrame, current: DataFrame, schema: StructType, *, keys
) -> MergeMetrics:
    """MERGE the rows that differ from ``current`` (the table's rows in this run's region).

    Rows of ``current`` missing from ``rows`` are deleted; identical rows are not rewritten.
    """
    changes = changed_rows(rows, current.select(*schema.fieldNames()), keys=keys)
    ctx.store.create_if_missing(table, schema)
    ctx.store.add_missing_columns(table, schema)
    # An empty MERGE commits nothing, so a run without changes leaves the table's version alone.
    metrics = ctx.store.merge(table, changes, keys=keys, delete_flag=DELETE_FLAG)
    ctx.summary.rows_written[table] = metrics.total
    ctx.written(table)
    return metrics


def _write_run(
    spark: SparkSession, store: DeltaStore, summary: RunSummary, *, started_at: datetime, finished: bool
) -> None:
    row = {
        **dataclasses.asdict(summary),
        "owner": f"{socket.gethostname()}:{os.getpid()}",
        "started_at": started_at,
        "finished_at": datetime.now(timezone.utc) if finished else None,
    }
    frame = spark.createDataFrame([row], S.RUNS_SCHEMA)
    if finished:
        store.merge(S.RUNS, frame, keys=[S.RUN_ID])
    else:
        store.append(S.RUNS, frame)
