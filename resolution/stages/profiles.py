"""Golden profiles and review pairs of the re-clustered entities."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.frames import materialize
from resolution.golden import build_golden_profiles
from resolution.graph import edges_touching
from resolution.stages.context import RunContext
from resolution.stages.identify import Identified


@dataclass(frozen=True)
class Profiled:
    """``golden`` / ``review``: the region's new golden profiles and review pairs;
    ``old_golden`` / ``old_review``: their committed rows this run replaces."""

    identified: Identified
    golden: DataFrame
    old_golden: DataFrame
    review: DataFrame
    old_review: DataFrame


def profile(ctx: RunContext, identified: Identified) -> Profiled:
    clustered = identified.clustered
    scored = clustered.scored
    membership, previous = identified.membership, identified.previous
    golden = build_golden_profiles(clustered.affected, membership, config=ctx.config)
    old_ids = previous.select(S.ENTITY_ID).unionByName(membership.select(S.ENTITY_ID)).distinct()
    if not ctx.full:  # the region's ids, broadcast into the table's scan
        old_ids = ctx.held(old_ids.transform(materialize))
    # The region's committed rows of these tables, found by entity id and by record key: the
    # tables are not laid out by those, so each read scans the table.
    old_golden = ctx.table(S.GOLDEN_PROFILES, ctx.golden_schema).join(old_ids, S.ENTITY_ID, "left_semi")
    new_edges = scored.new_edges
    edges = clustered.kept_region_edges.select(*new_edges.columns).unionByName(new_edges)
    everyone = identified.everyone
    if not ctx.full:
        # A review pair can reach outside the region: look up the entities of its records only
        # (a few), not join the pairs with every live record.
        edges = ctx.held(edges.filter(F.col(S.EDGE_STATUS) == S.REVIEW).transform(materialize))
        ends = edges.select(F.col(S.RECORD_KEY_L).alias(S.RECORD_KEY)).unionByName(
            edges.select(F.col(S.RECORD_KEY_R).alias(S.RECORD_KEY))
        )
        everyone = everyone.join(ctx.held(ends.distinct().transform(materialize)), S.RECORD_KEY, "left_semi")
    review = review_pairs(edges, everyone, rejected=scored.review_rejected)
    review = ctx.held(review.transform(materialize))
    ctx.summary.review_pairs = review.count()
    old_review = edges_touching(ctx.table(S.REVIEW_QUEUE, S.REVIEW_QUEUE_SCHEMA), clustered.region)
    return Profiled(identified, golden, old_golden, review, old_review)


def review_pairs(edges: DataFrame, membership: DataFrame, *, rejected: DataFrame | None) -> DataFrame:
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
        return pairs.withColumn(S.STATUS, F.lit("open"))
    flagged = rejected.select(S.RECORD_KEY_L, S.RECORD_KEY_R, F.lit("rejected").alias(S.STATUS))
    return pairs.join(flagged, [S.RECORD_KEY_L, S.RECORD_KEY_R], "left").withColumn(
        S.STATUS, F.coalesce(F.col(S.STATUS), F.lit("open"))
    )
