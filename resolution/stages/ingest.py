"""Ingest: what changed in each source since the last committed run."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.frames import count_map, materialize, union_all
from resolution.sources import (
    CHANGE,
    DELETE,
    RAW_ROW,
    REASON,
    REJECT,
    SOURCE_KEY,
    UPSERT,
    SourceChanges,
    capture_changes,
)
from resolution.stages.context import DECISIONS_VERSION, RunContext


@dataclass(frozen=True)
class Captured:
    """The run's changes: ``changes`` (every source's upserts, deletes and rejections, read
    once), the committed ``old_records``, and whether anything asks for re-resolving."""

    old_records: DataFrame
    sources: tuple[SourceChanges, ...]
    changes: DataFrame
    counts: dict[str, int]  # rows per change kind
    decisions_version: int | None  # of review_decisions, None before the first decision

    @property
    def upserted(self) -> DataFrame:
        return self.changes.filter(F.col(CHANGE) == UPSERT)

    @property
    def deleted(self) -> DataFrame:
        """``record_key`` of the records deleted from their source."""
        return self.changes.filter(F.col(CHANGE) == DELETE).select(S.RECORD_KEY)

    @property
    def rejected(self) -> DataFrame:
        """Rows of ``rejected_records`` (before the run's stamps)."""
        return self.changes.filter(F.col(CHANGE) == REJECT).select(
            S.SOURCE, F.col(S.SOURCE_ID).alias(SOURCE_KEY), REASON, RAW_ROW
        )

    @property
    def complete_sources(self) -> list[str]:
        """Sources read whole: their rejections are their full set."""
        return [source.name for source in self.sources if source.complete]


def capture(ctx: RunContext) -> Captured:
    """Read what changed in every source (all of it with ``ctx.full``); count it."""
    # Read whole on every run: a snapshot source's rows are compared with their committed
    # hashes, and any live record can be a changed record's blocking partner (its rule keys are
    # read by the score stage; a persisted key index would avoid the scan). Not cached: each use
    # reads only the columns it needs from Parquet, and caching every column of every record
    # cost more than all those scans (1M records of benchmarks/scale.py, 1% changed, runs
    # alternated in one warm session: 109-117 s a run cached, 90-91 s not). The table is
    # written last in a run (publish), so every read sees the state the run started from.
    old_records = ctx.table(S.SOURCE_RECORDS, ctx.records_schema)
    sources = capture_changes(
        ctx.spark,
        ctx.config,
        store=ctx.store,
        previous=old_records.select(S.SOURCE, S.RECORD_KEY, S.ROW_HASH),
        versions=ctx.versions,
        full=ctx.full,
        feeds=ctx.feeds,
    )
    # One materialization reads every source once; the rest are filters of it.
    changes = ctx.held(union_all([source.changes for source in sources]).transform(materialize))
    counts = count_map(changes, CHANGE)
    summary = ctx.summary
    summary.records_rejected = counts.get(REJECT, 0)
    summary.source_versions = {**ctx.versions}
    summary.source_versions.update({s.name: s.version for s in sources if s.version is not None})
    return Captured(old_records, tuple(sources), changes, counts, ctx.store.version(S.REVIEW_DECISIONS))


def nothing_to_resolve(ctx: RunContext, captured: Captured) -> bool:
    """An incremental run with no source change and no new review decision: every later stage
    would only re-derive what the tables hold."""
    version = captured.decisions_version
    return (
        not ctx.full
        and not captured.counts.get(UPSERT)
        and not captured.counts.get(DELETE)
        and ctx.versions.get(DECISIONS_VERSION) == (None if version is None else str(version))
    )
