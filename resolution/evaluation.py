"""How good a resolution is, measured against ground truth (a true person id per record).

Two views of the same partition:

- **pairwise**: every pair of records placed in one entity is a predicted link; precision is
  the share of those that are the same person, recall the share of same-person pairs found.
  Large entities weigh quadratically, so one wrong merge of two big people shows at once.
- **B-cubed**: per record, the share of its entity that is its person (precision) and the share
  of its person that is in its entity (recall), averaged over records. Every record weighs the
  same, so it reads as "how right is the entity a typical record lands in".

Both come from one contingency table (entity x person -> records), aggregated in Spark, so a
million records evaluate without collecting them. Records are evaluated where membership and
truth overlap; the rest are counted (a record missing from membership was rejected or not read).

``threshold_curve`` gives pairwise precision and recall of the *scored links before clustering*
at each probability threshold, which is what a user tunes ``link_threshold`` with.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.config import Config

PERSON_ID = "person_id"
_CELL = "__cell"


class EvaluationError(ValueError):
    """The truth or the warehouse cannot be evaluated; the message names what is missing."""


@dataclass(frozen=True)
class PairCounts:
    """Pairs predicted linked, pairs truly linked, and pairs both."""

    true_positive: int
    predicted: int
    actual: int

    @property
    def precision(self) -> float:
        return self.true_positive / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.true_positive / self.actual if self.actual else 1.0

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)


@dataclass(frozen=True)
class ThresholdPoint:
    """Pairwise quality of the links a threshold keeps (scored pairs, before clustering)."""

    threshold: float
    links: int
    precision: float
    recall: float

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)


@dataclass
class Evaluation:
    """Scores of one resolution against the truth; ``to_dict`` is the JSON report."""

    records: int
    entities: int
    people: int
    pairwise: PairCounts
    bcubed_precision: float
    bcubed_recall: float
    over_merged_entities: int
    over_merged_people: int
    split_people: int
    records_missing_from_membership: int
    records_missing_from_truth: int
    curve: list[ThresholdPoint] = field(default_factory=list)
    link_threshold: float | None = None  # the threshold the run linked at
    proposed_threshold: float | None = None  # the one the model proposes (idr train), if saved

    @property
    def bcubed_f1(self) -> float:
        return _f1(self.bcubed_precision, self.bcubed_recall)

    def to_dict(self) -> dict:
        summary = {
            key: value for key, value in asdict(self).items() if key not in ("pairwise", "curve")
        }
        summary["pairwise"] = {
            **asdict(self.pairwise),
            "precision": self.pairwise.precision,
            "recall": self.pairwise.recall,
            "f1": self.pairwise.f1,
        }
        summary["bcubed_f1"] = self.bcubed_f1
        summary["threshold_curve"] = [{**asdict(point), "f1": point.f1} for point in self.curve]
        return summary


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _pairs(count) -> F.Column:
    return count * (count - 1) / 2


def evaluate_partition(membership: DataFrame, truth: DataFrame) -> Evaluation:
    """Compare ``membership`` (``record_key``, ``entity_id``) with ``truth`` (``record_key``,
    ``person_id``): pairwise and B-cubed scores, over-merged and split counts."""
    predicted = membership.select(S.RECORD_KEY, S.ENTITY_ID)
    actual = truth.select(S.RECORD_KEY, F.col(PERSON_ID).cast("string").alias(PERSON_ID))
    both = predicted.join(actual, S.RECORD_KEY, "full").select(
        S.ENTITY_ID, PERSON_ID,
        F.col(S.ENTITY_ID).isNotNull().alias("__in_membership"),
        F.col(PERSON_ID).isNotNull().alias("__in_truth"),
    )
    coverage = both.agg(
        F.sum(F.when(~F.col("__in_membership"), 1).otherwise(0)).alias("missing_membership"),
        F.sum(F.when(~F.col("__in_truth"), 1).otherwise(0)).alias("missing_truth"),
    ).first()

    cells = (
        both.filter("__in_membership AND __in_truth")
        .groupBy(S.ENTITY_ID, PERSON_ID)
        .agg(F.count(F.lit(1)).alias(_CELL))
        .localCheckpoint()
    )
    entity_size = cells.groupBy(S.ENTITY_ID).agg(
        F.sum(_CELL).alias("__entity_size"), F.count(F.lit(1)).alias("__people_in_entity")
    )
    person_size = cells.groupBy(PERSON_ID).agg(
        F.sum(_CELL).alias("__person_size"), F.count(F.lit(1)).alias("__entities_of_person")
    )
    per_cell = cells.join(entity_size, S.ENTITY_ID).join(person_size, PERSON_ID)
    totals = per_cell.agg(
        F.sum(_CELL).alias("records"),
        F.sum(_pairs(F.col(_CELL))).alias("true_positive"),
        F.sum(F.col(_CELL) * F.col(_CELL) / F.col("__entity_size")).alias("bcubed_precision"),
        F.sum(F.col(_CELL) * F.col(_CELL) / F.col("__person_size")).alias("bcubed_recall"),
        F.countDistinct(F.when(F.col("__people_in_entity") > 1, F.col(PERSON_ID))).alias("over_merged_people"),
    ).first()
    entities = entity_size.agg(
        F.count(F.lit(1)).alias("entities"),
        F.sum(_pairs(F.col("__entity_size"))).alias("predicted"),
        F.sum(F.when(F.col("__people_in_entity") > 1, 1).otherwise(0)).alias("over_merged"),
    ).first()
    people = person_size.agg(
        F.count(F.lit(1)).alias("people"),
        F.sum(_pairs(F.col("__person_size"))).alias("actual"),
        F.sum(F.when(F.col("__entities_of_person") > 1, 1).otherwise(0)).alias("split"),
    ).first()
    records = int(totals["records"] or 0)
    return Evaluation(
        records=records,
        entities=int(entities["entities"]),
        people=int(people["people"]),
        pairwise=PairCounts(
            true_positive=int(totals["true_positive"] or 0),
            predicted=int(entities["predicted"] or 0),
            actual=int(people["actual"] or 0),
        ),
        bcubed_precision=float(totals["bcubed_precision"] or 0) / records if records else 1.0,
        bcubed_recall=float(totals["bcubed_recall"] or 0) / records if records else 1.0,
        over_merged_entities=int(entities["over_merged"] or 0),
        over_merged_people=int(totals["over_merged_people"] or 0),
        split_people=int(people["split"] or 0),
        records_missing_from_membership=int(coverage["missing_membership"] or 0),
        records_missing_from_truth=int(coverage["missing_truth"] or 0),
    )


def threshold_curve(
    edges: DataFrame, truth: DataFrame, *, thresholds: list[float], actual_pairs: int
) -> list[ThresholdPoint]:
    """Pairwise precision/recall of the links kept at each threshold, before clustering.

    ``edges`` are ``match_edges`` rows; a pair found by an identifier rule is a link at every
    threshold (that is how runs classify it). ``actual_pairs`` is the number of same-person
    pairs (``Evaluation.pairwise.actual``), the recall denominator. Pairs scored below the
    configured review threshold are not stored, so the curve starts there.
    """
    person = truth.select(S.RECORD_KEY, F.col(PERSON_ID).cast("string").alias(PERSON_ID))
    score = F.when(F.col(S.RULE) != S.MODEL_RULE, F.lit(1.0)).otherwise(F.col(S.MATCH_PROBABILITY))
    labelled = (
        edges.select(S.RECORD_KEY_L, S.RECORD_KEY_R, score.alias("__score"))
        .join(person.withColumnRenamed(S.RECORD_KEY, S.RECORD_KEY_L).withColumnRenamed(PERSON_ID, "__pl"),
              S.RECORD_KEY_L)
        .join(person.withColumnRenamed(S.RECORD_KEY, S.RECORD_KEY_R).withColumnRenamed(PERSON_ID, "__pr"),
              S.RECORD_KEY_R)
        .select("__score", (F.col("__pl") == F.col("__pr")).alias("__same"))
    )
    ordered = sorted(thresholds)
    # one pass: each link counted in the bucket of the highest threshold it clears
    bucket = F.lit(None).cast("double")
    for threshold in ordered:
        bucket = F.when(F.col("__score") >= threshold, F.lit(threshold)).otherwise(bucket)
    counts = {
        row["__bucket"]: (int(row["links"]), int(row["same"]))
        for row in labelled.withColumn("__bucket", bucket)
        .filter(F.col("__bucket").isNotNull())
        .groupBy("__bucket")
        .agg(F.count(F.lit(1)).alias("links"), F.sum(F.col("__same").cast("long")).alias("same"))
        .collect()
    }
    points, links, same = [], 0, 0
    for threshold in reversed(ordered):
        bucket_links, bucket_same = counts.get(threshold, (0, 0))
        links, same = links + bucket_links, same + bucket_same
        points.append(
            ThresholdPoint(
                threshold=threshold,
                links=links,
                precision=same / links if links else 1.0,
                recall=same / actual_pairs if actual_pairs else 1.0,
            )
        )
    return list(reversed(points))


def evaluate_warehouse(
    spark: SparkSession,
    config: Config,
    *,
    truth: str,
    truth_key: str = S.RECORD_KEY,
    truth_id: str = PERSON_ID,
) -> Evaluation:
    """Evaluate the committed ``resolved_membership`` of ``config``'s warehouse against the
    truth table at ``truth`` (its ``truth_key`` column holds record keys, ``source:id``), with
    the threshold curve of its ``match_edges``."""
    from resolution.sources import read_truth
    from resolution.store import open_store
    from resolution.threshold import load_proposal

    store = open_store(spark, config)
    if not store.exists(S.RESOLVED_MEMBERSHIP):
        raise EvaluationError(
            f"{config.path}: the warehouse has no resolved_membership yet; run `idr run` first"
        )
    raw = read_truth(spark, truth, store=store)
    missing = [column for column in (truth_key, truth_id) if column not in raw.columns]
    if missing:
        raise EvaluationError(
            f"truth {truth}: no column {', '.join(missing)} (it has {', '.join(raw.columns)}); "
            "name them with --truth-key / --truth-id"
        )
    labels = raw.select(F.col(truth_key).alias(S.RECORD_KEY), F.col(truth_id).alias(PERSON_ID))
    evaluation = evaluate_partition(store.read(S.RESOLVED_MEMBERSHIP), labels)
    if store.exists(S.MATCH_EDGES):
        matching = config.matching
        proposal = load_proposal(matching.model) if matching.model is not None else None
        evaluation.link_threshold = matching.link_threshold if matching.model is not None else None
        evaluation.proposed_threshold = proposal.threshold if proposal is not None else None
        marked = [t for t in (evaluation.link_threshold, evaluation.proposed_threshold)
                  if t is not None and t >= matching.review_threshold]
        evaluation.curve = threshold_curve(
            store.read(S.MATCH_EDGES), labels,
            thresholds=sorted({*default_thresholds(matching.review_threshold), *marked}),
            actual_pairs=evaluation.pairwise.actual,
        )
    return evaluation


def default_thresholds(review_threshold: float) -> list[float]:
    """Thresholds from the review threshold up to 0.999, denser near 1 where links are decided."""
    candidates = [round(review_threshold + i * (0.9 - review_threshold) / 8, 4) for i in range(9)]
    candidates += [0.92, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999]
    return sorted({value for value in candidates if review_threshold <= value < 1.0})


def write_report(evaluation: Evaluation, folder: str | Path, *, title: str) -> dict[str, Path]:
    """Write ``evaluation.json``, ``evaluation.md`` and ``precision_recall.png`` into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "evaluation.json", "markdown": out / "evaluation.md"}
    paths["json"].write_text(json.dumps({"title": title, **evaluation.to_dict()}, indent=2) + "\n",
                             encoding="utf-8")
    chart = _plot_curve(evaluation, out / "precision_recall.png", title=title)
    if chart:
        paths["chart"] = chart
    text = summary_markdown(evaluation, title=title) + _curve_markdown(evaluation, chart=chart)
    paths["markdown"].write_text(text, encoding="utf-8")
    return paths


