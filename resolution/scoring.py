"""Splink scoring and training. The only module that imports splink.

Candidate pairs come from one Splink blocking pass whose rules are, in order, the deterministic
identifier rules (``block_on(email)``, ...) and then the configured probabilistic blocking rules.
Splink's ``match_key`` tells which rule produced a pair first, so a pair found by an identifier
rule is a deterministic link, and every pair, deterministic or not, is scored by the
Fellegi-Sunter model: each edge carries the per-comparison levels that explain it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from resolution.config import Config
from resolution.evidence import evidence_overlaps
from resolution.matching import (
    IDENTIFIER,
    RULE_INDEX,
    RULE_KEY,
    VALUE,
    identifier_values,
    rule_keys,
)
from resolution.model_report import TrainingReport, em_not_converged, unobserved_levels
from resolution.schemas import (
    COMPARISON_LEVELS,
    MATCH_PROBABILITY,
    MATCH_WEIGHT,
    MODEL_RULE,
    RECORD_KEY,
    RECORD_KEY_L,
    RECORD_KEY_R,
    RULE,
)
from resolution.threshold import ThresholdProposal, propose_threshold, save_proposal

logger = logging.getLogger(__name__)


class ModelError(RuntimeError):
    """The saved model is missing or does not fit the configuration."""


def similarity_jar_path() -> str:
    """Path of Splink's Scala similarity UDF jar for the installed Spark major version."""
    from splink.internals.spark.jar_location import similarity_jar_location

    return similarity_jar_location()


def register_similarity_functions(spark: SparkSession) -> None:
    """Register Splink's Scala similarity functions (jaro_winkler, ...) as SQL functions.

    Without them Splink SQL fails late with ``UNRESOLVED_ROUTINE jaro_winkler``; registering
    at session build time turns a missing jar into an immediate, named error.
    """
    from splink.internals.spark.jar_location import get_scala_udfs

    for name, class_name, return_type in get_scala_udfs():
        try:
            spark.udf.registerJavaFunction(name, class_name, return_type)
        except Exception as error:  # the jar is not on the classpath
            raise RuntimeError(
                f"Cannot register Splink similarity function {name!r} ({class_name}). "
                f"Add Splink's jar to the session: spark.jars={similarity_jar_path()}"
            ) from error


def _without_term_frequencies(settings: dict[str, Any]) -> dict[str, Any]:
    """Drop term-frequency adjustments from every comparison level.

    They make a pair's score depend on every other record, so rescoring only the changed
    pairs could no longer equal a full recompute (the incremental invariant).
    """
    for comparison in settings["comparisons"]:
        for level in comparison["comparison_levels"]:
            for key in ("tf_adjustment_column", "tf_adjustment_weight", "tf_minimum_u_value"):
                level.pop(key, None)
    return settings


NICKNAMES_SUFFIX = "_nicknames"


def _comparison(attribute: str, kind: str):
    import splink.comparison_library as cl

    if kind == "name":
        return cl.NameComparison(attribute)
    if kind == "given_name":  # a name level, then nicknames (bill = william), then fuzzy
        return cl.NameComparison(attribute, dmeta_col_name=attribute + NICKNAMES_SUFFIX)
    if kind == "email":
        return _email_comparison(attribute)
    if kind == "date":
        return cl.DateOfBirthComparison(attribute, input_is_string=False)
    if kind == "phone":
        return cl.LevenshteinAtThresholds(attribute, [1, 2])
    if kind == "postcode":
        return cl.LevenshteinAtThresholds(attribute, [1, 2])
    if kind == "address":
        return cl.JaroWinklerAtThresholds(attribute, [0.95, 0.85])
    if kind == "code":  # an id typed by hand: exact, one or two edits away
        return cl.LevenshteinAtThresholds(attribute, [1, 2])
    return cl.ExactMatch(attribute)


