"""Standardize: the changed records in their match forms, and the live records of the run."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.frames import count_map, materialize
from resolution.outputs import stamp_run
from resolution.stages.context import RunContext
from resolution.stages.ingest import Captured
from resolution.standardize import standardize_records


@dataclass(frozen=True)
class Standardized:
    """``changed``: the upserted records standardized (``source_records`` rows); ``live``:
    every live record after this run (the committed ones not changed or deleted, plus
    ``changed``)."""

    captured: Captured
    changed: DataFrame
    live: DataFrame

    @property
    def changed_keys(self) -> DataFrame:
        return self.changed.select(S.RECORD_KEY)

    @property
    def gone_or_changed(self) -> DataFrame:
        """``record_key`` of the committed records this run replaces or deletes."""
        return _gone_or_changed(self.changed, self.captured)


def _gone_or_changed(changed: DataFrame, captured: Captured) -> DataFrame:
    return changed.select(S.RECORD_KEY).unionByName(captured.deleted)


def standardize(ctx: RunContext, captured: Captured) -> Standardized:
    changed = stamp_run(standardize_records(captured.upserted, config=ctx.config), schema=ctx.records_schema,
                        **ctx.stamp)
    changed = ctx.held(changed.transform(materialize))
    if ctx.full:
        live = changed
    else:
        # Not materialized: every use scans the committed records (the columns it needs),
        # which is cheaper than copying all of them each run.
        replaced = F.broadcast(_gone_or_changed(changed, captured))
        live = captured.old_records.join(replaced, S.RECORD_KEY, "left_anti").unionByName(changed)
    summary = ctx.summary
    summary.records_read = dict(sorted(count_map(live, S.SOURCE).items()))
    summary.records_in = sum(summary.records_read.values())
    summary.value_issues = count_map(changed.select(F.explode(S.VALUE_ISSUES).alias("issue")), "issue")
    return Standardized(captured, changed, live)
