"""Golden profiles: one row per entity with surviving attribute values (survivorship)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from resolution.config import Config
from resolution.schemas import (
    ENTITY_ID,
    IS_PRIMARY,
    RECORD_KEY,
    SOURCE,
    SOURCE_PRIORITY,
    SOURCE_TIMESTAMP,
)


def _epoch() -> Column:
    """Source timestamp in microseconds; records without one count as the oldest."""
    return F.coalesce(F.unix_micros(F.col(SOURCE_TIMESTAMP)), F.lit(-(2**62)))


def _ordered_pick(value: Column, *order: Column) -> Column:
    """The value of the first record under ``order`` among records where it is not null.

    ``collect_list`` skips nulls, so records without a value never win.
    """
    candidates = F.collect_list(F.when(value.isNotNull(), F.struct(*order, value.alias("value"))))
    return F.try_element_at(F.sort_array(candidates), F.lit(1))["value"]


def _survivor(attribute: str, rule: str) -> Column:
    value = F.col(attribute)
    key = F.col(RECORD_KEY)
    priority = F.col(SOURCE_PRIORITY)
    if rule == "most_recent":
        return _ordered_pick(value, -_epoch(), priority, key)
    if rule == "most_frequent":
        # Ties between equally frequent values go to the smallest value, deterministically.
        return F.mode(value, deterministic=True)
    return _ordered_pick(value, priority, -_epoch(), key)


def _all_values(attribute: str) -> Column:
    """Every distinct value, the primary record's first, then by source priority and recency."""
    value = F.col(attribute).cast("string")
    entries = F.collect_list(
        F.when(
            value.isNotNull(),
            F.struct(
                (~F.col(IS_PRIMARY)).alias("not_primary"),
                F.col(SOURCE_PRIORITY).alias("priority"),
                (-_epoch()).alias("age"),
                value.alias("value"),
            ),
        )
    )
    return F.array_distinct(F.transform(F.sort_array(entries), lambda entry: entry["value"]))


def build_golden_profiles(records: DataFrame, membership: DataFrame, *, config: Config) -> DataFrame:
    """Survivorship per attribute (source priority, most recent, most frequent) per entity.

    ``records``: standardized source records; ``membership``: record_key, entity_id, is_primary.
    """
    joined = records.join(membership.select(RECORD_KEY, ENTITY_ID, IS_PRIMARY), RECORD_KEY)
    survivorship = config.survivorship
    profiles = joined.groupBy(ENTITY_ID).agg(
        F.max(F.when(F.col(IS_PRIMARY), F.col(RECORD_KEY))).alias("primary_record_key"),
        *[
            _survivor(attribute, survivorship.rule_for(attribute)).alias(attribute)
            for attribute in config.attributes
        ],
        *[_all_values(attribute).alias(f"{attribute}s") for attribute in survivorship.arrays],
        F.count(F.lit(1)).alias("record_count"),
        F.array_sort(F.collect_set(SOURCE)).alias("sources"),
        F.min(SOURCE_TIMESTAMP).alias("first_seen"),
        F.max(SOURCE_TIMESTAMP).alias("last_seen"),
    )
    return profiles.select(
        ENTITY_ID,
        "primary_record_key",
        *config.attributes,
        *[f"{attribute}s" for attribute in survivorship.arrays],
        "record_count",
        "sources",
        "first_seen",
        "last_seen",
    )