def _email_comparison(attribute: str):
    """Exact address, exact username at another domain, one typo, anything else.

    Splink's ``EmailComparison`` also has Jaro-Winkler levels on the username; those put
    ``mary.jones4658@`` and ``mary.jones18777@`` (two people named Mary Jones) close together,
    and on generated data they were the main source of namesakes merged into one entity.
    """
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import ColumnExpression

    email = ColumnExpression(attribute)
    return cl.CustomComparison(
        output_column_name=attribute,
        comparison_levels=[
            cll.NullLevel(email),
            cll.ExactMatchLevel(email),
            cll.ExactMatchLevel(email.regex_extract("^[^@]+")).configure(
                label_for_charts="Exact match on username"
            ),
            cll.LevenshteinLevel(email, 1).configure(label_for_charts="One edit apart"),
            cll.ElseLevel(),
        ],
        comparison_description="email",
    )


def nickname_groups(spark: SparkSession) -> DataFrame:
    """``name``, ``groups``: for each name of the ``nicknames`` dataset (carltonnorthern, Apache
    2.0), the name itself and every formal name it is a nickname of (``bill`` -> bill, william,
    robert). Two first names match at the nickname level when their groups intersect."""
    from nicknames import NickNamer

    canonicals = NickNamer().canonical_lookup  # nickname -> its formal names
    rows = [(name, sorted({name, *formal})) for name, formal in sorted(canonicals.items())]
    return spark.createDataFrame(rows, "name string, groups array<string>")


def identifier_blocking_rules(config: Config) -> list[tuple[str, ...]]:
    """The identifier rules as blocking rules: records sharing the attribute's value pair up."""
    return [(rule.attribute,) for rule in config.identifiers]


def candidate_rules(config: Config) -> list[tuple[str, ...]]:
    """Every rule that makes a candidate pair: the identifier rules first, then the blocking rules."""
    return identifier_blocking_rules(config) + [tuple(rule) for rule in config.matching.blocking_rules]


def with_candidate_rules(settings: dict[str, Any], config: Config, dialect: str) -> dict[str, Any]:
    """``settings`` whose own blocking rules are ``candidate_rules``: one Splink ``predict``
    then finds the pipeline's candidate pairs (for Splink baselines and other backends)."""
    from splink import block_on

    rules = [block_on(*rule).get_blocking_rule(dialect).as_dict() for rule in candidate_rules(config)]
    return {**settings, "blocking_rules_to_generate_predictions": rules}


def _block_on(columns: Sequence[str]):
    from splink import block_on

    return block_on(*columns)


def _spark_api(spark: SparkSession):
    from splink import SparkAPI

    # Splink's default lineage break writes parquet to the checkpoint dir; persist-based
    # breaks ran clustering out of heap, so the default is kept on purpose.
    return SparkAPI(spark_session=spark)


def settings_for(config: Config, *, dialect: str = "spark") -> dict[str, Any]:
    """An untrained Splink settings dict built from ``matching.comparisons``."""
    from splink import SettingsCreator

    creator = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=RECORD_KEY,
        comparisons=[
            _comparison(attribute, kind) for attribute, kind in config.matching.comparisons.items()
        ],
        blocking_rules_to_generate_predictions=[
            _block_on(rule) for rule in config.matching.blocking_rules
        ],
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )
    return _without_term_frequencies(creator.create_settings_dict(dialect))


def model_for_dialect(model: dict[str, Any], config: Config, dialect: str) -> dict[str, Any]:
    """The trained ``model`` for another Splink SQL dialect (``duckdb``): the config's
    comparisons written for that dialect, with the trained probabilities copied level by level.

    A saved model's SQL carries its dialect's quoting and function names, so a model trained
    on Spark does not load on DuckDB as it is.
    """
    settings = settings_for(config, dialect=dialect)
    trained = {c["output_column_name"]: c for c in model["comparisons"]}
    for comparison in settings["comparisons"]:
        name = comparison["output_column_name"]
        levels = comparison["comparison_levels"]
        source = trained.get(name, {}).get("comparison_levels", [])
        if len(source) != len(levels):
            raise ModelError(
                f"comparison {name!r} of the model has {len(source)} levels, the config's "
                f"{config.path} builds {len(levels)}: retrain with `idr train`"
            )
        for level, learnt in zip(levels, source, strict=True):
            for key in ("m_probability", "u_probability"):
                if key in learnt:
                    level[key] = learnt[key]
    settings["probability_two_random_records_match"] = model["probability_two_random_records_match"]
    return settings


