"""Candidate preparation and edge classification: pure transforms around the Splink scorer."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from resolution.config import IdentifierRule
from resolution.schemas import (
    COMPARISON_LEVELS,
    EDGE_STATUS,
    LINK,
    MATCH_PROBABILITY,
    MATCH_WEIGHT,
    MODEL_RULE,
    RECORD_KEY_L,
    RECORD_KEY_R,
    REVIEW,
    RULE,
)

OVERSIZED_SUFFIX = "__oversized"


def mask_oversized_identifiers(records: DataFrame, *, rules: Sequence[IdentifierRule]) -> DataFrame:
    """Null identifier values shared by more records than the rule's ``max_group_size``.

    A value that many records share (a shop's default email, a call-centre phone) is junk, not
    evidence: masked, it neither links by rule nor counts in the model's comparisons. For each
    rule a boolean ``<attribute>__oversized`` column tells which records were masked.
    """
    masked = records
    for rule in rules:
        value = F.col(rule.attribute)
        group_size = F.count(F.lit(1)).over(Window.partitionBy(value))
        oversized = value.isNotNull() & (group_size > rule.max_group_size)
        masked = masked.withColumn(f"{rule.attribute}{OVERSIZED_SUFFIX}", oversized)
        masked = masked.withColumn(
            rule.attribute, F.when(~F.col(f"{rule.attribute}{OVERSIZED_SUFFIX}"), value)
        )
    return masked


def classify_edges(
    scored: DataFrame, *, link_threshold: float, review_threshold: float
) -> DataFrame:
    """Label each scored pair ``link`` or ``review``; pairs below the review band are dropped.

    Pairs found by a deterministic identifier rule are links whatever the model says.
    """
    probability = F.col(MATCH_PROBABILITY)
    status = (
        F.when(F.col(RULE) != MODEL_RULE, F.lit(LINK))
        .when(probability >= link_threshold, F.lit(LINK))
        .when(probability >= review_threshold, F.lit(REVIEW))
    )
    return scored.withColumn(EDGE_STATUS, status).filter(F.col(EDGE_STATUS).isNotNull()).select(
        RECORD_KEY_L,
        RECORD_KEY_R,
        RULE,
        EDGE_STATUS,
        MATCH_PROBABILITY,
        MATCH_WEIGHT,
        COMPARISON_LEVELS,
    )
