"""Candidate preparation and edge classification: pure transforms around the Splink scorer."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from resolution.config import IdentifierRule
from resolution.frames import materialize
from resolution.rules import edge_rule_column, edge_status_column, oversized_column
from resolution.schemas import (
    ACCEPTED_RULE,
    COMPARISON_LEVELS,
    EDGE_STATUS,
    MATCH_PROBABILITY,
    MATCH_WEIGHT,
    RECORD_KEY,
    RECORD_KEY_L,
    RECORD_KEY_R,
    RULE,
)

OVERSIZED_SUFFIX = "__oversized"


IDENTIFIER = "identifier"
VALUE = "value"


def identifier_values(records: DataFrame, *, rules: Sequence[IdentifierRule]) -> DataFrame:
    """``record_key, identifier, value``: one row per non-null value of each identifier rule.

    One long frame lets every rule's group sizes be counted in one aggregation.
    """
    if not rules:
        return records.select(
            RECORD_KEY, F.lit(None).cast("string").alias(IDENTIFIER), F.lit(None).cast("string").alias(VALUE)
        ).limit(0)
    entries = F.array(
        *[
            F.struct(F.lit(rule.attribute).alias(IDENTIFIER), F.col(rule.attribute).cast("string").alias(VALUE))
            for rule in rules
        ]
    )
    return (
        records.select(RECORD_KEY, F.explode(entries).alias("__entry"))
        .select(RECORD_KEY, F.col(f"__entry.{IDENTIFIER}").alias(IDENTIFIER), F.col(f"__entry.{VALUE}").alias(VALUE))
        .filter(F.col(VALUE).isNotNull())
    )


def group_size_limit(rules: Sequence[IdentifierRule]) -> Column:
    """The ``max_group_size`` of the rule named in the ``identifier`` column."""
    limit = F.lit(None).cast("long")
    for rule in rules:
        limit = F.when(F.col(IDENTIFIER) == rule.attribute, F.lit(rule.max_group_size)).otherwise(limit)
    return limit


def identifier_group_sizes(
    records: DataFrame, *, rules: Sequence[IdentifierRule], values: DataFrame | None = None
) -> DataFrame:
    """``identifier, value, count``: how many ``records`` hold each identifier value.

    With ``values`` (``identifier, value``), only those groups are counted: an incremental run
    needs the sizes of the few values its changed records touch, not of every value.
    """
    held = identifier_values(records, rules=rules)
    if values is not None:
        held = held.join(values.select(IDENTIFIER, VALUE), [IDENTIFIER, VALUE], "left_semi")
    return held.groupBy(IDENTIFIER, VALUE).count()


def mask_oversized_identifiers(
    records: DataFrame, *, rules: Sequence[IdentifierRule], sizes: DataFrame | None = None
) -> DataFrame:
    """Null identifier values shared by more records than the rule's ``max_group_size``.

    A value that many records share (a shop's default email, a call-centre phone) is junk, not
    evidence: masked, it neither links by rule nor counts in the model's comparisons. For each
    rule a boolean ``<attribute>__oversized`` column tells which records were masked.
    ``sizes`` (from :func:`identifier_group_sizes` over all live records) judges the values;
    by default they are counted over ``records`` themselves.
    """
    if sizes is None:
        sizes = identifier_group_sizes(records, rules=rules)
    oversized = sizes.filter(oversized_column(F.col("count"), group_size_limit(rules)))
    masked = records
    for rule in rules:
        flag = f"{rule.attribute}{OVERSIZED_SUFFIX}"
        junk = oversized.filter(F.col(IDENTIFIER) == rule.attribute).select(
            F.col(VALUE).alias("__junk_value"), F.lit(True).alias(flag)
        )
        value = F.col(rule.attribute)
        masked = masked.join(junk, value.cast("string") == F.col("__junk_value"), "left").drop("__junk_value")
        masked = masked.withColumn(flag, F.coalesce(F.col(flag), F.lit(False))).withColumn(
            rule.attribute, F.when(~F.col(flag), value)
        )
    return masked


RULE_INDEX = "__rule"
RULE_KEY = "__key"


def _all_present(rule: Sequence[str]) -> Column:
    """True where every column of the rule is non-null (null agrees with nothing)."""
    present = F.lit(True)
    for column in rule:
        present = present & F.col(column).isNotNull()
    return present


def rule_keys(records: DataFrame, rules: Sequence[Sequence[str]]) -> DataFrame:
    """``record_key, __rule, __key``: per record, one row for each rule whose columns are all
    non-null, with the rule's position and its values (as strings, in the rule's order).

    Two records agree on every column of rule ``i`` exactly when they have equal ``(__rule,
    __key)`` rows, so one equi-join on these finds the pairs of every rule at once (a join per
    rule costs Spark a job or two each, whatever the size of the inputs).
    """
    entries = []
    for index, rule in enumerate(rules):
        key = F.array(*[F.col(column).cast("string") for column in rule])
        entries.append(F.when(_all_present(rule), F.struct(F.lit(index).alias(RULE_INDEX), key.alias(RULE_KEY))))
    return (
        records.select(RECORD_KEY, F.explode(F.array(*entries)).alias("__entry"))
        .filter(F.col("__entry").isNotNull())
        .select(RECORD_KEY, F.col(f"__entry.{RULE_INDEX}").alias(RULE_INDEX),
                F.col(f"__entry.{RULE_KEY}").alias(RULE_KEY))
    )


def rule_hashes(records: DataFrame, rules: Sequence[Sequence[str]]) -> DataFrame:
    """``record_key, __key``: :func:`rule_keys` with each key as one 64-bit hash of the rule's
    position and values. Equal keys give equal hashes; two unequal keys may share one (rarely),
    so a join on these finds every pair :func:`rule_keys` finds and perhaps a few more."""
    entries = [
        F.when(_all_present(rule), F.xxhash64(F.lit(index), *[F.col(column) for column in rule]))
        for index, rule in enumerate(rules)
    ]
    return (
        records.select(RECORD_KEY, F.explode(F.array(*entries)).alias(RULE_KEY))
        .filter(F.col(RULE_KEY).isNotNull())
    )


def blocking_candidate_keys(
    records: DataFrame, seeds: DataFrame, *, rules: Sequence[Sequence[str]]
) -> DataFrame:
    """``record_key`` of the ``records`` that share every column of some blocking rule with one
    of ``seeds`` (and perhaps a few more: :func:`rule_hashes`).

    Only these can be paired with a seed, so an incremental run scores its changed records
    against them instead of against every live record (the scorer's own blocking then keeps
    the true pairs). Values are compared before junk masking, so the set is a superset of what
    the (masked) blocking pairs. One semi-join on every rule's hashed keys, not one per rule:
    a long per key, where the keys themselves were arrays of strings (1M records, a 1% change:
    the scan that explodes every live record's keys ran 3.6 s with arrays).
    """
    if not rules:
        return records.select(RECORD_KEY).limit(0)
    keys = rule_hashes(seeds, rules).select(RULE_KEY).distinct()
    return rule_hashes(records, rules).join(F.broadcast(keys), RULE_KEY, "left_semi").select(RECORD_KEY).distinct()


def classify_edges(
    scored: DataFrame,
    *,
    link_threshold: float,
    review_threshold: float,
    accepted: DataFrame | None = None,
) -> DataFrame:
    """Label each scored pair ``link`` or ``review``; pairs below the review band are dropped.

    Pairs found by a deterministic identifier rule are links whatever the model says.
    ``accepted`` (``record_key_l < record_key_r``): pairs a reviewer accepted. They are links
    too: a model pair below the link threshold becomes rule ``accepted`` (its score and
    comparison levels kept as evidence), and an accepted pair no rule or blocking rule found
    is added as an ``accepted`` link without a score.
    """
    probability = F.col(MATCH_PROBABILITY)
    is_accepted = F.lit(False)
    if accepted is not None:
        pairs = accepted.select(RECORD_KEY_L, RECORD_KEY_R).distinct()
        unscored = pairs.join(scored, [RECORD_KEY_L, RECORD_KEY_R], "left_anti").select(
            RECORD_KEY_L,
            RECORD_KEY_R,
            F.lit(ACCEPTED_RULE).alias(RULE),
            F.lit(None).cast("double").alias(MATCH_PROBABILITY),
            F.lit(None).cast("double").alias(MATCH_WEIGHT),
            F.lit(None).cast("map<string,string>").alias(COMPARISON_LEVELS),
        )
        scored = (
            scored.join(pairs.withColumn("__accepted", F.lit(True)), [RECORD_KEY_L, RECORD_KEY_R], "left")
            .unionByName(unscored.withColumn("__accepted", F.lit(True)))
        )
        is_accepted = F.coalesce(F.col("__accepted"), F.lit(False))
    rule = edge_rule_column(F.col(RULE), probability, is_accepted, link_threshold=link_threshold)
    status = edge_status_column(
        F.col(RULE), probability, is_accepted, link_threshold=link_threshold, review_threshold=review_threshold
    )
    return scored.withColumn(EDGE_STATUS, status).filter(F.col(EDGE_STATUS).isNotNull()).select(
        RECORD_KEY_L,
        RECORD_KEY_R,
        rule.alias(RULE),
        EDGE_STATUS,
        MATCH_PROBABILITY,
        MATCH_WEIGHT,
        COMPARISON_LEVELS,
    )


def crossed_group_records(live: DataFrame, *, new_rows: DataFrame, old_rows: DataFrame, rules,
                          held: Callable[[DataFrame], DataFrame] = lambda frame: frame) -> DataFrame:
    """Live records holding an identifier value whose group crossed ``max_group_size``.

    Only values of a changed or deleted record (``old_rows``: their committed rows,
    ``new_rows``: the changed records now) can change group size. Their sizes now are counted
    over ``live``; their sizes before are those minus what the new rows added plus what the
    old rows held. ``held`` is given each frame this materializes, for the caller to release.
    """
    group = [IDENTIFIER, VALUE]
    added = identifier_values(new_rows, rules=rules).groupBy(*group).agg(F.count(F.lit(1)).alias("__added"))
    removed = identifier_values(old_rows, rules=rules).groupBy(*group).agg(F.count(F.lit(1)).alias("__removed"))
    # The values a change moved, and those whose group flipped, are few: materialized, they
    # are broadcast into the scans of every live record's values instead of shuffling those.
    moved = held(added.join(removed, group, "full").transform(materialize))
    after = identifier_group_sizes(live, rules=rules, values=moved).withColumnRenamed("count", "__after")
    size_after = F.coalesce(F.col("__after"), F.lit(0))
    size_before = size_after - F.coalesce(F.col("__added"), F.lit(0)) + F.coalesce(F.col("__removed"), F.lit(0))
    limit = group_size_limit(rules)
    flipped = moved.join(after, group, "left").filter((size_before > limit) != (size_after > limit))
    flipped = held(flipped.select(*group).transform(materialize))
    if flipped.isEmpty():  # mostly: no group crossed its limit
        return live.select(RECORD_KEY).limit(0)
    holders = identifier_values(live, rules=rules).join(flipped, group, "left_semi")
    return holders.select(RECORD_KEY).distinct()