def model_inputs(records: DataFrame, config: Config) -> DataFrame:
    """The columns the model reads: the record key, every compared or blocked attribute, and
    for a ``given_name`` comparison its nickname groups (``<attribute>_nicknames``)."""
    needed = dict.fromkeys(config.matching.comparisons)
    for rule in config.matching.blocking_rules:
        needed.update(dict.fromkeys(rule))
    for identifier in config.identifiers:
        needed[identifier.attribute] = None
    inputs = records.select(RECORD_KEY, *needed)
    given_names = [a for a, kind in config.matching.comparisons.items() if kind == "given_name"]
    if given_names:
        groups = nickname_groups(records.sparkSession).withColumnRenamed("name", "__name")
    for attribute in given_names:
        inputs = (
            inputs.join(F.broadcast(groups), F.col(attribute) == F.col("__name"), "left")
            .withColumn(
                attribute + NICKNAMES_SUFFIX,
                F.when(F.col(attribute).isNotNull(),
                       F.coalesce(F.col("groups"), F.array(F.col(attribute)))),
            )
            .drop("__name", "groups")
        )
    return inputs


def train_model(
    spark: SparkSession, records: DataFrame, *, config: Config, output_path: str | Path
) -> TrainingReport:
    """Estimate the Fellegi-Sunter model (u by random sampling, m by EM) and save it as JSON.

    The match-weights and m/u charts are saved as HTML next to the model, and the report of
    what was learnt (returned; its ``model`` is the saved JSON) as ``<model>.report.txt``.
    """
    from splink import Linker

    training = config.matching.training
    db_api = _spark_api(spark)
    # Splink refuses to register a name twice: a second training in the same session (a
    # notebook, or one job training several models) would fail on the first one's view
    spark.catalog.dropTempView("training_records")
    table = db_api.register(model_inputs(records, config), dataset_display_name="training_records")
    settings = settings_for(config)
    if training.probability_two_random_records_match is not None:
        settings["probability_two_random_records_match"] = (
            training.probability_two_random_records_match
        )
    with _splink_warnings() as logged:
        linker = Linker(table, settings, log_level=logging.WARNING)
        prior_rules = [
            " AND ".join(f"l.{column} = r.{column}" for column in rule) for rule in training.prior_rules
        ] or [f"l.{rule.attribute} = r.{rule.attribute}" for rule in config.identifiers]
        if training.probability_two_random_records_match is None and prior_rules:
            linker.training.estimate_probability_two_random_records_match(
                prior_rules, recall=training.prior_recall
            )
        linker.training.estimate_u_using_random_sampling(
            max_pairs=training.max_pairs, seed=training.seed
        )
        em_rules = training.em_blocking_rules or config.matching.blocking_rules
        for rule in em_rules:
            session = linker.training.estimate_parameters_using_expectation_maximisation(
                _block_on(rule), estimate_without_term_frequencies=True
            )
            logged += filter(None, [_em_convergence_warning(session)])
    raw = linker.misc.save_model_to_json()
    unobserved = unobserved_levels(raw)  # before the floor, after which every level has m and u
    model = _smoothed(raw)
    overlaps = tuple(overlap.message(config.attribute_kinds)
                     for overlap in evidence_overlaps(model_inputs(records, config), model))
    for measured, _ in overlaps:
        logger.warning("evidence counted twice: %s", measured)
    proposal = propose_link_threshold(spark, records, model=model, config=config)
    report = TrainingReport(model, unobserved, tuple(logged),
                            overlaps,
                            tuple(proposal.lines(config.matching.link_threshold) if proposal else ()))
    output = Path(output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report.model, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    save_proposal(proposal, output)
    stem = output.with_suffix("")
    linker.visualisations.match_weights_chart().save(f"{stem}.match_weights.html", inline=True)
    linker.visualisations.m_u_parameters_chart().save(f"{stem}.m_u_parameters.html", inline=True)
    Path(f"{stem}.report.txt").write_text("\n".join(report.lines()) + "\n", encoding="utf-8")
    return report


def propose_link_threshold(
    spark: SparkSession, records: DataFrame, *, model: dict[str, Any], config: Config
) -> ThresholdProposal | None:
    """The link threshold ``model`` proposes (see :mod:`resolution.threshold`), from its scores
    of the run's candidate pairs of ``records`` (standardized, junk identifiers masked)."""
    from splink import Linker

    db_api = _spark_api(spark)
    spark.catalog.dropTempView("threshold_records")
    table = db_api.register(model_inputs(records, config), dataset_display_name="threshold_records")
    predictions = Linker(table, with_candidate_rules(model, config, "spark")).inference.predict()
    return propose_threshold(predictions.as_spark_dataframe())


class _WarningLog(logging.Handler):
    """Keeps the message of every warning Splink logs (for the training report)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage().strip())


@contextmanager
def _splink_warnings() -> Iterator[list[str]]:
    """The warnings Splink logs inside the block, printed as before too.

    Splink's own logging setup runs first (what ``Linker(log_level=...)`` does): with our
    handler already attached it would add no stderr handler, and without a root handler (a
    notebook) its warnings would then be kept but not shown. Attached before the ``Linker``
    is built, the handler also sees the settings validation.
    """
    from splink.internals.splink_logging import enable

    enable(logging.WARNING)
    log = _WarningLog()
    splink_logger = logging.getLogger("splink")
    splink_logger.addHandler(log)
    try:
        yield log.messages
    finally:
        splink_logger.removeHandler(log)


def _em_convergence_warning(session: Any) -> str | None:
    """The warning for an EM pass that stopped at ``max_iterations`` still moving, else None
    (Splink logs "EM converged after N iterations", at INFO, whether or not it converged)."""
    try:  # Splink's private session state: a release that renames it loses this check, not training
        from splink.internals.expectation_maximisation import (
            _max_change_in_parameters_comparison_levels,
        )

        history = session._core_model_settings_history
        limits = session.training_settings
        if len(history) < 2 or len(history) - 1 < limits.max_iterations:
            return None
        change = _max_change_in_parameters_comparison_levels(history)["max_abs_change_value"]
        rule = session._blocking_rule_for_training.blocking_rule_sql
    except (AttributeError, ImportError, KeyError, TypeError):
        return None
    if change < limits.em_convergence:
        return None
    return em_not_converged(rule, iterations=limits.max_iterations, change=change, convergence=limits.em_convergence)


SMOOTHING_FLOOR = 1e-6


def _smoothed(model: dict[str, Any]) -> dict[str, Any]:
    """Floor m and u probabilities that training left at zero or unset.

    A level never observed in the training sample would otherwise carry an infinite weight, so
    one unseen level (say, a first-name typo among otherwise identical records) could veto or
    force a link on its own.
    """
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            for key in ("m_probability", "u_probability"):
                if not level.get(key):
                    level[key] = SMOOTHING_FLOOR
    return model


def load_model(path: str | Path, config: Config) -> dict[str, Any]:
    """Read a saved model and check it compares the attributes the config maps."""
    model_path = Path(path)
    if not model_path.is_file():
        raise ModelError(
            f"model file {model_path} not found: train it first with "
            f"`idr train --config {config.path}`"
        )
    model = json.loads(model_path.read_text(encoding="utf-8"))
    compared = {c.get("output_column_name") for c in model.get("comparisons", [])}
    unmapped = sorted(compared - set(config.attributes))
    if unmapped:
        raise ModelError(
            f"model {model_path} compares {', '.join(unmapped)}, which no source of {config.path} maps: "
            f"map them in a source's columns, or train a model for this config with `idr train --config {config.path}`"
        )
    missing = sorted(set(config.matching.comparisons) - compared)
    if missing:
        raise ModelError(
            f"model {model_path} has no comparison for {', '.join(missing)} listed in "
            f"matching.comparisons of {config.path}: retrain with `idr train`"
        )
    dialect = model.get("sql_dialect")
    if dialect not in (None, "spark"):
        raise ModelError(f"model {model_path} was trained for {dialect!r}, not Spark")
    return model


def _levels_map(model: dict[str, Any]) -> Column:
    """A map comparison -> "level label (partial match weight)": why a pair scored as it did."""
    entries = []
    for comparison in model["comparisons"]:
        name = comparison["output_column_name"]
        gamma = F.col(f"gamma_{name}")
        label = None
        levels = comparison["comparison_levels"]
        for position, level in enumerate(levels):
            value = -1 if level.get("is_null_level") else _level_value(levels, position)
            text = level.get("label_for_charts", str(value))
            label = (F.when if label is None else label.when)(gamma == value, F.lit(text))
        weight = F.format_string(" (%+.1f)", F.col(f"mw_{name}"))
        entries += [F.lit(name), F.concat(label, F.coalesce(weight, F.lit("")))]
    return F.create_map(*entries)


def _level_value(levels: list[dict[str, Any]], position: int) -> int:
    # Splink numbers non-null levels from the last (0, "all other") upwards.
    non_null = [i for i, level in enumerate(levels) if not level.get("is_null_level")]
    return len(non_null) - 1 - non_null.index(position)


def identifier_pairs(records: DataFrame, *, config: Config, changed: DataFrame | None = None) -> DataFrame:
    """The identifier rules' pairs without a model (rules-only resolution): plain Spark joins.

    Records sharing a value of a rule's attribute pair up (values ``max_group_size`` masked are
    already null in ``records``). ``rule`` is the first rule they agree on, as in
    :func:`score_candidates`; there is no score, and ``comparison_levels`` holds each identifier
    they share (``email -> "Exact match on email"``) as the link's evidence. With ``changed``
    (a subset of ``records``), only pairs involving a changed record.
    """
    rules = config.identifiers
    if not rules:
        raise ModelError(f"{config.path}: no identifier rule and no model, so no candidate pair")

    names = F.array(*[F.lit(rule.name) for rule in rules])
    attributes = F.array(*[F.lit(rule.attribute) for rule in rules])

    def values(frame: DataFrame) -> DataFrame:  # with the rule's position (0 first)
        return identifier_values(frame, rules=rules).select(
            RECORD_KEY, (F.array_position(attributes, F.col(IDENTIFIER)) - 1).cast("int").alias("__rule"), VALUE
        )

    right = values(records).select(F.col(RECORD_KEY).alias("__other"), "__rule", VALUE)
    pairs = (
        values(records if changed is None else changed)
        .join(right, ["__rule", VALUE])
        .filter(F.col(RECORD_KEY) != F.col("__other"))
        .select(
            F.least(RECORD_KEY, "__other").alias(RECORD_KEY_L),
            F.greatest(RECORD_KEY, "__other").alias(RECORD_KEY_R),
            "__rule",
        )
        # a pair of two changed records comes in both orders: collect_set keeps each rule once
        .groupBy(RECORD_KEY_L, RECORD_KEY_R)
        .agg(F.array_sort(F.collect_set("__rule")).alias("__rules"))
    )
    return pairs.select(
        RECORD_KEY_L,
        RECORD_KEY_R,
        F.element_at(names, F.col("__rules")[0] + 1).alias(RULE),
        F.lit(None).cast("double").alias(MATCH_PROBABILITY),
        F.lit(None).cast("double").alias(MATCH_WEIGHT),
        F.map_from_arrays(
            F.transform("__rules", lambda i: F.element_at(attributes, i + 1)),
            F.transform("__rules", lambda i: F.concat(F.lit("Exact match on "), F.element_at(attributes, i + 1))),
        ).alias(COMPARISON_LEVELS),
    )


def score_candidates(
    spark: SparkSession,
    records: DataFrame,
    *,
    config: Config,
    model: dict[str, Any] | None,
    changed: DataFrame | None = None,
    via_linker: bool = False,
) -> DataFrame:
    """Generate and score candidate pairs; keep those an edge can come from.

    Without a model (no ``matching`` section), the identifier rules' pairs alone
    (:func:`identifier_pairs`).

    The candidate rules are the identifier rules (``block_on(email)``, ...), whose pairs are
    kept whatever their score (deterministic links, with the evidence), then the blocking
    rules, whose pairs are kept at the review threshold (most candidate pairs fall below it
    and are dropped before anything is written). A pair both kinds find is kept once, as an
    identifier pair.

    With ``changed`` (a subset of ``records``), only pairs involving a changed record are
    produced, with the same rules: each pass blocks changed x all live records, then
    self-pairs are dropped and a pair of two changed records (found in both orders) is kept
    once.

    The pairs of every rule are found by one Spark equi-join and scored by Splink's own SQL in
    one query (:func:`_native_predictor`); ``via_linker`` runs Splink's ``Linker`` instead, in
    two passes (identifier rules, then blocking rules with ``threshold_match_probability``),
    the reference the native path is tested against (same pairs, same weights).

    Output: ``record_key_l < record_key_r``, ``rule`` (identifier rule name or ``model``),
    ``match_probability``, ``match_weight``, ``comparison_levels``.
    """
    if model is None:
        return identifier_pairs(records, config=config, changed=changed)
    identifier_rules, blocking_rules = identifier_blocking_rules(config), config.matching.blocking_rules
    if not identifier_rules and not blocking_rules:
        raise ModelError(f"{config.path}: no identifier rule and no blocking rule, so no candidate pair")
    threshold = config.matching.review_threshold
    if not via_linker:
        # One pass over every rule: a pair agreeing on an identifier rule has a match_key
        # below len(identifier_rules) (they come first) and is kept whatever its score; any
        # other pair is kept at the review threshold, compared on the match weight as Splink's
        # threshold_match_probability is.
        predict = _native_predictor(spark, records, config=config, model=model, changed=changed)
        pairs = predict([*identifier_rules, *blocking_rules])
        is_identifier = F.col("match_key").cast("int") < len(identifier_rules)
        if blocking_rules:
            pairs = pairs.filter(is_identifier | (F.col("match_weight") >= _threshold_weight(threshold)))
        rule = F.when(is_identifier, _identifier_rule_name(config)).otherwise(F.lit(MODEL_RULE))
        return _edges(pairs, rule, model=model)
    predict = _splink_predictor(spark, records, config=config, model=model, changed=changed)
    scored = []
    if identifier_rules:
        identifier_edges = predict(identifier_rules, None)
        scored.append(_edges(identifier_edges, _identifier_rule_name(config), model=model))
    if blocking_rules:
        model_pairs = _edges(predict(blocking_rules, threshold), F.lit(MODEL_RULE), model=model)
        if scored:
            model_pairs = model_pairs.join(scored[0], [RECORD_KEY_L, RECORD_KEY_R], "left_anti")
        scored.append(model_pairs)
    return scored[0] if len(scored) == 1 else scored[0].unionByName(scored[1])


def _threshold_weight(probability: float) -> float:
    """Splink's ``threshold_match_probability`` as the match weight its predict filters on."""
    from splink.internals.misc import threshold_args_to_match_weight

    return threshold_args_to_match_weight(probability, None)


