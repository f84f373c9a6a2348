"""Golden profiles: one row per entity with surviving attribute values (survivorship)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from resolution.config import Config
from resolution.schemas import (
    DISPLAY_KINDS,
    DISPLAY_VALUES,
    ENTITY_ID,
    FIRST_SEEN,
    IS_PRIMARY,
    LAST_SEEN,
    PRIMARY_RECORD_KEY,
    RECORD_COUNT,
    RECORD_KEY,
    SOURCE,
    SOURCE_PRIORITY,
    SOURCE_TIMESTAMP,
    SOURCES,
)


def _epoch() -> Column:
    """Source timestamp in microseconds; records without one count as the oldest."""
    return F.coalesce(F.unix_micros(F.col(SOURCE_TIMESTAMP)), F.lit(-(2**62)))


def _display(attribute: str) -> Column:
    """The record's display value of ``attribute``, or its match form when it has none."""
    return F.coalesce(F.col(DISPLAY_VALUES)[attribute], F.col(attribute).cast("string"))


def _ordered_pick(value: Column, shown: Column | None, *order: Column) -> Column:
    """The value (``shown``: its display form) of the first record under ``order`` among
    records where it is not null.

    ``collect_list`` skips nulls, so records without a value never win.
    """
    picked = (value if shown is None else shown).alias("value")
    candidates = F.collect_list(F.when(value.isNotNull(), F.struct(*order, picked)))
    return F.try_element_at(F.sort_array(candidates), F.lit(1))["value"]


def _survivor(attribute: str, rule: str, *, displayed: bool) -> Column:
    value = F.col(attribute)
    shown = _display(attribute) if displayed else None
    key = F.col(RECORD_KEY)
    priority = F.col(SOURCE_PRIORITY)
    if rule == "most_recent":
        return _ordered_pick(value, shown, -_epoch(), priority, key)
    if rule == "most_frequent":
        # Ties between equally frequent values go to the smallest value, deterministically;
        # frequency counts match forms (John and JOHN are one value), shown as the best
        # record's display value.
        winner = F.mode(value, deterministic=True)
        if shown is None:
            return winner
        forms = F.collect_list(F.when(value.isNotNull(), F.struct(priority, -_epoch(), key, value.alias("v"), shown.alias("s"))))
        return F.try_element_at(F.filter(F.sort_array(forms), lambda entry: entry["v"] == winner), F.lit(1))["s"]
    return _ordered_pick(value, shown, priority, -_epoch(), key)


def _all_values(attribute: str, *, displayed: bool) -> Column:
    """Every distinct value, the primary record's first, then by source priority and recency
    (distinct by match form, shown in the display form of its first record)."""
    value = F.col(attribute).cast("string")
    entries = F.sort_array(
        F.collect_list(
            F.when(
                value.isNotNull(),
                F.struct(
                    (~F.col(IS_PRIMARY)).alias("not_primary"),
                    F.col(SOURCE_PRIORITY).alias("priority"),
                    (-_epoch()).alias("age"),
                    value.alias("value"),
                    (_display(attribute) if displayed else value).alias("shown"),
                ),
            )
        )
    )
    values = F.transform(entries, lambda entry: entry["value"])
    first = F.filter(entries, lambda entry, index: F.array_position(values, entry["value"]) == index + 1)
    return F.transform(first, lambda entry: entry["shown"])


def build_golden_profiles(records: DataFrame, membership: DataFrame, *, config: Config) -> DataFrame:
    """Survivorship per attribute (source priority, most recent, most frequent) per entity.

    Names, addresses and free text are shown as the winning record wrote them (its display
    value, see :func:`resolution.standardize.standardize_records`), not in their match form.

    ``records``: standardized source records; ``membership``: record_key, entity_id, is_primary.
    """
    joined = records.join(membership.select(RECORD_KEY, ENTITY_ID, IS_PRIMARY), RECORD_KEY)
    survivorship = config.survivorship
    kinds = config.attribute_kinds
    profiles = joined.groupBy(ENTITY_ID).agg(
        F.max(F.when(F.col(IS_PRIMARY), F.col(RECORD_KEY))).alias(PRIMARY_RECORD_KEY),
        *[
            # aliased apart from the input columns: a later expression of this aggregate naming
            # the attribute must read the records' values, not this result
            _survivor(attribute, survivorship.rule_for(attribute), displayed=kinds[attribute] in DISPLAY_KINDS)
            .alias(f"__survivor_{attribute}")
            for attribute in config.attributes
        ],
        *[
            _all_values(attribute, displayed=kinds[attribute] in DISPLAY_KINDS).alias(f"{attribute}s")
            for attribute in survivorship.arrays
        ],
        F.count(F.lit(1)).alias(RECORD_COUNT),
        F.array_sort(F.collect_set(SOURCE)).alias(SOURCES),
        F.min(SOURCE_TIMESTAMP).alias(FIRST_SEEN),
        F.max(SOURCE_TIMESTAMP).alias(LAST_SEEN),
    )
    return profiles.select(
        ENTITY_ID,
        PRIMARY_RECORD_KEY,
        *[F.col(f"__survivor_{attribute}").alias(attribute) for attribute in config.attributes],
        *[f"{attribute}s" for attribute in survivorship.arrays],
        RECORD_COUNT,
        SOURCES,
        FIRST_SEEN,
        LAST_SEEN,
    )
