"""Identify: entity ids for the re-clustered records by the id policy, and the lineage events."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.frames import count_map, materialize
from resolution.identity import assign_entity_ids, id_events
from resolution.stages.cluster import Clustered
from resolution.stages.context import RunContext

logger = logging.getLogger(__name__)


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
    taken = old_membership.select(S.ENTITY_ID).unionByName(
        ctx.table(S.ENTITY_LINEAGE, S.ENTITY_LINEAGE_SCHEMA).select(S.ENTITY_ID)
    )
    before = previous.select(S.RECORD_KEY, S.ENTITY_ID, S.IS_PRIMARY)
    membership = ctx.held(assign_entity_ids(clustered.clustered, before, taken=taken).transform(materialize))
    lineage = ctx.held(id_events(clustered.clustered, before, membership).transform(materialize))
    untouched = old_membership.join(region, S.RECORD_KEY, "left_anti")
    identified = Identified(clustered, previous, membership, lineage, untouched)
    _count_entities(ctx, identified)
    return identified


def entity_totals(membership: DataFrame) -> tuple[int, int]:
    """How many entities ``membership`` (``entity_id`` per record) holds, and the largest's size."""
    sizes = membership.groupBy(S.ENTITY_ID).count()
    totals = sizes.agg(F.count(F.lit(1)).alias("entities"), F.max("count").alias("largest")).first()
    return int(totals["entities"]), int(totals["largest"] or 0)


def _count_entities(ctx: RunContext, identified: Identified) -> None:
    summary, config = ctx.summary, ctx.config
    summary.entities, summary.largest_entity = entity_totals(identified.everyone)
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