def _splink_predictor(
    spark: SparkSession,
    records: DataFrame,
    *,
    config: Config,
    model: dict[str, Any],
    changed: DataFrame | None,
) -> Callable[[Sequence[Sequence[str]], float | None], DataFrame]:
    """Register the records with Splink once; return ``predict(blocking rules, threshold)``,
    the scored pairs within ``records`` (or of ``changed`` x ``records``) as a Spark frame."""
    from splink import Linker

    db_api = _spark_api(spark)
    table = db_api.register(model_inputs(records, config))
    changed_table = None if changed is None else db_api.register(model_inputs(changed, config))
    # gamma_* (the level each comparison fell in) and mw_* (its partial match weight) are what
    # explain a link: keep them.
    settings = {**model, "retain_matching_columns": True, "retain_intermediate_calculation_columns": True}
    linker = Linker(table, settings, log_level=logging.WARNING)

    def predict(rules: Sequence[Sequence[str]], threshold: float | None) -> DataFrame:
        blocking = [_block_on(rule) for rule in rules]
        if changed is None:
            return linker.inference.predict_within(
                table, blocking_rules_to_generate_predictions=blocking,
                threshold_match_probability=threshold, warning_mode="never",
            ).as_spark_dataframe()
        between = linker.inference.predict_between(
            changed_table, table, blocking_rules_to_generate_predictions=blocking,
            threshold_match_probability=threshold, warning_mode="never",
        ).as_spark_dataframe()
        return _without_self_and_mirrored_pairs(between, changed)

    return predict


