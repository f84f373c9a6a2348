"""What ``idr train`` learnt, in plain words.

The prior, every comparison level's m, u and match weight, the levels training never observed,
and, for each warning Splink logged while training, what to do about it. Pure functions over
the model dict Splink saves (no Spark, no Splink): ``resolution.scoring.train_model`` gathers
the inputs, ``idr train`` and the quick-start notebook print ``TrainingReport.lines()``.

- m: the share of truly matching pairs that fall in a level; u: the share of non-matching pairs.
- A level's match weight is log2(m / u); a pair's is the prior's (log2 of its odds) plus one
  level's weight per comparison, and its match probability 2^w / (1 + 2^w).
- Splink leaves m or u out of the saved model for a level no training pair fell in; scoring
  then floors them (``resolution.scoring._smoothed``), after which the level looks estimated.
  So "never observed" is read on the model *before* that floor.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

SPLINK_DOCS = "https://moj-analytical-services.github.io/splink/"
PROBABILITIES = ("m", "u")


@dataclass(frozen=True)
class UnobservedLevel:
    """A comparison level training left without an m or u estimate (``missing``: "m", "u")."""

    comparison: str
    level: str
    missing: tuple[str, ...]


@dataclass(frozen=True)
class TrainingReport:
    """What one training learnt: the saved ``model``, its never-observed levels (read before
    the floor), and the warnings Splink logged (one message each, as logged)."""

    model: Mapping[str, Any]
    unobserved: tuple[UnobservedLevel, ...]
    warnings: tuple[str, ...]
    # comparisons carrying the same evidence (resolution.evidence): (what was measured, what to do)
    overlaps: tuple[tuple[str, str], ...] = ()
    threshold: tuple[str, ...] = ()  # the link threshold the model proposes (resolution.threshold)

    def lines(self) -> list[str]:
        """The report as ``idr train`` prints it and writes it to ``<model>.report.txt``."""
        return [*describe_model(self.model, unobserved=self.unobserved, warnings=self.warnings),
                *_overlap_lines(self.overlaps), *self.threshold]


def _overlap_lines(overlaps: Sequence[tuple[str, str]]) -> list[str]:
    if not overlaps:
        return ["evidence counted twice: none (no two comparisons agree together among non-matching pairs "
                "much more often than apart)"]
    lines = ["evidence counted twice (warning: the model adds one weight per comparison, as if they were "
             "independent):"]
    for what, fix in overlaps:
        lines += [f"  - {what}", f"    what to do: {fix}"]
    return lines


def level_label(level: Mapping[str, Any], position: int) -> str:
    """The level's chart label (Splink's ``label_for_charts``), else its position."""
    return level.get("label_for_charts") or f"level {position}"


def match_weight(m: float | None, u: float | None) -> float | None:
    """log2(m / u), the evidence a level carries; None where m or u is missing or zero."""
    if not m or not u:
        return None
    return math.log2(m / u)


def unobserved_levels(model: Mapping[str, Any]) -> tuple[UnobservedLevel, ...]:
    """The non-null levels of a model *as Splink saved it* that have no m or no u.

    Splink leaves ``m_probability`` / ``u_probability`` out of a level no training pair fell
    in; a zero counts as missing too, as it does for scoring's floor. Call this before the
    floor: on a floored model every level has both.
    """
    found = []
    for comparison in model["comparisons"]:
        for position, level in enumerate(comparison["comparison_levels"]):
            if level.get("is_null_level"):
                continue
            missing = tuple(p for p in PROBABILITIES if not level.get(f"{p}_probability"))
            if missing:
                name = comparison["output_column_name"]
                found.append(UnobservedLevel(name, level_label(level, position), missing))
    return tuple(found)


# --- what to do about Splink's warnings -----------------------------------------------------------


class Finding(NamedTuple):
    """What a warning says happened, what to do about it, and the level it is about (if any):
    findings alike but for their level are printed as one."""

    what: str
    advice: str
    level: str | None = None


MAX_PAIRS_ADVICE = (
    "raise matching.training.max_pairs (1e7 to 1e8 estimates rare levels' u better; "
    "u sampling takes longer)"
)


def em_not_converged(rule: str, *, iterations: int, change: float, convergence: float) -> str:
    """The warning for an EM pass that stopped at ``max_iterations`` with its parameters still
    moving more than ``convergence``: Splink logs "EM converged after N iterations" either way."""
    return (
        f"EM blocked on {rule} did not converge in {iterations} iterations "
        f"(largest change in the last one {change:.3g}, em_convergence {convergence:g})"
    )


def _m_advice(comparison: str) -> str:
    # an EM pass estimates m only for the comparisons its blocking rule does not block on
    return (
        f"add an EM blocking rule that does not block on {comparison} and pairs more true matches "
        "(matching.training.em_blocking_rules), or train on more records"
    )


def _not_trained(match: re.Match[str]) -> Finding:
    comparison, which = match["comparison"], match["which"]
    advice = _m_advice(comparison) if which == "m" else MAX_PAIRS_ADVICE
    if "level" in match.re.groupindex:
        pairs = "EM pair" if which == "m" else "sampled pair"
        return Finding(f"{comparison}: no {which} for the levels no {pairs} fell in", advice, match["level"])
    return Finding(f"{which} values not fully trained: {comparison}", advice)


# A pattern on the message Splink logged (texts of Splink 5.0.0, the version pinned: modules
# linker_components/training.py, expectation_maximisation.py, comparison.py via linker.py,
# settings.py, em_sampling.py, settings_validation/log_invalid_columns.py and
# spark/database_api.py), and its finding. The EM convergence message is ours
# (em_not_converged). Patterns match a distinctive phrase, not the whole text, so a reworded
# preamble still matches; a message no pattern matches is printed as it is.
ADVICE: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], Finding]], ...] = tuple(
    (re.compile(pattern, re.DOTALL), render)
    for pattern, render in (
        (
            r"default value for `max_pairs`",
            lambda m: Finding("u was estimated from 1e6 random pairs, Splink's default max_pairs",
                              MAX_PAIRS_ADVICE),
        ),
        (
            r"Level (?P<level>.+?) on comparison (?P<comparison>\S+) not observed in dataset, "
            r"unable to train (?P<which>[mu]) value",
            _not_trained,
        ),
        (r"Comparison: '(?P<comparison>[^']+)':\s*(?P<which>[mu]) values not fully trained", _not_trained),
        (
            r"Deterministic matching rules led to no observed matches.*?recall of (?P<recall>\S+%)",
            lambda m: Finding(
                f"the prior rules found no pair, so the prior (at recall {m['recall']}) is 0",
                "check that matching.training.prior_rules (default: the identifier rules) name "
                "attributes the training records fill, or set "
                "matching.training.probability_two_random_records_match",
            ),
        ),
        (
            r"Probability two random records match is estimated to be 1\b",
            lambda m: Finding(
                "the prior rules pair every record with every other, so the prior is 1",
                "use matching.training.prior_rules that find mostly true matches (an identifier, a "
                "full name with a birth date), or set "
                "matching.training.probability_two_random_records_match",
            ),
        ),
        (
            r"EM blocked on (?P<rule>.+?) did not converge in (?P<iterations>\d+) iterations",
            lambda m: Finding(
                f"EM blocked on {m['rule']} did not converge in {m['iterations']} iterations",
                "its m are those of the last iteration: an EM blocking rule whose pairs are mostly "
                "true matches (an identifier, a full name) converges sooner "
                "(matching.training.em_blocking_rules); Splink's max_iterations is not an idr setting",
            ),
        ),
        (
            r"No null level found for comparison (?P<comparison>\S+?)\.?\n",
            lambda m: Finding(
                f"{m['comparison']} has no null level: a missing value counts as a disagreement",
                f"give {m['comparison']} one of the kinds of matching.comparisons (they all have a null level)",
            ),
        ),
        (
            r"\[EM sampling\] Probe returned zero blocked pairs",
            lambda m: Finding(
                "an EM blocking rule found no pair in Splink's probe sample",
                "check matching.training.em_blocking_rules: each should pair a few thousand records",
            ),
        ),
        (
            r"SETTINGS VALIDATION|verify your settings dictionary",
            lambda m: Finding(
                "Splink found names in the model's settings that the training records lack",
                "check that the sources' columns map every attribute of matching.comparisons, "
                "matching.blocking_rules and the identifier rules",
            ),
        ),
        (
            r"Unable to load custom Spark SQL functions",
            lambda m: Finding(
                "Splink's similarity functions (jaro_winkler, ...) are not registered in the session",
                "add Splink's jar to the session: spark.jars=<resolution.scoring.similarity_jar_path()>",
            ),
        ),
    )
)


def advise(warning: str) -> list[Finding]:
    """The findings of a warning Splink logged, [] when no pattern recognises it. A message
    naming several comparisons gives one finding each."""
    for pattern, render in ADVICE:
        findings = [render(match) for match in pattern.finditer(warning)]
        if findings:
            return findings
    return []


# --- the report -------------------------------------------------------------------------------------


def _probability(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _prior_line(prior: float) -> str:
    if not 0 < prior < 1:
        return f"prior: two random records match with probability {prior:g}"
    return (
        f"prior: two random records match with probability {prior:.3g} (one pair in "
        f"{1 / prior:,.0f}); as a match weight (log2 of its odds): {math.log2(prior / (1 - prior)):+.2f}"
    )


def _level_lines(model: Mapping[str, Any], unobserved: Sequence[UnobservedLevel]) -> list[str]:
    missing = {(level.comparison, level.level): level.missing for level in unobserved}
    width = max(
        len(level_label(level, position))
        for comparison in model["comparisons"]
        for position, level in enumerate(comparison["comparison_levels"])
    )
    lines = []
    for comparison in model["comparisons"]:
        name = comparison["output_column_name"]
        lines.append(f"  {name}")
        for position, level in enumerate(comparison["comparison_levels"]):
            label = level_label(level, position)
            if level.get("is_null_level"):
                lines.append(f"    {label:<{width}}  null level: weight 0 (a missing value is no evidence)")
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = match_weight(m, u)
            line = (
                f"    {label:<{width}}  m {_probability(m):>9}  u {_probability(u):>9}  "
                f"weight {'n/a' if weight is None else f'{weight:+.2f}':>7}"
            )
            if (name, label) in missing:
                line += f"  never observed: {' and '.join(missing[name, label])}"
            lines.append(line)
    return lines


def _unobserved_lines(model: Mapping[str, Any], unobserved: Sequence[UnobservedLevel] | None) -> list[str]:
    if unobserved is None:
        return ["never observed in training: not known for a saved model (scoring's floor makes "
                "them look estimated); idr train lists them"]
    if not unobserved:
        return ["never observed in training: none (every level has an estimated m and u)"]
    lines = ["never observed in training (scoring floors their m or u; the weights above are the floor's):"]
    non_null = {
        c["output_column_name"]: sum(not level.get("is_null_level") for level in c["comparison_levels"])
        for c in model["comparisons"]
    }
    groups: dict[tuple[str, str], list[str]] = {}
    for level in unobserved:
        for which in level.missing:
            groups.setdefault((level.comparison, which), []).append(level.level)
    for (comparison, which), labels in groups.items():
        lines.append(f"  - {comparison}, {which}: {', '.join(labels)}")
        if which == "u":
            lines.append(f"    no pair of the random sample fell in these levels: {MAX_PAIRS_ADVICE}")
        elif len(labels) == non_null.get(comparison):
            lines.append(f"    every EM blocking rule blocks on {comparison}: {_m_advice(comparison)}")
        else:
            lines.append(
                "    no pair EM compared fell in these levels; if true matches can (a typo, another "
                f"value), the floor's weight counts against them: {_m_advice(comparison)}"
            )
    return lines


def _warning_lines(warnings: Sequence[str]) -> list[str]:
    if not warnings:
        return ["Splink warnings: none"]
    see_docs = f"see the Splink docs ({SPLINK_DOCS})"
    groups: dict[tuple[str, str], list[str]] = {}  # (what, advice) -> its levels, in logged order
    for warning in warnings:
        for what, advice, level in advise(warning) or [Finding(warning.strip(), see_docs)]:
            levels = groups.setdefault((what, advice), [])
            if level is not None and level not in levels:  # each EM pass warns of its own levels
                levels.append(level)
    lines = ["Splink warnings:"]
    for (what, advice), levels in groups.items():
        first, *rest = what.splitlines() or [""]  # an unrecognised message, as logged
        lines.append(f"  - {first}" + (f": {', '.join(levels)}" if levels else ""))
        lines += [f"    {line}" for line in rest]
        lines.append(f"    what to do: {advice}")
    return lines


def describe_model(
    model: Mapping[str, Any],
    *,
    unobserved: Sequence[UnobservedLevel] | None,
    warnings: Sequence[str] = (),
) -> list[str]:
    """The lines of the training report: the prior, every level's m, u and weight, the
    ``unobserved`` levels (from :func:`unobserved_levels` on the model before scoring's floor;
    None for a saved model, where they are no longer known) and what to do about each of
    Splink's ``warnings``."""
    return [
        _prior_line(model["probability_two_random_records_match"]),
        "levels (m: share of matching pairs in the level, u: share of non-matching pairs, "
        "weight: log2(m/u); a pair's weight is the prior's plus one level's per comparison):",
        *_level_lines(model, unobserved or ()),
        *_unobserved_lines(model, unobserved),
        *_warning_lines(warnings),
    ]
