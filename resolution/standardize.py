"""Standardize identifiers and attributes: pure DataFrame -> DataFrame transforms.

Every value that cannot be standardized (an invalid email or phone, a junk value matching an
exclusion pattern, an unparseable date) becomes null, and the reason is recorded in the
record's ``value_issues`` array (``"phone:invalid"``, ``"email:excluded"``) so it can be counted
and looked up later; nothing crashes on bad values.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from functools import cache

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from resolution.config import DEFAULT_DATE_FORMATS, Config
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

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$"


@cache
def _accent_table() -> tuple[str, str]:
    """Pairs of (accented letter, base letter) for Latin letters, used by Spark ``translate``.

    ``translate`` runs in the JVM, so name folding needs no Python UDF.
    """
    accented, plain = [], []
    for code in range(0xC0, 0x250):
        char = chr(code)
        base = unicodedata.normalize("NFKD", char)[0]
        if base != char and base.isascii() and base.isalpha():
            accented.append(char)
            plain.append(base)
    return "".join(accented), "".join(plain)


def fold_name(column: Column) -> Column:
    """Lower-case, strip accents and punctuation, collapse spaces: 'Zoë  O'Brien' -> 'zoe obrien'."""
    accented, plain = _accent_table()
    folded = F.translate(F.lower(F.trim(column)), accented.lower() + accented, plain.lower() * 2)
    folded = F.regexp_replace(folded, r"['`’.]", "")
    folded = F.regexp_replace(folded, r"[^a-z\- ]", " ")
    folded = F.trim(F.regexp_replace(folded, r"\s+", " "))
    return F.when(folded != "", folded)


GMAIL_DOMAINS = ("gmail.com", "googlemail.com")


def standardize_email(column: Column) -> Column:
    """Trim and lower-case, drop a ``+tag`` from the mailbox (plus addressing delivers
    ``ann+shop@x`` to ``ann@x``), and for Gmail drop the dots it ignores and fold
    ``googlemail.com`` into ``gmail.com``. Anything not shaped like an email becomes null."""
    email = F.lower(F.trim(column))
    mailbox = F.regexp_replace(F.substring_index(email, "@", 1), r"\+.*$", "")
    domain = F.substring_index(email, "@", -1)
    gmail = domain.isin(*GMAIL_DOMAINS)
    mailbox = F.when(gmail, F.regexp_replace(mailbox, r"\.", "")).otherwise(mailbox)
    domain = F.when(gmail, F.lit("gmail.com")).otherwise(domain)
    normalized = F.concat(mailbox, F.lit("@"), domain)
    return F.when(email.rlike(EMAIL_PATTERN) & normalized.rlike(EMAIL_PATTERN), normalized)


def standardize_text(column: Column) -> Column:
    """Trim and collapse whitespace; empty becomes null."""
    text = F.trim(F.regexp_replace(column, r"\s+", " "))
    return F.when(text != "", text)


def standardize_address(column: Column) -> Column:
    """Lower-case, drop punctuation, collapse whitespace."""
    address = F.regexp_replace(F.lower(column), r"[^a-z0-9 ]", " ")
    return standardize_text(address)


def standardize_postcode(column: Column) -> Column:
    """Upper-case alphanumerics only: ' sw1a 1aa ' -> 'SW1A1AA'."""
    postcode = F.regexp_replace(F.upper(column), r"[^A-Z0-9]", "")
    return F.when(postcode != "", postcode)


def standardize_id(column: Column) -> Column:
    """Trim and upper-case an identifier such as a loyalty or customer id."""
    value = F.upper(F.trim(column))
    return F.when(value != "", value)


def parse_date(column: Column, formats: Sequence[str]) -> Column:
    """First format that parses wins; unparseable gives null (never an ANSI error)."""
    text = F.trim(column.cast("string"))
    return F.coalesce(*[F.to_date(F.try_to_timestamp(text, F.lit(f))) for f in formats])