def _native_predictor(
    spark: SparkSession,
    records: DataFrame,
    *,
    config: Config,
    model: dict[str, Any],
    changed: DataFrame | None,
) -> Callable[[Sequence[Sequence[str]]], DataFrame]:
    """``predict(blocking rules)`` as Splink's predict computes it (no threshold), in one Spark query.

    Splink's ``Linker`` runs its steps (blocking, comparison vectors, match weights) as
    separate tables, each written to the checkpoint folder before the next reads it: a fixed
    cost of several Spark jobs per call, whatever the number of pairs. Here the blocked pairs
    come from equi-joins (a pair belongs to the first rule it agrees on, Splink's
    ``match_key``), and Splink's own SQL for the comparison vectors and match weights, taken
    from its settings object, runs over them as one lazy query.
    """
    from splink.internals.settings_creator import SettingsCreator

    _spark_api(spark)  # registers Splink's similarity functions (jaro_winkler, ...) in the session
    settings = SettingsCreator.from_path_or_dict(
        {**model, "retain_matching_columns": True, "retain_intermediate_calculation_columns": True}
    ).get_settings("spark")
    inputs = model_inputs(records, config)
    seeds = inputs if changed is None else inputs.join(changed.select(RECORD_KEY), RECORD_KEY, "left_semi")

    def predict(rules: Sequence[Sequence[str]]) -> DataFrame:
        pairs = _blocked_pairs(seeds, inputs, rules, within=changed is None)
        return _splink_scores(spark, _with_both_sides(pairs, inputs), settings)

    return predict


