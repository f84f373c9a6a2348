"""Publish: MERGE what differs into the output tables (or, for a dry run, only the diff)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from resolution import schemas as S
from resolution.frames import count_map
from resolution.graph import edges_touching
from resolution.outputs import DELETE_FLAG, changed_rows, stamp_run
from resolution.sources import REJECT
from resolution.stages.context import RunContext
from resolution.stages.identify import entity_totals
from resolution.stages.ingest import Captured
from resolution.stages.profiles import Profiled
from resolution.store import MergeMetrics


def publish(ctx: RunContext, profiled: Profiled) -> None:
    """Write every table. Order matters for failure safety: ``source_records`` last, so a run
    that dies midway sees the same changes again and completes the other tables (every write
    applies only what differs from the table, so redoing a write is harmless)."""
    identified = profiled.identified
    clustered = identified.clustered
    scored = clustered.scored
    standardized = scored.standardized
    captured = standardized.captured
    stamp = ctx.stamp
    edge_keys = [S.RECORD_KEY_L, S.RECORD_KEY_R]
    _write_lineage(ctx, identified.lineage, base_version=ctx.store.version(S.RESOLVED_MEMBERSHIP))
    ctx.written(S.ENTITY_LINEAGE)
    merge_changes(ctx, S.MATCH_EDGES, stamp_run(scored.new_edges, schema=S.MATCH_EDGES_SCHEMA, **stamp),
                  clustered.old_touched_edges, S.MATCH_EDGES_SCHEMA, keys=edge_keys)
    merge_changes(ctx, S.REVIEW_QUEUE, stamp_run(profiled.review, schema=S.REVIEW_QUEUE_SCHEMA, **stamp),
                  profiled.old_review, S.REVIEW_QUEUE_SCHEMA, keys=edge_keys)
    old_region_cuts = clustered.old_cuts if ctx.full else edges_touching(clustered.old_cuts, clustered.region)
    merge_changes(ctx, S.CUT_EDGES, stamp_run(clustered.cuts, schema=S.CUT_EDGES_SCHEMA, **stamp),
                  old_region_cuts, S.CUT_EDGES_SCHEMA, keys=edge_keys)
    merge_changes(ctx, S.GOLDEN_PROFILES, stamp_run(profiled.golden, schema=ctx.golden_schema, **stamp),
                  profiled.old_golden, ctx.golden_schema, keys=[S.ENTITY_ID])
    merge_changes(
        ctx, S.RESOLVED_MEMBERSHIP, stamp_run(identified.membership, schema=S.RESOLVED_MEMBERSHIP_SCHEMA, **stamp),
        identified.previous, S.RESOLVED_MEMBERSHIP_SCHEMA, keys=[S.RECORD_KEY],
    )
    _merge_rejected(ctx, captured)
    metrics = merge_changes(
        ctx, S.SOURCE_RECORDS, standardized.changed,
        captured.old_records.join(standardized.gone_or_changed, S.RECORD_KEY, "left_semi"),
        ctx.records_schema, keys=[S.RECORD_KEY],
    )
    summary = ctx.summary
    summary.records_new, summary.records_deleted = metrics.inserted, metrics.deleted
    summary.records_updated = metrics.updated


def _merge_rejected(ctx: RunContext, captured: Captured, *, when_empty: bool = True) -> None:
    """This run's rejections; those of a source read whole replace its committed ones (a row
    fixed or removed from the source leaves ``rejected_records``). ``when_empty=False``: no
    MERGE when there is nothing to add or remove."""
    old_rejected = ctx.table(S.REJECTED_RECORDS, S.REJECTED_RECORDS_SCHEMA).filter(
        F.col(S.SOURCE).isin(captured.complete_sources)
    )
    if when_empty or captured.counts.get(REJECT) or old_rejected.first() is not None:
        merge_changes(
            ctx, S.REJECTED_RECORDS, stamp_run(captured.rejected, schema=S.REJECTED_RECORDS_SCHEMA, **ctx.stamp),
            old_rejected, S.REJECTED_RECORDS_SCHEMA, keys=[S.SOURCE, S.RAW_ROW],
        )


def finish_unchanged(ctx: RunContext, captured: Captured, *, dry_run: bool) -> None:
    """A run that found no source change and no new review decision: nothing to re-resolve.

    Every later stage would only re-derive what the tables hold (the invariant: an unchanged
    input changes nothing), so the run reads its figures from the tables and writes only what
    a run always records: changed rejections of the sources read, and the source versions (in
    the ``runs`` row), so the next run starts from them.
    """
    summary, store = ctx.summary, ctx.store
    ctx.progress.report("  no source record changed and no review decision is new: nothing to re-resolve")
    summary.records_read = dict(sorted(count_map(captured.old_records, S.SOURCE).items()))
    summary.records_in = sum(summary.records_read.values())
    if store.exists(S.RESOLVED_MEMBERSHIP):
        summary.entities, summary.largest_entity = entity_totals(store.read(S.RESOLVED_MEMBERSHIP))
    if dry_run:
        store.overwrite(S.DRY_RUN_CHANGES, ctx.spark.createDataFrame([], S.DRY_RUN_CHANGES_SCHEMA))
        ctx.progress.report(f"dry run: would change nothing. Details: table {S.DRY_RUN_CHANGES}")
        return
    _merge_rejected(ctx, captured, when_empty=False)


def _write_lineage(ctx: RunContext, lineage: DataFrame, *, base_version: int | None) -> None:
    """Append id events once: keyed by the membership version they were computed against.

    A run that failed after writing lineage recomputes the same events against the same
    membership version, so the MERGE adds nothing twice.
    """
    events = lineage.select(
        F.sha2(
            F.concat_ws("|", S.ENTITY_ID, F.coalesce(S.OTHER_ENTITY_ID, F.lit("")), S.EVENT,
                        F.lit(str(base_version))),
            256,
        ).alias(S.EVENT_KEY),
        F.lit(ctx.summary.run_id).alias(S.RUN_ID),
        S.ENTITY_ID,
        S.OTHER_ENTITY_ID,
        S.EVENT,
        F.col(S.RECORD_COUNT).cast("long"),
        ctx.now.alias(S.OCCURRED_AT),
    )
    ctx.store.create_if_missing(S.ENTITY_LINEAGE, S.ENTITY_LINEAGE_SCHEMA)
    if events.first() is not None:
        current = ctx.store.read(S.ENTITY_LINEAGE).select(S.EVENT_KEY)
        fresh = events.join(current, S.EVENT_KEY, "left_anti")
        if fresh.first() is not None:
            ctx.summary.rows_written[S.ENTITY_LINEAGE] = ctx.store.append(S.ENTITY_LINEAGE, fresh)


def dry_run(ctx: RunContext, profiled: Profiled) -> None:
    """Write ``dry_run_changes``: what a real run would change, per record (NEW, MOVED,
    MERGED, SPLIT or DELETED); nothing else is written."""
    identified = profiled.identified
    membership, previous, lineage = identified.membership, identified.previous, identified.lineage
    current, proposed = S.CURRENT_ENTITY_ID, S.PROPOSED_ENTITY_ID
    old = previous.select(S.RECORD_KEY, F.col(S.ENTITY_ID).alias(current))
    new = membership.select(S.RECORD_KEY, F.col(S.ENTITY_ID).alias(proposed))
    retired = lineage.filter(F.col(S.EVENT) == S.RETIRED).select(F.col(S.ENTITY_ID).alias(current))
    split_off = lineage.filter(F.col(S.EVENT) == S.SPLIT).select(F.col(S.OTHER_ENTITY_ID).alias(proposed))
    compared = (
        old.join(new, S.RECORD_KEY, "full")
        .join(retired.withColumn("__retired", F.lit(True)), current, "left")
        .join(split_off.withColumn("__split", F.lit(True)), proposed, "left")
    )
    change = (
        F.when(F.col(proposed).isNull(), F.lit("DELETED"))
        .when(F.col(current).isNull(), F.lit("NEW"))
        .when(F.col(current) == F.col(proposed), F.lit(None))
        .when(F.col("__retired"), F.lit("MERGED"))
        .when(F.col("__split"), F.lit("SPLIT"))
        .otherwise(F.lit("MOVED"))
    )
    changes = compared.withColumn(S.CHANGE_TYPE, change).filter(F.col(S.CHANGE_TYPE).isNotNull()).select(
        S.RECORD_KEY,
        current,
        proposed,
        S.CHANGE_TYPE,
        F.lit(ctx.summary.run_id).alias(S.RUN_ID),
        ctx.now.alias(S.COMPUTED_AT),
    ).cache()
    ctx.store.overwrite(S.DRY_RUN_CHANGES, changes.select(*S.DRY_RUN_CHANGES_SCHEMA.fieldNames()))
    counts = count_map(changes, S.CHANGE_TYPE)
    ctx.progress.report(
        "dry run: would change "
        + (", ".join(f"{kind} {count}" for kind, count in sorted(counts.items())) or "nothing")
        + f"; entities {ctx.summary.entities} (new {ctx.summary.entities_created}, merges "
        f"{ctx.summary.entities_merged}, splits {ctx.summary.entities_split}); largest "
        f"{ctx.summary.largest_entity} records. Details: table {S.DRY_RUN_CHANGES}"
    )
    changes.unpersist()


def merge_changes(
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
