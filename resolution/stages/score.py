"""Score: candidate pairs of the records to rescore, scored (rules, model) and classified."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.frames import count_map, materialize
from resolution.graph import edges_touching, pairs_within
from resolution.matching import (
    IDENTIFIER,
    OVERSIZED_SUFFIX,
    VALUE,
    blocking_candidate_keys,
    classify_edges,
    crossed_group_records,
    identifier_group_sizes,
    identifier_values,
    mask_oversized_identifiers,
)
from resolution.review import accepted_pairs, decided_keys, rejected_pairs
from resolution.schemas import SCORED_SCHEMA
from resolution.scoring import candidate_rules, load_model, score_candidates
from resolution.stages.context import DECISIONS_VERSION, RunContext
from resolution.stages.standardize import Standardized


@dataclass(frozen=True)
class Scored:
    """``new_edges``: this run's classified edges (link / review) of the ``rescored`` records;
    ``touched``: rescored or deleted records, whose old edges this run replaces;
    ``review_rejected``: pairs reviewers rejected (None: no decision yet)."""

    standardized: Standardized
    rescored: DataFrame
    touched: DataFrame
    new_edges: DataFrame
    review_rejected: DataFrame | None

    @property
    def new_links(self) -> DataFrame:
        return self.new_edges.filter(F.col(S.EDGE_STATUS) == S.LINK)


def score(ctx: RunContext, standardized: Standardized) -> Scored:
    config, summary = ctx.config, ctx.summary
    captured, live = standardized.captured, standardized.live
    model = load_model(config.matching.model, config) if config.matching.model else None
    # Reviewers' decisions: accepted pairs are links, rejected pairs constraints (cluster).
    review_accepted = review_rejected = None
    if captured.decisions_version is not None:
        decisions = ctx.held(ctx.store.read(S.REVIEW_DECISIONS).transform(materialize))
        review_rejected = ctx.held(rejected_pairs(decisions).transform(materialize))
        review_accepted = pairs_within(accepted_pairs(decisions), live.select(S.RECORD_KEY))
        summary.source_versions[DECISIONS_VERSION] = str(captured.decisions_version)
    rescored, matchable = _rescored_and_matchable(ctx, standardized)
    to_score = matchable if ctx.full else matchable.join(rescored, S.RECORD_KEY, "left_semi")
    _count_oversized(ctx, to_score)
    if ctx.full:
        scored = score_candidates(ctx.spark, matchable, config=config, model=model)
    elif rescored.first() is None:  # nothing changed: no pair to score
        scored = None
    else:
        scored = score_candidates(ctx.spark, matchable, config=config, model=model, changed=to_score)
    if scored is None:
        scored = ctx.spark.createDataFrame([], SCORED_SCHEMA)
    new_edges = classify_edges(
        scored,
        link_threshold=config.matching.link_threshold,
        review_threshold=config.matching.review_threshold,
        accepted=None if review_accepted is None else edges_touching(review_accepted, rescored),
    )
    new_edges = ctx.held(new_edges.transform(materialize))
    touched = ctx.held(rescored.unionByName(captured.deleted).distinct().transform(materialize))
    result = Scored(standardized, rescored, touched, new_edges, review_rejected)
    summary.edges_by_rule = count_map(result.new_links, S.RULE)
    return result


def _rescored_and_matchable(ctx: RunContext, standardized: Standardized) -> tuple[DataFrame, DataFrame]:
    """The records to rescore, and the records they can pair with (junk identifiers masked)."""
    rules = ctx.config.identifiers
    live, captured = standardized.live, standardized.captured
    if ctx.full:
        return standardized.changed_keys, ctx.held(mask_oversized_identifiers(live, rules=rules).transform(materialize))
    # Records whose identifier group crossed max_group_size (either way) are rescored
    # too: their rule edges appear or vanish although the records did not change.
    old_rows = captured.old_records.join(standardized.gone_or_changed, S.RECORD_KEY, "left_semi")
    crossed = crossed_group_records(live, new_rows=standardized.changed, old_rows=old_rows, rules=rules,
                                    held=ctx.held)
    rescored = standardized.changed_keys.unionByName(crossed)
    if captured.decisions_version is not None:
        # records of pairs decided since the last run: their edges follow the decision
        since = ctx.versions.get(DECISIONS_VERSION)
        decided = decided_keys(ctx.store, since_version=int(since) if since is not None else None)
        rescored = rescored.unionByName(decided.join(live, S.RECORD_KEY, "left_semi"))
    rescored = ctx.held(rescored.distinct().transform(materialize))
    # Only records sharing a blocking key with a rescored one can pair with it: score
    # against those (masked by their groups' sizes over all live records). Their keys first
    # (few, so broadcast), then one scan of the live records for their rows.
    seeds = ctx.held(live.join(F.broadcast(rescored), S.RECORD_KEY, "left_semi").transform(materialize))
    keys = blocking_candidate_keys(live, seeds, rules=candidate_rules(ctx.config)).unionByName(rescored)
    keys = ctx.held(keys.distinct().transform(materialize))
    pool = ctx.held(live.join(keys, S.RECORD_KEY, "left_semi").transform(materialize))
    values = ctx.held(identifier_values(pool, rules=rules).select(IDENTIFIER, VALUE).distinct().transform(materialize))
    # materialized: masking joins the sizes once per rule, which would count them again each time
    sizes = ctx.held(identifier_group_sizes(live, rules=rules, values=values).transform(materialize))
    return rescored, ctx.held(mask_oversized_identifiers(pool, rules=rules, sizes=sizes).transform(materialize))


def _count_oversized(ctx: RunContext, to_score: DataFrame) -> None:
    """Junk identifier values (groups over max_group_size) nulled among the records scored."""
    rules = ctx.config.identifiers
    if not rules:
        return
    flags = [f"{rule.attribute}{OVERSIZED_SUFFIX}" for rule in rules]
    masked = to_score.agg(*[F.sum(F.col(flag).cast("long")).alias(flag) for flag in flags]).first()
    for rule, flag in zip(rules, flags, strict=True):
        if masked[flag]:
            ctx.summary.value_issues[f"{rule.attribute}:oversized_group"] = int(masked[flag])
