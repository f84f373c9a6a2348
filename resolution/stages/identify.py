"""Identify: entity ids for the re-clustered records by the id policy, and the lineage events."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.frames import count_map, materialize
from resolution.identity import (
    LocalIds,
    assign_entity_ids,
    assign_ids_locally,
    collect_for_ids,
    id_events,
)
from resolution.stages.cluster import Clustered
from resolution.stages.context import RunContext

logger = logging.getLogger(__name__)

# An incremental run's region up to this many records gets its ids on the driver (the same
# policy in a few Spark jobs: the identify stage of a 1% run at 100k took 17 jobs, against 52
# with the DataFrame form); a larger one, and every full run, in Spark.
DRIVER_REGION_RECORDS = 50_000


@dataclass(frozen=True)
class Identified:
    """``membership``: the region's new rows; ``previous``: its committed rows;
    ``untouched``: committed rows outside the region; ``lineage``: id events."""

    clustered: Clustered
    previous: DataFrame
    membership: DataFrame
    lineage: DataFrame
    untouched: DataFrame

    @property
    def everyone(self) -> DataFrame:
        """``record_key, entity_id`` of every live record after this run."""
        return self.untouched.select(S.RECORD_KEY, S.ENTITY_ID).unionByName(
            self.membership.select(S.RECORD_KEY, S.ENTITY_ID)
        )


def identify(ctx: RunContext, clustered: Clustered) -> Identified:
    old_membership, region = clustered.old_membership, clustered.region
    previous = ctx.held(old_membership.join(region, S.RECORD_KEY, "left_semi").transform(materialize))
    retired = ctx.table(S.ENTITY_LINEAGE, S.ENTITY_LINEAGE_SCHEMA).select(S.ENTITY_ID)
    before = previous.select(S.RECORD_KEY, S.ENTITY_ID, S.IS_PRIMARY)
    membership = assign_entity_ids(
        clustered.clustered, before, taken=old_membership.select(S.ENTITY_ID).unionByName(retired)
    )
    collected = None if ctx.full else collect_for_ids(clustered.clustered, before, DRIVER_REGION_RECORDS)
    lookup = local = None
    if collected is None:
        membership = ctx.held(membership.transform(materialize))
        lineage = ctx.held(id_events(clustered.clustered, before, membership).transform(materialize))
    else:
        lookup = _IdLookup(ctx, old_membership, retired)
        local = assign_ids_locally(*collected, taken=lookup)
        # with the DataFrame forms' schemas (planned, not run): both paths hand on the same frames
        lineage_schema = id_events(clustered.clustered, before, membership).schema
        membership = ctx.spark.createDataFrame(local.membership, membership.schema)
        lineage = ctx.spark.createDataFrame(local.events, lineage_schema)
    untouched = old_membership.join(region, S.RECORD_KEY, "left_anti")
    identified = Identified(clustered, previous, membership, lineage, untouched)
    _count_entities(ctx, identified, local, lookup)
    return identified


class _IdLookup:
    """``taken(ids)`` for :func:`assign_ids_locally`: which of ``ids`` are in use or retired,
    in one semi-join; ``live``: those of them in the committed membership."""

    def __init__(self, ctx: RunContext, old_membership: DataFrame, retired: DataFrame):
        self.ctx, self.old_membership, self.retired = ctx, old_membership, retired
        self.live: set[str] = set()

    def __call__(self, ids: set[str]) -> set[str]:
        if not ids:
            return set()
        wanted = self.ctx.spark.createDataFrame([(i,) for i in sorted(ids)], f"{S.ENTITY_ID} string")
        found = (
            self.old_membership.select(S.ENTITY_ID, F.lit(True).alias("__live"))
            .unionByName(self.retired.select(S.ENTITY_ID, F.lit(False).alias("__live")))
            .join(F.broadcast(wanted), S.ENTITY_ID, "left_semi")
            .distinct()
            .collect()
        )
        self.live = {row[S.ENTITY_ID] for row in found if row["__live"]}
        return {row[S.ENTITY_ID] for row in found}


def entity_totals(membership: DataFrame) -> tuple[int, int]:
    """How many entities ``membership`` (``entity_id`` per record) holds, and the largest's size."""
    sizes = membership.groupBy(S.ENTITY_ID).count()
    totals = sizes.agg(F.count(F.lit(1)).alias("entities"), F.max("count").alias("largest")).first()
    return int(totals["entities"]), int(totals["largest"] or 0)


def _count_entities(
    ctx: RunContext, identified: Identified, local: LocalIds | None, lookup: _IdLookup | None
) -> None:
    """The run's entity figures. The count and the largest entity are one aggregate over all
    membership (the region's changes alone cannot tell the largest entity once it shrank)."""
    summary, config = ctx.summary, ctx.config
    summary.entities, summary.largest_entity = entity_totals(identified.everyone)
    if local is not None and lookup is not None:  # created: a fresh id not in the committed membership
        summary.entities_created = len(local.fresh - lookup.live)
        events = Counter(event[2] for event in local.events)
    else:
        summary.entities_created = (
            identified.membership.select(S.ENTITY_ID).distinct()
            .join(identified.clustered.old_membership.select(S.ENTITY_ID).distinct(), S.ENTITY_ID, "left_anti")
            .count()
        )
        events = count_map(identified.lineage, S.EVENT)
    summary.entities_merged = events.get(S.MERGED, 0)
    summary.entities_split = events.get(S.SPLIT, 0)
    if summary.largest_entity > config.matching.max_entity_size:
        logger.warning(
            "largest entity has %d records, above matching.max_entity_size=%d",
            summary.largest_entity,
            config.matching.max_entity_size,
        )
