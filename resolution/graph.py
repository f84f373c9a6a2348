"""Edge and component helpers: which edges touch a set of records, which entities a cut joins."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.frames import materialize


def entities_joined_by_cuts(membership: DataFrame, entities: DataFrame, cuts: DataFrame) -> DataFrame:
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
        crossing = edges_touching(cuts, keys)
        ends = crossing.select(F.col(S.RECORD_KEY_L).alias(S.RECORD_KEY)).unionByName(
            crossing.select(F.col(S.RECORD_KEY_R).alias(S.RECORD_KEY))
        )
        reached = membership.join(ends, S.RECORD_KEY, "left_semi").select(S.ENTITY_ID)
        added = reached.join(entities, S.ENTITY_ID, "left_anti").distinct().transform(materialize)
        if added.first() is None:
            return entities
        entities = entities.unionByName(added).transform(materialize)


def pairs_within(pairs: DataFrame, keys: DataFrame) -> DataFrame:
    """Pairs (``record_key_l, record_key_r``) with both endpoints among ``keys``."""
    return pairs.join(keys.select(F.col(S.RECORD_KEY).alias(S.RECORD_KEY_L)), S.RECORD_KEY_L, "left_semi").join(
        keys.select(F.col(S.RECORD_KEY).alias(S.RECORD_KEY_R)), S.RECORD_KEY_R, "left_semi"
    )


def edges_touching(edges: DataFrame, keys: DataFrame) -> DataFrame:
    """Edges with at least one endpoint among ``keys`` (a frame with ``record_key``)."""
    left_keys = keys.select(F.col(S.RECORD_KEY).alias(S.RECORD_KEY_L))
    right_keys = keys.select(F.col(S.RECORD_KEY).alias(S.RECORD_KEY_R))
    by_left = edges.join(left_keys, S.RECORD_KEY_L, "left_semi")
    # edges matched by their right endpoint only, so no edge appears twice
    by_right_only = edges.join(right_keys, S.RECORD_KEY_R, "left_semi").join(
        left_keys, S.RECORD_KEY_L, "left_anti"
    )
    return by_left.unionByName(by_right_only)
