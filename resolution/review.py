"""Reviewers' decisions on pairs, kept in the ``review_decisions`` Delta table.

An accepted pair is linked by the next run whatever the model says (rule ``accepted`` in
``match_edges``). A rejected pair is a cannot-link constraint: the next run keeps its two
records in different entities, even when other records link them (see
:mod:`resolution.clustering.constrained`). Decisions are rows anyone can write (this module,
``idr accept`` / ``idr reject``, the review notebook, SQL ``INSERT``/``MERGE`` on Databricks);
the latest decision per pair counts, and at the same instant a rejection wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from resolution import schemas as S
from resolution.store import DeltaStore

DECISIONS = (S.ACCEPT, S.REJECT)


class ReviewError(ValueError):
    """A decision names a record the warehouse does not hold, or a pair of one record."""


def decide_pairs(
    spark: SparkSession,
    store: DeltaStore,
    pairs: Sequence[tuple[str, str]],
    decision: str,
    *,
    decided_by: str | None = None,
    note: str | None = None,
) -> int:
    """Record ``decision`` (``accept``: the same person, ``reject``: two different people)
    on each pair of record keys; returns the pairs written.

    Every key must be a live record of ``source_records``: a typo would otherwise store a
    decision that never applies.
    """
    if decision not in DECISIONS:
        raise ReviewError(f"a decision is one of {', '.join(DECISIONS)}, got {decision!r}")
    ordered = []
    for left, right in pairs:
        if left == right:
            raise ReviewError(f"a pair needs two records, got {left!r} twice")
        ordered.append(tuple(sorted((left, right))))
    keys = sorted({key for pair in ordered for key in pair})
    known = set()
    if keys and store.exists(S.SOURCE_RECORDS):
        rows = store.read(S.SOURCE_RECORDS).filter(F.col(S.RECORD_KEY).isin(keys)).select(S.RECORD_KEY).collect()
        known = {row[S.RECORD_KEY] for row in rows}
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise ReviewError(f"no live record {unknown[0]!r} in source_records ({len(unknown)} unknown key(s))")
    now = datetime.now(timezone.utc)
    rows = [(left, right, decision, decided_by, now, note) for left, right in dict.fromkeys(ordered)]
    store.create_if_missing(S.REVIEW_DECISIONS, S.REVIEW_DECISIONS_SCHEMA)
    store.merge(
        S.REVIEW_DECISIONS,
        spark.createDataFrame(rows, S.REVIEW_DECISIONS_SCHEMA),
        keys=[S.RECORD_KEY_L, S.RECORD_KEY_R],
    )
    return len(rows)


def accept_pairs(spark: SparkSession, store: DeltaStore, pairs: Sequence[tuple[str, str]], **who) -> int:
    """Record that each pair is one person: the next run links them (see :func:`decide_pairs`)."""
    return decide_pairs(spark, store, pairs, S.ACCEPT, **who)


def reject_pairs(spark: SparkSession, store: DeltaStore, pairs: Sequence[tuple[str, str]], **who) -> int:
    """Record that each pair is two people: the next run keeps them apart (see :func:`decide_pairs`)."""
    return decide_pairs(spark, store, pairs, S.REJECT, **who)


def latest_decisions(decisions: DataFrame) -> DataFrame:
    """``record_key_l < record_key_r, decision``: the decision that counts for each pair.

    The latest wins; at the same instant a rejection wins (apart is the safe side). Keys may be
    written in either order and decisions in any case; values other than accept and reject
    (a typo in a SQL INSERT) are ignored.
    """
    decision = F.lower(F.trim(S.DECISION))
    ordered = decisions.select(
        F.least(S.RECORD_KEY_L, S.RECORD_KEY_R).alias(S.RECORD_KEY_L),
        F.greatest(S.RECORD_KEY_L, S.RECORD_KEY_R).alias(S.RECORD_KEY_R),
        decision.alias(S.DECISION),
        S.DECIDED_AT,
    ).filter(F.col(S.DECISION).isin(*DECISIONS) & (F.col(S.RECORD_KEY_L) != F.col(S.RECORD_KEY_R)))
    latest = Window.partitionBy(S.RECORD_KEY_L, S.RECORD_KEY_R).orderBy(
        F.col(S.DECIDED_AT).desc(), (F.col(S.DECISION) == S.REJECT).desc()
    )
    return (
        ordered.withColumn("__rank", F.row_number().over(latest))
        .filter(F.col("__rank") == 1)
        .select(S.RECORD_KEY_L, S.RECORD_KEY_R, S.DECISION)
    )


def latest_decisions_of(rows: Iterable[Mapping]) -> dict[tuple[str, str], str]:
    """``(record_key_l, record_key_r) -> decision``: the decision that counts for each pair.

    The Python rendering of :func:`latest_decisions`, which the service reads: pairs keyed low
    key first, the latest decision wins, at the same instant a rejection wins; decisions
    are trimmed of spaces (as Spark's ``trim``) and lower-cased, and values other than accept
    and reject, or a record paired with itself, are ignored.
    """
    ranked: dict[tuple[str, str], tuple] = {}
    for row in rows:
        left, right, decision = row[S.RECORD_KEY_L], row[S.RECORD_KEY_R], row[S.DECISION]
        decision = None if decision is None else decision.strip(" ").lower()
        if left is None or right is None or left == right or decision not in (S.ACCEPT, S.REJECT):
            continue
        pair = (min(left, right), max(left, right))
        decided_at = row[S.DECIDED_AT]
        # Spark orders decided_at descending with nulls last: a decision without a time is the oldest
        rank = (decided_at is not None, decided_at or 0, decision == S.REJECT, decision)
        if pair not in ranked or rank > ranked[pair]:
            ranked[pair] = rank
    return {pair: rank[-1] for pair, rank in ranked.items()}


def rejected_pairs(decisions: DataFrame) -> DataFrame:
    """``record_key_l, record_key_r`` of the pairs whose latest decision is a rejection."""
    latest = latest_decisions(decisions)
    return latest.filter(F.col(S.DECISION) == S.REJECT).select(S.RECORD_KEY_L, S.RECORD_KEY_R)


def accepted_pairs(decisions: DataFrame) -> DataFrame:
    """``record_key_l, record_key_r`` of the pairs whose latest decision is an acceptance."""
    latest = latest_decisions(decisions)
    return latest.filter(F.col(S.DECISION) == S.ACCEPT).select(S.RECORD_KEY_L, S.RECORD_KEY_R)


def decided_keys(store: DeltaStore, *, since_version: int | None) -> DataFrame:
    """``record_key`` of both records of every pair decided after ``since_version``.

    Their entities must be clustered again. ``since_version`` None (no run has read the
    decisions yet) gives every decided pair. The ``review_decisions`` table must exist.
    """
    if since_version is None:
        changed = store.read(S.REVIEW_DECISIONS)
    else:
        changed = store.read_changes(S.REVIEW_DECISIONS, starting_version=since_version + 1)
    return changed.select(F.col(S.RECORD_KEY_L).alias(S.RECORD_KEY)).unionByName(
        changed.select(F.col(S.RECORD_KEY_R).alias(S.RECORD_KEY))
    )
