"""Split connected components that break a cannot-link constraint, keeping the strongest links.

Connected components join two people as soon as one chain of links joins them; in person data
that chain is usually a household (a shared family email, a record without a birth date that
scores high against a relative). A cannot-link constraint says two records are different people
whatever links them:

- **conflicting values** of an attribute declared strong (``dob``, a national id): two records
  with different non-null values;
- a **duplicate-free source** (a customer master, a census): two of its records;
- a **rejected pair** (a reviewer said no).

:func:`split_component` clusters one component greedily, strongest link first (highest match
weight; ties by record keys): a link joins its two clusters unless the joined cluster would
break a constraint, in which case the link is *cut* and the constraint that cut it is recorded.
The order is total, so the result depends only on the component's records, links and
constraints, never on the order they arrive in; a component that breaks no constraint is never
cut, so it stays exactly its connected component. Everything here is plain Python over one
component (components are small), so the same function runs on the driver or per component in
a grouped pandas UDF.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resolution.rules import cannot_link_conflict, cannot_link_violated
from resolution.schemas import (
    CUT_BY,
    DETAIL,
    MATCH_WEIGHT,
    RECORD_KEY,
    RECORD_KEY_L,
    RECORD_KEY_R,
    SOURCE,
)

# The constraint a cut names: "different:<attribute>", "unique_source:<source>" (see
# resolution.rules) or "rejected"
REJECTED = "rejected"

# Weights equal to this many decimals tie (and fall back to record keys): a pair rescored in
# another run may differ in its last bits, which must not reorder the links.
WEIGHT_DECIMALS = 6


@dataclass(frozen=True)
class Record:
    """What the constraints need of a record: its source and its strong attribute values."""

    key: str
    source: str
    values: Mapping[str, str | None]


@dataclass(frozen=True)
class Link:
    """A link between two records, with the model's match weight (None: weakest)."""

    key_l: str
    key_r: str
    weight: float | None


@dataclass(frozen=True)
class Cut:
    """A link not followed, because joining its two clusters would break ``constraint``."""

    key_l: str
    key_r: str
    constraint: str
    detail: str


class _Cluster:
    """A growing cluster: its members, their strong values, duplicate-free sources, rejections."""

    __slots__ = ("members", "values", "sources", "rejected")

    def __init__(self, record: Record, *, unique_sources: Collection[str], rejected: set[str]) -> None:
        self.members = {record.key}
        self.values = {name: {value} for name, value in record.values.items() if value is not None}
        self.sources = {record.source: record.key} if record.source in unique_sources else {}
        self.rejected = set(rejected)

    def conflict(self, other: _Cluster, attributes: Sequence[str],
                 tolerate: Mapping[str, Sequence[str]]) -> tuple[str, str] | None:
        """The first constraint joining ``other`` would break, as (constraint, detail)."""
        broken = cannot_link_conflict(self.values, other.values, self.sources, other.sources, attributes=attributes,
                                      tolerate=tolerate)
        if broken is not None:
            return broken
        crossing = sorted(self.rejected & other.members) or sorted(other.rejected & self.members)
        if crossing:
            return REJECTED, f"a reviewer rejected a pair with {crossing[0]}"
        return None

    def absorb(self, other: _Cluster) -> None:
        self.members |= other.members
        for name, values in other.values.items():
            self.values.setdefault(name, set()).update(values)
        for source, key in other.sources.items():
            self.sources.setdefault(source, key)
        self.rejected |= other.rejected


def _order(link: Link) -> tuple[float, str, str]:
    """Strongest first: by rounded weight, descending (None last), then by the pair's keys."""
    weight = link.weight
    rank = -math.inf if weight is None or math.isnan(weight) else round(weight, WEIGHT_DECIMALS)
    low, high = sorted((link.key_l, link.key_r))
    return -rank, low, high