def summary_markdown(evaluation: Evaluation, *, title: str) -> str:
    """The headline figures as markdown: scores table, over-merged, split, coverage."""
    pairwise = evaluation.pairwise
    lines = [
        f"# {title}",
        "",
        f"{evaluation.records:,} records evaluated: {evaluation.entities:,} entities for "
        f"{evaluation.people:,} true people.",
        "",
        "| metric | precision | recall | F1 |",
        "|---|---|---|---|",
        f"| pairwise | {pairwise.precision:.4f} | {pairwise.recall:.4f} | {pairwise.f1:.4f} |",
        f"| B-cubed | {evaluation.bcubed_precision:.4f} | {evaluation.bcubed_recall:.4f} | "
        f"{evaluation.bcubed_f1:.4f} |",
        "",
        f"- over-merged: {evaluation.over_merged_entities:,} entities hold more than one person "
        f"({evaluation.over_merged_people:,} people affected)",
        f"- split: {evaluation.split_people:,} people are spread over more than one entity",
        f"- pairs: {pairwise.true_positive:,} correct of {pairwise.predicted:,} predicted; "
        f"{pairwise.actual:,} true pairs",
    ]
    if evaluation.records_missing_from_membership or evaluation.records_missing_from_truth:
        lines.append(
            f"- not evaluated: {evaluation.records_missing_from_membership:,} truth records not in "
            f"membership (rejected or not read), {evaluation.records_missing_from_truth:,} resolved "
            "records without truth"
        )
    return "\n".join(lines) + "\n"