def parse_timestamp(column: Column, formats: Sequence[str]) -> Column:
    """Parse a timestamp from a string, trying each format in turn; null when none parses."""
    text = F.trim(column.cast("string"))
    return F.coalesce(*[F.try_to_timestamp(text, F.lit(f)) for f in formats])


def parse_phone(raw: str | None, default_region: str, validation: str = "possible") -> tuple[str | None, bool]:
    """One phone number in E.164 with ``phonenumbers``, and whether the numbering plan knows it.

    None when empty, unparseable or impossible (a wrong length for its region, or a local
    number without its area code). A possible
    number the plan does not know (555-123-4567, a range opened after the library's data, a
    test range) is kept with ``verified`` False under ``validation="possible"`` (real systems
    hold many such numbers, and they still identify a person); ``"valid"`` drops it. The
    batch's UDF and the real-time service both call this.
    """
    import phonenumbers

    if raw is None or not raw.strip():
        return None, False
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None, False
    verified = phonenumbers.is_valid_number(number)
    # a local-only length (555-1234, no area code) is possible but does not identify a line
    possible = phonenumbers.is_possible_number_with_reason(number) == phonenumbers.ValidationResult.IS_POSSIBLE
    if not verified and (validation == "valid" or not possible):
        return None, False
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), verified


PHONE_STRUCT = "value string, verified boolean"


def phone_to_e164_udf(default_region: str, validation: str = "possible"):
    """A vectorised (pandas) UDF applying :func:`parse_phone`: a struct of the E.164 value and
    ``verified``. Spark has no phone parser; the pandas UDF batches rows through Arrow."""

    @F.pandas_udf(PHONE_STRUCT)
    def to_e164(phones: pd.Series) -> pd.DataFrame:
        parsed = [parse_phone(raw, default_region, validation) if isinstance(raw, str) else (None, False)
                  for raw in phones]
        return pd.DataFrame(parsed, columns=["value", "verified"]).astype({"value": object, "verified": bool})

    return to_e164


def _matches_any(column: Column, patterns: Iterable[str]) -> Column:
    condition = F.lit(False)
    for pattern in patterns:
        condition = condition | column.like(pattern.lower())
    return condition


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


def _standardize_value(column: Column, kind: str, *, to_e164, dates) -> Column:
    if kind == "email":
        return standardize_email(column)
    if kind == "phone":  # the struct of value and verified (read apart in standardize_records)
        return to_e164(column.cast("string"))
    if kind == "name":
        return fold_name(column)
    if kind == "date":
        return dates(column)
    if kind == "address":
        return standardize_address(column)
    if kind == "postcode":
        return standardize_postcode(column)
    if kind == "text":
        return standardize_text(column)
    return standardize_id(column)


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
    exclusions: dict[str, list[str]] = {}
    for rule in config.identifiers:
        exclusions.setdefault(rule.attribute, []).extend(rule.exclude)
    to_e164 = phone_to_e164_udf(config.phone_region, config.phone_validation)
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
            _standardize_value(
                F.col(name), kind, to_e164=to_e164, dates=lambda column: _parse_dates(column, config, date_formats)
            )
            .alias(f"__phone_{name}" if kind == "phone" else name)
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
        present = raw_value.isNotNull() & (F.trim(raw_value) != "")
        patterns = exclusions.get(name, [])
        excluded = _matches_any(value, patterns)
        if kind == "phone" and patterns:
            excluded = excluded | _matches_any(F.regexp_replace(raw_value, r"[^0-9]", ""), patterns)
        excluded = F.coalesce(excluded, F.lit(False))
        columns.append(F.when(~excluded, value).alias(name))
        issue = F.when(present & excluded, F.lit(f"{name}:excluded")).when(
            present & value.isNull(), F.lit(f"{name}:invalid")
        )
        if kind == "phone":  # kept, but not a number the numbering plan knows
            issue = issue.when(value.isNotNull() & ~F.col(f"__verified_{name}"), F.lit(f"{name}:unverified"))
        issues.append(issue)
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