def split_component(
    records: Iterable[Record],
    links: Iterable[Link],
    *,
    attributes: Sequence[str] = (),
    unique_sources: Collection[str] = (),
    rejected_pairs: Iterable[tuple[str, str]] = (),
    tolerate: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, str], list[Cut]]:
    """Cluster records greedily by their strongest links without breaking a constraint.

    ``tolerate``: per attribute, the differences that do not tell two people apart
    (``one_edit``...: see :func:`resolution.rules.values_differ`). Splink's single best links
    (clusters joining, round by round, only their mutual strongest allowed link) ends at the
    same partition for these constraints, which only grow as clusters join
    (``tests/test_constrained_clustering.py`` checks it on random components).

    Returns each record's cluster, named by its smallest record key (as connected components
    are), and the links cut, each with the constraint that cut it. Every endpoint of a link
    must be among ``records``; ``rejected_pairs`` may name records elsewhere (ignored).
    """
    by_key = {record.key: record for record in records}
    rejected: dict[str, set[str]] = {}
    for left, right in rejected_pairs:
        if left in by_key and right in by_key and left != right:
            rejected.setdefault(left, set()).add(right)
            rejected.setdefault(right, set()).add(left)
    unique = set(unique_sources)
    clusters = {
        key: _Cluster(record, unique_sources=unique, rejected=rejected.get(key, set()))
        for key, record in by_key.items()
    }
    parent = {key: key for key in by_key}

    def find(key: str) -> str:
        root = key
        while parent[root] != root:
            root = parent[root]
        while parent[key] != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    cuts = []
    for link in sorted(links, key=_order):
        for key in (link.key_l, link.key_r):
            if key not in by_key:
                raise ValueError(f"link {link.key_l} ~ {link.key_r} names {key}, which is not among the records")
        left, right = find(link.key_l), find(link.key_r)
        if left == right:
            continue
        conflict = clusters[left].conflict(clusters[right], attributes, tolerate or {})
        if conflict is not None:
            cuts.append(Cut(link.key_l, link.key_r, *conflict))
            continue
        big, small = (left, right) if len(clusters[left].members) >= len(clusters[right].members) else (right, left)
        clusters[big].absorb(clusters.pop(small))
        parent[small] = big
    labels = {}
    for cluster in clusters.values():
        name = min(cluster.members)
        labels.update(dict.fromkeys(cluster.members, name))
    return labels, cuts


# ------------------------------------------------------------------------------------ on Spark

CLUSTER = "cluster"
REJECTED_WITH = "rejected_with"
_KIND, _LEFT, _RIGHT = "__kind", "__left", "__right"
_SPLIT_SCHEMA = (
    f"{_KIND} string, {_LEFT} string, {_RIGHT} string, {CUT_BY} string, {DETAIL} string"
)