def _blocked_pairs(seeds: DataFrame, inputs: DataFrame, rules: Sequence[Sequence[str]], *, within: bool) -> DataFrame:
    """``record_key_l < record_key_r, match_key``: the pairs of a seed and any input record that
    agree on every column of some rule (null agrees with nothing), each with the position of
    the first rule it agrees on. ``within``: the seeds are the inputs (each pair found once).

    One equi-join over every rule's keys (:func:`resolution.matching.rule_keys`), not a join
    per rule."""
    if not rules:
        raise ModelError("no blocking rule to find candidate pairs with")
    left_key, right_key = f"{RECORD_KEY}_l", f"{RECORD_KEY}_r"
    left = rule_keys(seeds, rules).withColumnRenamed(RECORD_KEY, "__a")
    right = rule_keys(inputs, rules).withColumnRenamed(RECORD_KEY, "__b")
    # no broadcast hint for a changed subset: a large change would not fit, and adaptive
    # execution broadcasts a small one by its measured size
    joined = left.join(right, [RULE_INDEX, RULE_KEY]).filter(
        (F.col("__a") < F.col("__b")) if within else (F.col("__a") != F.col("__b"))
    )
    return joined.groupBy(
        F.least("__a", "__b").alias(left_key), F.greatest("__a", "__b").alias(right_key)
    ).agg(F.min(RULE_INDEX).alias("match_key"))


