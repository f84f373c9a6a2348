"""Standardize identifiers and attributes: pure DataFrame -> DataFrame transforms.

Every value that cannot be standardized (an invalid email or phone, a junk value matching an
exclusion pattern, an unparseable date) becomes null, and the reason is recorded in the
record's ``value_issues`` array (``"phone:invalid"``, ``"email:excluded"``) so it can be counted
and looked up later; nothing crashes on bad values.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from resolution.config import DEFAULT_DATE_FORMATS, Config
from resolution.rules import (
    excluded_column,
    exclusion_patterns,
    kind_rule,
    kind_rules,
    parse_date,
    value_issue_column,
)
from resolution.schemas import (
    DISPLAY_KINDS,
    DISPLAY_VALUES,
    RECORD_KEY,
    ROW_HASH,
    SOURCE,
    SOURCE_ID,
    SOURCE_PRIORITY,
    SOURCE_TIMESTAMP,
    VALUE_ISSUES,
)


def _parse_dates(column: Column, config: Config, date_formats: Sequence[str] | None) -> Column:
    """Dates parsed with ``date_formats``, or else with each row's source's own formats (one
    expression for every source: one plan to build and run, not one per source)."""
    if date_formats is not None:
        return parse_date(column, date_formats)
    sources_by_formats: dict[tuple[str, ...], list[str]] = {}
    for source in config.sources:
        sources_by_formats.setdefault(tuple(source.date_formats), []).append(source.name)
    default = parse_date(column, DEFAULT_DATE_FORMATS)
    if set(sources_by_formats) <= {tuple(DEFAULT_DATE_FORMATS)}:
        return default
    branches = [(F.col(SOURCE).isin(names), parse_date(column, formats)) for formats, names in sources_by_formats.items()]
    parsed = F.when(*branches[0])
    for condition, value in branches[1:]:
        parsed = parsed.when(condition, value)
    return parsed.otherwise(default)


def standardize_records(
    raw: DataFrame, *, config: Config, date_formats: Sequence[str] | None = None
) -> DataFrame:
    """Standardize every mapped attribute of the ingested rows.

    Input: ``source, source_id, source_priority, source_timestamp``, one column per standard
    attribute (raw values) and ``row_hash``, of any number of sources. Output: ``record_key``
    plus the same columns standardized, ``value_issues`` (the reasons values were nulled, as
    ``attribute:reason``) and ``display_values``. Dates are read with ``date_formats`` if given,
    else with each source's ``date_formats``.
    """
    exclusions = exclusion_patterns(config.identifiers)
    rules = kind_rules(config, date_column=lambda column: _parse_dates(column, config, date_formats))
    kinds = config.attribute_kinds
    phones = [name for name, kind in kinds.items() if kind == "phone"]

    # Step 1 standardizes each value once (the phone parser is a pandas UDF: evaluate it once).
    standardized = raw.select(
        SOURCE,
        SOURCE_ID,
        SOURCE_PRIORITY,
        SOURCE_TIMESTAMP,
        ROW_HASH,
        *[F.col(name).cast("string").alias(f"__raw_{name}") for name in kinds],
        *[
            kind_rule(rules, kind).column(F.col(name)).alias(f"__phone_{name}" if kind == "phone" else name)
            for name, kind in kinds.items()
        ],
    )
    if phones:  # the phone UDF's struct, evaluated once, split into the value and its check
        standardized = standardized.select(
            "*",
            *[F.col(f"__phone_{name}.value").alias(name) for name in phones],
            *[F.col(f"__phone_{name}.verified").alias(f"__verified_{name}") for name in phones],
        )
    # Step 2 applies exclusion patterns and records why values were nulled.
    columns, issues = [], []
    for name, kind in kinds.items():
        raw_value, value = F.col(f"__raw_{name}"), F.col(name)
        excluded = excluded_column(value, raw_value, kind, exclusions.get(name, []))
        columns.append(F.when(~excluded, value).alias(name))
        verified = F.col(f"__verified_{name}") if kind == "phone" else None
        issues.append(value_issue_column(name, raw_value, value, excluded, verified))
    return standardized.select(
        F.concat_ws(":", F.col(SOURCE), F.col(SOURCE_ID)).alias(RECORD_KEY),
        SOURCE,
        SOURCE_ID,
        SOURCE_PRIORITY,
        SOURCE_TIMESTAMP,
        *columns,
        F.filter(F.array(*issues), lambda issue: issue.isNotNull()).alias(VALUE_ISSUES),
        _display_values([name for name, kind in kinds.items() if kind in DISPLAY_KINDS]).alias(DISPLAY_VALUES),
        ROW_HASH,
    )


def _display_values(names: list[str]) -> Column:
    """Per attribute kept for matching, the value as written (trimmed, inner spaces collapsed):
    what golden profiles show (``John O'Brien``), where matching compares ``john obrien``."""
    entries = [
        F.struct(
            F.lit(name).alias("key"),
            F.when(F.col(name).isNotNull(), F.regexp_replace(F.trim(F.col(f"__raw_{name}")), r"\s+", " ")).alias("value"),
        )
        for name in names
    ]
    if not entries:
        return F.create_map().cast("map<string,string>")
    return F.map_from_entries(F.filter(F.array(*entries), lambda entry: entry["value"].isNotNull()))
