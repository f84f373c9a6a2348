"""The link threshold the model proposes: where its expected pairwise F1 is highest.

``idr train`` scores every candidate pair of the training records (the run's pairs: identifier
rules and blocking rules) with the trained model. A pair scored ``p`` is a match with probability
``p`` by the model's own account, so at a threshold ``t`` the links kept are expected to hold
``sum(p >= t)`` matches among ``count(p >= t)`` links, out of ``sum(p)`` matches among all
candidates: expected precision, recall and F1 at every threshold, no truth needed. The proposal
is the threshold of the highest expected F1, saved beside the model (``<model>.threshold.json``,
so it is versioned with the model it was computed from); ``matching.link_threshold: auto``
uses it. How well it holds depends on the model's calibration: ``idr evaluate`` marks it on the
measured curve.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BUCKETS_PER_BIT = 8  # match weights are grouped by 1/8 bit: a threshold is a bucket's lower edge
# the proposal is the best threshold between these: below 0.5 a link is likelier wrong than right
FLOOR, CEILING = 0.5, 0.9999


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    links: int
    expected_precision: float
    expected_recall: float

    @property
    def expected_f1(self) -> float:
        p, r = self.expected_precision, self.expected_recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@dataclass(frozen=True)
class ThresholdProposal:
    """The proposed link threshold, what the model expects of it, and the expected curve."""

    threshold: float
    pairs: int  # candidate pairs scored
    expected_matches: float
    curve: tuple[CurvePoint, ...]

    def at(self, threshold: float) -> CurvePoint:
        """The expected point of the highest curve threshold at or below ``threshold`` (below
        them all: every candidate pair kept, the lowest point)."""
        kept = [point for point in self.curve if point.threshold <= threshold + 1e-12]
        return max(kept, key=lambda point: point.threshold) if kept else self.curve[0]

    def lines(self, configured: float | None = None) -> list[str]:
        """What ``idr train`` prints: the proposal, and the configured threshold beside it."""
        best = self.at(self.threshold)
        lines = [
            f"link threshold: the model proposes p >= {self.threshold:g}: over the {self.pairs:,} candidate pairs it "
            f"expects precision {best.expected_precision:.3f}, recall {best.expected_recall:.3f}, F1 "
            f"{best.expected_f1:.3f} (expected from its own probabilities, before clustering; "
            "`link_threshold: auto` uses it, `idr evaluate` measures it)",
        ]
        if configured is not None:
            point = self.at(configured)
            lines.append(f"  the config's link_threshold {configured:g}: expected precision {point.expected_precision:.3f}, "
                         f"recall {point.expected_recall:.3f}, F1 {point.expected_f1:.3f}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"proposed_link_threshold": self.threshold, "pairs": self.pairs,
                "expected_matches": self.expected_matches,
                "curve": [{**asdict(point), "expected_f1": point.expected_f1} for point in self.curve]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ThresholdProposal:
        curve = tuple(CurvePoint(p["threshold"], int(p["links"]), p["expected_precision"], p["expected_recall"])
                      for p in data["curve"])
        return cls(float(data["proposed_link_threshold"]), int(data["pairs"]), float(data["expected_matches"]), curve)


def proposal_path(model_path: str | Path) -> Path:
    """Where the proposal of the model at ``model_path`` is saved."""
    path = Path(model_path)
    return path.with_name(path.stem + ".threshold.json")


def load_proposal(model_path: str | Path) -> ThresholdProposal | None:
    path = proposal_path(model_path)
    if not path.is_file():
        return None
    return ThresholdProposal.from_json(json.loads(path.read_text(encoding="utf-8")))


def save_proposal(proposal: ThresholdProposal | None, model_path: str | Path) -> None:
    """Save ``proposal`` beside the model at ``model_path`` (None: remove an older model's)."""
    path = proposal_path(model_path)
    if proposal is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps(proposal.to_json(), indent=2) + "\n", encoding="utf-8")


def _probability(weight: float) -> float:
    return 1 / (1 + 2 ** -weight)


def proposal_from_buckets(buckets: list[tuple[float, int, float]]) -> ThresholdProposal | None:
    """The proposal from ``(bucket's lowest match weight, pairs, sum of their probabilities)``."""
    total_pairs = sum(count for _, count, _ in buckets)
    matches = sum(probabilities for _, _, probabilities in buckets)
    if total_pairs == 0 or matches <= 0:
        return None
    curve, links, found = [], 0, 0.0
    for weight, count, probabilities in sorted(buckets, key=lambda bucket: -bucket[0]):
        links, found = links + count, found + probabilities
        threshold = round(min(max(_probability(weight), 0.0), 1.0), 6)
        if curve and curve[-1].threshold == threshold:  # weights that round to one probability
            curve.pop()
        curve.append(CurvePoint(threshold, links, found / links, found / matches))
    candidates = [point for point in curve if FLOOR <= point.threshold <= CEILING]
    if candidates:
        threshold = max(candidates, key=lambda point: (point.expected_f1, point.threshold)).threshold
    else:  # every score on one side of the range
        threshold = FLOOR if all(point.threshold < FLOOR for point in curve) else CEILING
    return ThresholdProposal(threshold, total_pairs, matches, tuple(sorted(curve, key=lambda p: p.threshold)))


def propose_threshold(predictions) -> ThresholdProposal | None:
    """The proposal from Splink's predictions (a Spark DataFrame with ``match_weight`` and
    ``match_probability`` per candidate pair): one aggregation, a few hundred rows collected."""
    from pyspark.sql import functions as F

    bucket = F.floor(F.col("match_weight") * BUCKETS_PER_BIT) / BUCKETS_PER_BIT
    rows = (predictions.where(F.col("match_weight").isNotNull())
            .groupBy(bucket.alias("bucket"))
            .agg(F.count(F.lit(1)).alias("pairs"), F.sum("match_probability").alias("probability"))
            .collect())
    return proposal_from_buckets([(float(r["bucket"]), int(r["pairs"]), float(r["probability"] or 0.0))
                                  for r in rows if r["bucket"] is not None and math.isfinite(r["bucket"])])