def _marks(evaluation: Evaluation, threshold: float) -> str:
    """What a curve threshold is: the one the run used, the one the model proposes."""
    marks = []
    if evaluation.link_threshold is not None and math.isclose(threshold, evaluation.link_threshold):
        marks.append("used")
    if evaluation.proposed_threshold is not None and math.isclose(threshold, evaluation.proposed_threshold):
        marks.append("proposed by the model")
    return f" ({', '.join(marks)})" if marks else ""


def _curve_markdown(evaluation: Evaluation, *, chart: Path | None) -> str:
    curve = evaluation.curve
    lines: list[str] = []
    if curve:
        lines += [
            "",
            "Links kept at each threshold (scored pairs before clustering; identifier-rule links count "
            "at every threshold):",
            "",
            "| threshold | links | precision | recall | F1 |",
            "|---|---|---|---|---|",
            *(
                f"| {point.threshold:g}{_marks(evaluation, point.threshold)} | {point.links:,} | {point.precision:.4f} | "
                f"{point.recall:.4f} | {point.f1:.4f} |"
                for point in curve
            ),
        ]
    if chart:
        lines += ["", f"![precision and recall by threshold]({chart.name})"]
    return "\n".join(lines) + "\n"


def _plot_curve(evaluation: Evaluation, path: Path, *, title: str) -> Path | None:
    curve = evaluation.curve
    if not curve:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on clusters and CI
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    thresholds = [point.threshold for point in curve]
    axis.plot(thresholds, [point.precision for point in curve], marker="o", label="precision")
    axis.plot(thresholds, [point.recall for point in curve], marker="o", label="recall")
    axis.plot(thresholds, [point.f1 for point in curve], linestyle="--", label="F1")
    low = min(min(point.precision, point.recall) for point in curve)
    axis.set_ylim(max(0.0, math.floor(low * 20) / 20 - 0.05), 1.005)
    for threshold, label, style in ((evaluation.link_threshold, "used", ":"),
                                    (evaluation.proposed_threshold, "proposed by the model", "-.")):
        if threshold is not None:
            axis.axvline(threshold, color="grey", linestyle=style, label=f"{label} ({threshold:g})")
    axis.set_xlabel("match probability threshold")
    axis.set_ylabel("pairwise score (links before clustering)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
