"""Cluster: the part of the graph the changes touch, re-clustered, constraints applied."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.clustering import DST, SRC, get_connected_components
from resolution.clustering.constrained import constrain_clusters
from resolution.frames import count_map, materialize
from resolution.graph import edges_touching, entities_joined_by_cuts
from resolution.identity import CLUSTER, clusters_for_records
from resolution.stages.context import RunContext
from resolution.stages.score import Scored


@dataclass(frozen=True)
class Clustered:
    """``clustered``: the ``affected`` records (the re-clustered part) with their cluster;
    ``region``: their keys and the deleted ones (whose committed rows this run replaces);
    ``old_touched_edges`` / ``kept_region_edges``: the region's committed edges this run
    replaces / keeps; ``cuts``: links constraints cut; ``old_cuts``: the committed ones."""

    scored: Scored
    old_membership: DataFrame
    affected: DataFrame
    region: DataFrame
    clustered: DataFrame
    old_touched_edges: DataFrame
    kept_region_edges: DataFrame
    cuts: DataFrame
    old_cuts: DataFrame


def cluster(ctx: RunContext, scored: Scored) -> Clustered:
    # Read whole (cached): the changed records' entities, then every record of those, are two
    # lookups (by record key, then by entity id) in a table laid out by neither.
    old_membership = ctx.held(ctx.table(S.RESOLVED_MEMBERSHIP, S.RESOLVED_MEMBERSHIP_SCHEMA).cache())
    old_cuts = ctx.table(S.CUT_EDGES, S.CUT_EDGES_SCHEMA)
    affected_keys = _affected_keys(ctx, scored, old_membership, old_cuts)
    region = affected_keys.unionByName(scored.standardized.captured.deleted).distinct()
    if not ctx.full:
        # materialized, so that (small) it is broadcast: each table read by region (edges,
        # membership, review queue, cuts) is then filtered where it is scanned, not shuffled whole
        region = ctx.held(region.transform(materialize))
    affected = ctx.held(scored.standardized.live.join(affected_keys, S.RECORD_KEY, "left_semi").transform(materialize))
    old_touched_edges, kept_region_edges = _region_edges(ctx, scored, region)
    # A reviewer's acceptance is the strongest link (constraints and rejections still apply).
    weight = F.when(F.col(S.RULE) == S.ACCEPTED_RULE, F.lit(float("inf"))).otherwise(F.col(S.MATCH_WEIGHT))
    new_links = scored.new_links
    links = (
        kept_region_edges.filter(F.col(S.EDGE_STATUS) == S.LINK)
        .select(*new_links.columns)
        .unionByName(new_links)
        .select(S.RECORD_KEY_L, S.RECORD_KEY_R, weight.alias(S.MATCH_WEIGHT))
    )
    clustering = get_connected_components(
        ctx.spark, ctx.backends.clustering, max_edges=ctx.config.matching.max_embedded_graph_edges
    )
    components = clustering.components(
        links.select(F.col(S.RECORD_KEY_L).alias(SRC), F.col(S.RECORD_KEY_R).alias(DST))
    )
    clustered = ctx.held(clusters_for_records(affected, components).transform(materialize))
    cuts = ctx.spark.createDataFrame([], S.CUT_EDGES_SCHEMA).select(*S.CUT_EDGES_SCHEMA.fieldNames()[:4])
    rejected = scored.review_rejected
    if ctx.config.cannot_link or (rejected is not None and rejected.first() is not None):
        constrained = ctx.config.cannot_link
        labels, cuts = constrain_clusters(
            clustered.join(affected.select(S.RECORD_KEY, *constrained.attributes), S.RECORD_KEY),
            links,
            attributes=constrained.attributes,
            unique_sources=constrained.unique_sources,
            rejected_pairs=rejected,
            tolerate=constrained.tolerate,
        )
        cuts = cuts.transform(materialize)
        clustered = ctx.held(
            clustered.drop(CLUSTER).join(labels, S.RECORD_KEY).select(*clustered.columns).transform(materialize)
        )
    ctx.summary.edges_cut = count_map(cuts, S.CUT_BY)
    return Clustered(scored, old_membership, affected, region, clustered, old_touched_edges, kept_region_edges,
                     cuts, old_cuts)


def _affected_keys(ctx: RunContext, scored: Scored, old_membership: DataFrame, old_cuts: DataFrame) -> DataFrame:
    """The affected part of the graph: entities holding a changed, deleted or newly linked
    record, plus the changed records. Links cross entities only where a constraint cut them,
    and the entities a cut joins are added, so this part is closed."""
    new_links = scored.new_links
    seeds = scored.touched.unionByName(
        new_links.select(F.col(S.RECORD_KEY_L).alias(S.RECORD_KEY))
    ).unionByName(new_links.select(F.col(S.RECORD_KEY_R).alias(S.RECORD_KEY)))
    if not ctx.full:  # few: materialized, they are broadcast into the membership scan
        seeds = ctx.held(seeds.distinct().transform(materialize))
    affected_entities = old_membership.join(seeds, S.RECORD_KEY, "left_semi").select(S.ENTITY_ID).distinct()
    if not ctx.full:
        # Entities a constraint split apart were one connected component: re-cluster them together.
        affected_entities = entities_joined_by_cuts(old_membership, affected_entities, old_cuts)
    return ctx.held(
        old_membership.join(affected_entities, S.ENTITY_ID, "left_semi")
        .select(S.RECORD_KEY)
        .unionByName(seeds)
        .distinct()
        .transform(materialize)
    )


def _region_edges(ctx: RunContext, scored: Scored, region: DataFrame) -> tuple[DataFrame, DataFrame]:
    """The region's committed edges this run replaces (they touch a rescored or deleted
    record), and those it keeps."""
    old_edges = ctx.table(S.MATCH_EDGES, S.MATCH_EDGES_SCHEMA)
    if ctx.full:  # every old edge is replaced
        return old_edges, ctx.spark.createDataFrame([], S.MATCH_EDGES_SCHEMA)
    # read once, whole: the region's old edges are found by record key, which the table is
    # not laid out by
    region_edges = ctx.held(edges_touching(old_edges, region).transform(materialize))
    old_touched_edges = edges_touching(region_edges, scored.touched)
    kept = region_edges.join(
        old_touched_edges.select(S.RECORD_KEY_L, S.RECORD_KEY_R), [S.RECORD_KEY_L, S.RECORD_KEY_R], "left_anti"
    )
    return old_touched_edges, kept