def _with_both_sides(pairs: DataFrame, inputs: DataFrame) -> DataFrame:
    """Each pair with both records' model inputs, as ``<column>_l`` and ``<column>_r``."""
    sides = [
        inputs.select(*[F.col(name).alias(f"{name}_{side}") for name in inputs.columns]) for side in ("l", "r")
    ]
    return pairs.join(sides[0], f"{RECORD_KEY}_l").join(sides[1], f"{RECORD_KEY}_r")


def _splink_scores(spark: SparkSession, blocked: DataFrame, settings) -> DataFrame:
    """Splink's SQL from comparison vectors to match weights and probabilities over ``blocked``
    (its ``__splink__df_blocked``), as one query: ``gamma_*`` and ``mw_*`` per comparison,
    ``match_weight``, ``match_probability``; every pair kept (the caller applies thresholds)."""
    import sqlglot
    from splink.internals.comparison_vector_values import compute_comparison_vector_values_sql
    from splink.internals.predict import predict_from_comparison_vectors_sqls_using_settings

    columns = settings._columns_to_select_for_comparison_vector_values  # match_key included
    steps = [{"sql": compute_comparison_vector_values_sql(columns), "output_table_name": "__splink__df_comparison_vectors"}]
    steps += predict_from_comparison_vectors_sqls_using_settings(settings)
    ctes = ",\n".join(f"{step['output_table_name']} AS ({step['sql']})" for step in steps[:-1])
    # Splink writes dialect-neutral SQL and transpiles it per engine, as its SparkAPI does
    query = sqlglot.transpile(f"WITH {ctes}\n{steps[-1]['sql']}", read="spark", write="customspark")[0]
    # spark.sql formats {blocked} as the DataFrame: every other brace of Splink's SQL is doubled
    query = query.replace("{", "{{").replace("}", "}}").replace("__splink__df_blocked", "{blocked}")
    return spark.sql(query, blocked=blocked)


