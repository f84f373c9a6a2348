"""Evidence the model counts twice: two comparisons that agree together among non-matching pairs
far more often than their separate agreement rates predict.

The Fellegi-Sunter model adds one weight per comparison, as if the comparisons were independent
given the match status. Street number and street name are not: household members (and
neighbours) agree on both, so a non-matching pair agreeing on the two scores as if it had two
pieces of evidence where it has one. ``idr train`` measures this on the training records and
warns, naming both comparisons and the fix.

The measure is exact, not sampled: over all pairs of the records that have both attributes, the
pairs agreeing exactly on an attribute are ``sum(n * (n - 1) / 2)`` over the counts ``n`` of its
values (and of its value pairs for the two). The matching pairs among them are estimated from the
model (the prior times those pairs times the exact level's m) and taken out, which leaves the non-matching pairs' agreement
rates ``u_a``, ``u_b`` and ``u_ab``. Independence predicts ``u_ab = u_a * u_b``; their ratio, the
lift, is how much more often the two agree together, and ``log2(lift)`` the weight a non-matching
pair agreeing on both gets too much. Two comparisons are named when the lift is at least 8 and
at least a fifth of the pairs agreeing on both are non-matches (else the boost links few of
them, and what is left after taking out the expected matches is within the error of the m
estimates).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resolution.frames import union_all

MIN_EXCESS_BITS = 3.0  # a lift of 8: a non-match agreeing on both scores 3 bits (8 times the odds) too high
MIN_PAIRS = 10  # fewer non-matching pairs agreeing on both than this is too few to judge
MIN_NON_MATCH_SHARE = 0.2  # of the pairs agreeing on both, at least this share non-matching
ADDRESS_KINDS = frozenset({"address", "postcode", "text"})


@dataclass(frozen=True)
class Overlap:
    """Two comparisons whose agreement among non-matching pairs is not independent."""

    first: str
    second: str
    lift: float  # u_ab / (u_a * u_b)
    pairs: float  # non-matching pairs agreeing on both (estimated)
    given: float  # share of non-matching pairs agreeing on ``first`` that agree on ``second`` too

    @property
    def excess_bits(self) -> float:
        return math.log2(self.lift)

    def message(self, kinds: Mapping[str, str]) -> tuple[str, str]:
        """The warning: what was measured, and what to do."""
        both = f"{self.first} and {self.second}"
        measured = (
            f"{both} agree together among non-matching pairs {self.lift:,.0f} times as often as their "
            f"separate rates predict (about {self.pairs:,.0f} pairs; {self.given:.0%} of non-matching pairs "
            f"agreeing on {self.first} also agree on {self.second}): they carry much of the same evidence, and "
            f"the match weight of a non-matching pair agreeing on both is {self.excess_bits:.1f} too high (log2: "
            f"{self.lift:,.0f} times the odds)"
        )
        if {kinds.get(self.first), kinds.get(self.second)} <= ADDRESS_KINDS:
            fix = (f"compare them as one attribute: build it from both columns in each source "
                   f"(columns: {{address: [{self.first}, {self.second}]}}) and compare that, or drop one of the "
                   f"two comparisons")
        else:
            fix = (f"compare only one of them, or build one attribute from both columns "
                   f"(columns: {{<attribute>: [{self.first}, {self.second}]}}); if they are what members of one "
                   f"household share (a surname and an address), add what tells them apart: cannot_link "
                   f"attributes such as the birth date, or unique_sources for a duplicate-free source")
        return measured, fix


def _exact_m(model: Mapping[str, Any]) -> dict[str, float]:
    """Per comparison, the m of its first non-null level (exact agreement)."""
    found = {}
    for comparison in model["comparisons"]:
        levels = [level for level in comparison["comparison_levels"] if not level.get("is_null_level")]
        if levels and levels[0].get("m_probability") is not None:
            found[comparison["output_column_name"]] = float(levels[0]["m_probability"])
    return found


def agreeing_pairs(records: DataFrame, groups: Sequence[tuple[tuple[str, ...], tuple[str, ...]]]) -> list[int]:
    """Per ``(present, agree)``: among the records whose ``present`` columns are all non-null,
    the pairs agreeing on every ``agree`` column (``()``: every pair); one Spark job for all."""
    parts = []
    for index, (present, agree) in enumerate(groups):
        subset = records.where(F.expr(" AND ".join(f"`{c}` IS NOT NULL" for c in present)))
        counts = subset.groupBy(*agree).count() if agree else subset.agg(F.count(F.lit(1)).alias("count"))
        parts.append(counts.select(F.lit(index).alias("group"), (F.col("count") * (F.col("count") - 1) / 2).alias("pairs")))
    totals = {row["group"]: int(row["pairs"] or 0)
              for row in union_all(parts).groupBy("group").agg(F.sum("pairs").alias("pairs")).collect()}
    return [totals.get(index, 0) for index in range(len(groups))]


def evidence_overlaps(records: DataFrame, model: Mapping[str, Any]) -> list[Overlap]:
    """The pairs of compared attributes that carry the same evidence (see the module), worst first.

    Each two attributes are measured over the records that have both (a source without one
    says nothing of how they agree together), and Splink's m of a level is a share of the
    matching pairs that have the attribute: the matches there are the prior's share of the pairs.
    """
    m = _exact_m(model)
    compared = [c for c in m if c in records.columns]
    prior = float(model["probability_two_random_records_match"])
    couples = list(itertools.combinations(compared, 2))
    if not couples or not 0 < prior < 1:
        return []
    groups = [(couple, agree) for couple in couples for agree in ((), (couple[0],), (couple[1],), couple)]
    counted = iter(agreeing_pairs(records, groups))
    found = []
    for first, second in couples:
        all_pairs, on_first, on_second, both = (next(counted) for _ in range(4))
        matches, non_matches = prior * all_pairs, (1 - prior) * all_pairs
        if non_matches <= 0:
            continue

        def non_matching(agreeing: int, m_agree: float, matches: float = matches) -> float:
            return max(agreeing - matches * m_agree, 0.0)

        u_first = non_matching(on_first, m[first]) / non_matches
        u_second = non_matching(on_second, m[second]) / non_matches
        pairs = non_matching(both, m[first] * m[second])
        expected = u_first * u_second * non_matches
        # Nearly all matches among the pairs agreeing on both: what is left after taking out
        # the matches the model expects is within the error of its m estimates (clean
        # duplicates agree on everything more often than m * m says), and the boost links few
        # non-matches.
        if pairs < MIN_PAIRS or expected <= 0 or pairs < MIN_NON_MATCH_SHARE * both:
            continue
        lift = pairs / expected
        if math.log2(lift) >= MIN_EXCESS_BITS:
            # named with the rarer agreement first: "of the pairs agreeing on it, x% agree on the other"
            (a, u_a), (b, _) = sorted(((first, u_first), (second, u_second)), key=lambda item: item[1])
            found.append(Overlap(a, b, lift, pairs, pairs / (u_a * non_matches)))
    return sorted(found, key=lambda overlap: -overlap.lift)
