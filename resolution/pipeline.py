"""The resolution run, stage by stage (each stage is a module of :mod:`resolution.stages`):

    sources -> ingest -> standardize -> score -> cluster -> identify -> golden -> write (MERGE)

This module orchestrates: it takes the run lock, runs the stages in order, and records the
run in the ``runs`` table whether it succeeds or fails. A run prints stage-by-stage progress
and ends with a summary.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.config import Config, ConfigError
from resolution.run_log import (
    Progress,
    RunSummary,
    acquire_pipeline,
    describe_error,
    last_successful_run,
    record_run,
)
from resolution.session import detect_backends
from resolution.stages import cluster, identify, ingest, profiles, publish, score, standardize
from resolution.stages.context import RunContext
from resolution.store import open_store
from resolution.store.inbox import ensure_inbox
from resolution.threshold import proposal_path

MODES = ("auto", "full", "incremental")


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
    matching = config.matching
    if matching.link_threshold_auto and not matching.link_threshold_proposed:
        raise ConfigError(config.path, "matching.link_threshold",
                          f"auto, but the model has no proposal beside it ({proposal_path(matching.model)}): "
                          f"run `idr train --config {config.path}`, or give a probability")
    backends = detect_backends(spark, prefer=config.storage.backend)
    report(backends.describe())
    if matching.model is not None:
        chosen = "proposed by the model (link_threshold: auto)" if matching.link_threshold_auto else "from the config"
        report(f"link threshold {matching.link_threshold:g}, {chosen}; review from {matching.review_threshold:g}")
    store = open_store(spark, config, backends)
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
        acquire_pipeline(spark, store, summary, started_at=started_at)
    try:
        context = RunContext(
            spark=spark,
            config=config,
            store=store,
            backends=backends,
            summary=summary,
            progress=Progress(summary, report, spark),
            full=mode == "full",
            versions=dict(last[S.SOURCE_VERSIONS] or {}) if last is not None else {},
            written=on_table_written or (lambda table: None),
            now=F.lit(started_at).cast("timestamp"),
            feeds=feeds,
        )
        try:
            _resolve(context, dry_run=dry_run)
        finally:
            context.release()
        summary.status = "SUCCEEDED"
    except Exception as error:
        summary.status = "FAILED"
        summary.error = describe_error(error)
        if not dry_run:
            record_run(spark, store, summary, started_at=started_at, finished=True)
        raise
    if not dry_run:
        record_run(spark, store, summary, started_at=started_at, finished=True)
    for line in summary.lines():
        report(line)
    return summary


def _resolve(ctx: RunContext, *, dry_run: bool) -> None:
    """The stages in order; each hands its frozen result to the next."""
    stage = ctx.progress.stage
    with stage("ingest"):
        captured = ingest.capture(ctx)
    if ingest.nothing_to_resolve(ctx, captured):
        with stage("dry-run" if dry_run else "write"):
            publish.finish_unchanged(ctx, captured, dry_run=dry_run)
        return
    with stage("standardize"):
        standardized = standardize.standardize(ctx, captured)
    with stage("score"):
        scored = score.score(ctx, standardized)
    with stage("cluster"):
        clustered = cluster.cluster(ctx, scored)
    with stage("identify"):
        identified = identify.identify(ctx, clustered)
    with stage("golden"):
        profiled = profiles.profile(ctx, identified)
    with stage("dry-run" if dry_run else "write"):
        (publish.dry_run if dry_run else publish.publish)(ctx, profiled)


def show_table(spark: SparkSession, config: Config, *, table: str, limit: int = 20) -> None:
    """Print the first rows of an output table, ordered by its natural key."""
    store = open_store(spark, config)
    if not store.exists(table):
        print(f"table {table} does not exist yet in {store.location.table_id(table)}")
        return
    frame = store.read(table)
    order = [c for c in (S.ENTITY_ID, S.RECORD_KEY, S.RECORD_KEY_L, S.STARTED_AT) if c in frame.columns]
    frame.orderBy(*order).show(limit, truncate=60)