def _without_self_and_mirrored_pairs(between: DataFrame, changed: DataFrame) -> DataFrame:
    """Changed x all pairs minus self-pairs; a pair of two changed records kept in one order."""
    left, right = F.col(f"{RECORD_KEY}_l"), F.col(f"{RECORD_KEY}_r")
    changed_right = changed.select(F.col(RECORD_KEY).alias("__changed_r"), F.lit(True).alias("__both"))
    return (
        between.join(changed_right, right == F.col("__changed_r"), "left")
        .filter((left != right) & (F.col("__both").isNull() | (left < right)))
        .drop("__changed_r", "__both")
    )


def _identifier_rule_name(config: Config) -> Column:
    """Splink's ``match_key`` (the first identifier rule that found a pair) as the rule's name."""
    rule_name = F.lit(None).cast("string")
    for index, rule in reversed(list(enumerate(config.identifiers))):
        rule_name = F.when(F.col("match_key").cast("int") == index, F.lit(rule.name)).otherwise(rule_name)
    return rule_name


def _edges(pairs: DataFrame, rule: Column, *, model: dict[str, Any]) -> DataFrame:
    """Splink's predictions as candidate edges: ordered keys, rule, scores and the levels map."""
    left, right = F.col(f"{RECORD_KEY}_l"), F.col(f"{RECORD_KEY}_r")
    return pairs.select(
        F.least(left, right).alias(RECORD_KEY_L),
        F.greatest(left, right).alias(RECORD_KEY_R),
        rule.alias(RULE),
        F.col("match_probability").cast("double").alias(MATCH_PROBABILITY),
        F.col("match_weight").cast("double").alias(MATCH_WEIGHT),
        _levels_map(model).alias(COMPARISON_LEVELS),
    )