def _split_groups(attributes: Sequence[str], unique_sources: Collection[str],
                  tolerate: Mapping[str, Sequence[str]]):
    """The cogrouped pandas function: one component's records and links in, labels and cuts out."""
    import pandas as pd

    def split(records: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
        members = [
            Record(row[RECORD_KEY], row[SOURCE], {name: row[name] for name in attributes})
            for row in records.astype(object).where(records.notna(), None).to_dict("records")
        ]
        rejected = [
            (row[RECORD_KEY], partner)
            for row in records.to_dict("records")
            for partner in (row[REJECTED_WITH] if row[REJECTED_WITH] is not None else ())
        ]
        weights = links[MATCH_WEIGHT].astype(object).where(links[MATCH_WEIGHT].notna(), None)
        followed = [
            Link(left, right, weight)
            for left, right, weight in zip(links[RECORD_KEY_L], links[RECORD_KEY_R], weights, strict=True)
        ]
        labels, cuts = split_component(
            members, followed, attributes=attributes, unique_sources=unique_sources, rejected_pairs=rejected,
            tolerate=tolerate,
        )
        rows = [("label", key, label, None, None) for key, label in labels.items()]
        rows += [("cut", cut.key_l, cut.key_r, cut.constraint, cut.detail) for cut in cuts]
        return pd.DataFrame(rows, columns=[_KIND, _LEFT, _RIGHT, CUT_BY, DETAIL])

    return split


def constrain_clusters(
    records: DataFrame,
    links: DataFrame,
    *,
    attributes: Sequence[str],
    unique_sources: Collection[str],
    rejected_pairs: DataFrame | None = None,
    tolerate: Mapping[str, Sequence[str]] | None = None,
) -> tuple[DataFrame, DataFrame]:
    """Split the clusters of ``records`` that break a cannot-link constraint.

    ``records``: ``record_key, source, cluster`` (its connected component) and the constrained
    ``attributes``; ``links``: ``record_key_l, record_key_r, match_weight``, the links the
    components were built from. ``rejected_pairs``: ``record_key_l, record_key_r`` that must
    stay apart. Returns ``record_key, cluster`` for every record (clusters without a
    violation unchanged, by construction of :func:`split_component`) and the cut links:
    ``record_key_l, record_key_r, cut_by, detail``. Only the clusters that break a
    constraint reach Python, one cogrouped pandas call per cluster.
    """
    key, source, cluster = F.col(RECORD_KEY), F.col(SOURCE), F.col(CLUSTER)
    pairs = rejected_pairs if rejected_pairs is not None else records.sparkSession.createDataFrame(
        [], f"{RECORD_KEY_L} string, {RECORD_KEY_R} string"
    )
    both_ways = pairs.select(RECORD_KEY_L, RECORD_KEY_R).unionByName(
        pairs.select(F.col(RECORD_KEY_R).alias(RECORD_KEY_L), F.col(RECORD_KEY_L).alias(RECORD_KEY_R))
    )
    partners = both_ways.groupBy(F.col(RECORD_KEY_L).alias(RECORD_KEY)).agg(
        F.array_sort(F.collect_set(RECORD_KEY_R)).alias(REJECTED_WITH)
    )
    held = records.select(
        key, source, cluster, *[F.col(name).cast("string").alias(name) for name in attributes]
    ).join(partners, RECORD_KEY, "left")
    # a cluster breaks a constraint when it holds two values of an attribute, two records of a
    # duplicate-free source, or both records of a rejected pair
    partner_cluster = held.select(F.col(RECORD_KEY).alias("__partner"), F.col(CLUSTER).alias("__partner_cluster"))
    rejected_inside = (
        held.select(key, cluster, F.explode(REJECTED_WITH).alias("__partner"))
        .join(partner_cluster, "__partner")
        .filter(F.col("__partner_cluster") == cluster)
        .select(cluster)
    )
    violated = cannot_link_violated(attributes, unique_sources, tolerate)
    breaking = rejected_inside
    if violated is not None:
        breaking = held.groupBy(cluster).agg(violated.alias("__violated")).filter("__violated").select(
            cluster
        ).unionByName(rejected_inside)
    breaking = breaking.distinct()
    to_split = held.join(breaking, CLUSTER, "left_semi")
    # the links side names its cluster column apart: both sides derive from ``held``, and
    # Spark refuses a cogroup whose two grouping columns are one column of one plan
    link_cluster = "__link_cluster"
    cluster_of_left = held.select(F.col(RECORD_KEY).alias(RECORD_KEY_L), cluster.alias(link_cluster))
    split_links = (
        links.select(RECORD_KEY_L, RECORD_KEY_R, F.col(MATCH_WEIGHT).cast("double").alias(MATCH_WEIGHT))
        .join(cluster_of_left, RECORD_KEY_L)
        .join(breaking.select(cluster.alias(link_cluster)), link_cluster, "left_semi")
    )
    # Labels and cuts are both read from this output: a lazy local checkpoint keeps the first
    # action's result, so the violation checks and the pandas calls run once, not once each.
    out = (
        to_split.groupBy(CLUSTER)
        .cogroup(split_links.groupBy(link_cluster))
        .applyInPandas(_split_groups(tuple(attributes), frozenset(unique_sources), dict(tolerate or {})),
                       _SPLIT_SCHEMA)
        .localCheckpoint(eager=False)
    )
    relabelled = out.filter(F.col(_KIND) == "label").select(
        F.col(_LEFT).alias(RECORD_KEY), F.col(_RIGHT).alias("__split_cluster")
    )
    labels = records.join(relabelled, RECORD_KEY, "left").select(
        RECORD_KEY, F.coalesce(F.col("__split_cluster"), cluster).alias(CLUSTER)
    )
    cuts = out.filter(F.col(_KIND) == "cut").select(
        F.col(_LEFT).alias(RECORD_KEY_L), F.col(_RIGHT).alias(RECORD_KEY_R), CUT_BY, DETAIL
    )
    return labels, cuts
