"""The rules the batch (Spark) and the real-time service (plain Python) both apply.

Each rule is defined once, with its two renderings side by side: a Spark column expression for
the batch and a Python function for the service, which must decide exactly as the next batch
run would (or a record answered online would land elsewhere after it). The table covers
standardization by attribute kind, exclusions and the reasons values are nulled, oversized
identifier groups, edge classification, the anchor order of the id policy and the cannot-link
check. ``tests/test_rules_conformance.py`` runs both renderings of every rule on the same values.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import cache
from typing import Any

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F

from resolution import schemas as S
from resolution.config import DEFAULT_DATE_FORMATS, Config, IdentifierRule

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$"
GMAIL_DOMAINS = ("gmail.com", "googlemail.com")
PHONE_STRUCT = "value string, verified boolean"
_EMAIL = re.compile(EMAIL_PATTERN)
_SPACES = re.compile(r"\s+")


def _trim(text: str) -> str:
    """Spark's ``trim``: spaces only (not tabs or newlines)."""
    return text.strip(" ")


def key_text(value: Any) -> str | None:
    """A value as the text identifiers and blocking keys compare by: Spark's (and Arrow's)
    ``cast(... as string)`` (dates ISO, timestamps with a space), None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# ---- a source's columns as one attribute's raw value ----------------------------------------


def joined_parts(columns: Sequence[Column]) -> Column:
    """The raw value an attribute reads from its source columns, as text. Several columns (a
    composite attribute: street number, street name, unit) are each trimmed and joined by one
    space, empty or null parts left out; all of them empty gives null."""
    if len(columns) == 1:
        return columns[0].cast("string")
    parts = [F.trim(column.cast("string")) for column in columns]
    joined = F.concat_ws(" ", *[F.when(part != "", part) for part in parts])
    return F.when(joined != "", joined)


def joined_parts_value(values: Sequence[Any]) -> str | None:
    """:func:`joined_parts` in Python, on the columns' values."""
    if len(values) == 1:
        return key_text(values[0])
    parts = [_trim(key_text(value)) for value in values if value is not None]
    return " ".join(part for part in parts if part) or None


# ---- standardization, one pair per attribute kind ----------------------------------------


@cache
def _accent_table() -> tuple[str, str]:
    """Pairs of (accented letter, base letter) for Latin letters, used by Spark ``translate``
    (which runs in the JVM, so name folding needs no Python UDF)."""
    accented, plain = [], []
    for code in range(0xC0, 0x250):
        char = chr(code)
        base = unicodedata.normalize("NFKD", char)[0]
        if base != char and base.isascii() and base.isalpha():
            accented.append(char)
            plain.append(base)
    return "".join(accented), "".join(plain)


@cache
def _accent_translation() -> dict[int, int | None]:
    """Spark's ``translate(s, matching, replace)``: the first occurrence of a character in
    ``matching`` maps to the character at its position in ``replace``, or is deleted beyond it."""
    accented, plain = _accent_table()
    matching, replace = accented.lower() + accented, plain.lower() * 2
    table: dict[int, int | None] = {}
    for index, char in enumerate(matching):
        table.setdefault(ord(char), ord(replace[index]) if index < len(replace) else None)
    return table


def fold_name(column: Column) -> Column:
    """Lower-case, strip accents and punctuation, collapse spaces: 'Zoë  O'Brien' -> 'zoe obrien'."""
    accented, plain = _accent_table()
    folded = F.translate(F.lower(F.trim(column)), accented.lower() + accented, plain.lower() * 2)
    folded = F.regexp_replace(folded, r"['`’.]", "")
    folded = F.regexp_replace(folded, r"[^a-z\- ]", " ")
    folded = F.trim(F.regexp_replace(folded, r"\s+", " "))
    return F.when(folded != "", folded)


def fold_name_value(value: str) -> str | None:
    folded = _trim(value.lower()).translate(_accent_translation())
    folded = re.sub(r"['`’.]", "", folded)
    folded = re.sub(r"[^a-z\- ]", " ", folded)
    folded = _SPACES.sub(" ", folded).strip(" ")
    return folded or None


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


def standardize_email_value(value: str) -> str | None:
    email = _trim(value.lower())
    mailbox = re.sub(r"\+.*$", "", email.split("@", 1)[0], flags=re.DOTALL)
    domain = email.rsplit("@", 1)[-1]
    if domain in GMAIL_DOMAINS:
        mailbox, domain = mailbox.replace(".", ""), "gmail.com"
    normalized = f"{mailbox}@{domain}"
    if _EMAIL.search(email) and _EMAIL.search(normalized):
        return normalized
    return None


def standardize_text(column: Column) -> Column:
    """Trim and collapse whitespace; empty becomes null."""
    text = F.trim(F.regexp_replace(column, r"\s+", " "))
    return F.when(text != "", text)


def standardize_text_value(value: str) -> str | None:
    text = _trim(_SPACES.sub(" ", value))
    return text or None


def standardize_address(column: Column) -> Column:
    """Lower-case, drop punctuation, collapse whitespace."""
    return standardize_text(F.regexp_replace(F.lower(column), r"[^a-z0-9 ]", " "))


def standardize_address_value(value: str) -> str | None:
    return standardize_text_value(re.sub(r"[^a-z0-9 ]", " ", value.lower()))


def standardize_postcode(column: Column) -> Column:
    """Upper-case alphanumerics only: ' sw1a 1aa ' -> 'SW1A1AA'."""
    postcode = F.regexp_replace(F.upper(column), r"[^A-Z0-9]", "")
    return F.when(postcode != "", postcode)


def standardize_postcode_value(value: str) -> str | None:
    return re.sub(r"[^A-Z0-9]", "", value.upper()) or None


def standardize_id(column: Column) -> Column:
    """Trim and upper-case an identifier such as a loyalty or customer id."""
    value = F.upper(F.trim(column))
    return F.when(value != "", value)


def standardize_id_value(value: str) -> str | None:
    return _trim(value.upper()) or None


def parse_date(column: Column, formats: Sequence[str]) -> Column:
    """First format that parses wins; unparseable gives null (never an ANSI error)."""
    text = F.trim(column.cast("string"))
    return F.coalesce(*[F.to_date(F.try_to_timestamp(text, F.lit(f))) for f in formats])


def parse_date_value(value: str, formats: Sequence[str]) -> date | None:
    """The first format that parses wins, as ``to_date(try_to_timestamp)`` does.

    Spark parses strictly: ``2021-1-5`` does not match ``yyyy-MM-dd``; two-digit fields must
    have two digits, which strptime does not check, so the width is checked here.
    """
    text = _trim(value)
    for pattern in formats:
        for fmt in _strptime_formats(pattern):
            try:
                parsed = datetime.strptime(text, fmt)
            except ValueError:
                continue
            if _widths_match(text, fmt):
                return parsed.date()
    return None


def parse_timestamp(column: Column, formats: Sequence[str]) -> Column:
    """Parse a timestamp from a string, trying each format in turn; null when none parses."""
    text = F.trim(column.cast("string"))
    return F.coalesce(*[F.try_to_timestamp(text, F.lit(f)) for f in formats])


# Spark datetime patterns of resolution.config.DEFAULT_DATE_FORMATS -> strptime formats.
_PATTERN_PARTS = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))
_FIELD_WIDTHS = {"%Y": r"\d{4}", "%m": r"\d{2}", "%d": r"\d{2}", "%H": r"\d{2}", "%M": r"\d{2}",
                 "%S": r"\d{2}", "%f": r"\d{1,6}"}


def _strptime_formats(pattern: str) -> list[str]:
    """The strptime formats a Spark pattern accepts (its ``[...]`` parts optional)."""
    pattern = pattern.replace("'T'", "T")
    optional = re.findall(r"\[([^\]]*)\]", pattern)
    base = re.sub(r"\[[^\]]*\]", "", pattern)
    variants = [base]
    if optional:  # with the fraction, without; the zone part is not offered online
        variants.append(base + "".join(".%f" for part in optional if part == ".SSSSSS"))
    out = []
    for variant in variants:
        for spark, python in _PATTERN_PARTS:
            variant = variant.replace(spark, python)
        if re.search(r"[A-Za-z]", re.sub(r"%[A-Za-z]", "", variant).replace("T", "")):
            continue  # a pattern letter this port does not know: not offered online
        out.append(variant)
    return out


def _widths_match(text: str, fmt: str) -> bool:
    regex = re.escape(fmt)
    for code, width in _FIELD_WIDTHS.items():
        regex = regex.replace(re.escape(code), width)
    return re.fullmatch(regex, text) is not None


def parse_phone(raw: str | None, default_region: str, validation: str = "possible") -> tuple[str | None, bool]:
    """One phone number in E.164 with ``phonenumbers``, and whether the numbering plan knows it.

    None when empty, unparseable or impossible (a wrong length for its region, or a local
    number without its area code). A possible number the plan does not know (555-123-4567, a
    range opened after the library's data, a test range) is kept with ``verified`` False under
    ``validation="possible"`` (real systems hold many such numbers, and they still identify a
    person); ``"valid"`` drops it. Spark has no phone parser: the batch runs this very function
    in a pandas UDF (:func:`phone_to_e164_udf`), so it is its own Python rendering.
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


def phone_to_e164_udf(default_region: str, validation: str = "possible"):
    """A vectorised (pandas) UDF applying :func:`parse_phone`: a struct of the E.164 value and
    ``verified``; the pandas UDF batches rows through Arrow."""

    @F.pandas_udf(PHONE_STRUCT)
    def to_e164(phones: pd.Series) -> pd.DataFrame:
        parsed = [parse_phone(raw, default_region, validation) if isinstance(raw, str) else (None, False)
                  for raw in phones]
        return pd.DataFrame(parsed, columns=["value", "verified"]).astype({"value": object, "verified": bool})

    return to_e164


@dataclass(frozen=True)
class KindRule:
    """How one attribute kind is standardized, in Spark and in Python. A phone's renderings
    give the pair (E.164 value, verified): a struct column in Spark, a tuple in Python."""

    kind: str
    column: Callable[[Column], Column]
    value: Callable[[str], Any]


def kind_rules(
    config: Config,
    *,
    date_column: Callable[[Column], Column] | None = None,
    date_formats: Sequence[str] = DEFAULT_DATE_FORMATS,
) -> dict[str, KindRule]:
    """Every kind's rule under ``config``'s phone settings. Dates parse with ``date_formats``;
    the batch passes ``date_column`` to parse each source's dates with its own formats."""
    region, validation, formats = config.phone_region, config.phone_validation, list(date_formats)

    def phone_column(column: Column) -> Column:  # the UDF is made on use: the service has no Spark
        return phone_to_e164_udf(region, validation)(column.cast("string"))

    rules = [
        KindRule("email", standardize_email, standardize_email_value),
        KindRule("phone", phone_column, lambda v: parse_phone(v, region, validation)),
        KindRule("name", fold_name, fold_name_value),
        KindRule("date", date_column or (lambda c: parse_date(c, formats)), lambda v: parse_date_value(v, formats)),
        KindRule("address", standardize_address, standardize_address_value),
        KindRule("postcode", standardize_postcode, standardize_postcode_value),
        KindRule("text", standardize_text, standardize_text_value),
        KindRule("id", standardize_id, standardize_id_value),
    ]
    return {rule.kind: rule for rule in rules}


def kind_rule(rules: Mapping[str, KindRule], kind: str) -> KindRule:
    """The rule of ``kind``; a kind without one of its own is read as an id."""
    return rules.get(kind, rules["id"])


# ---- exclusions and the reasons values are nulled ----------------------------------------


def exclusion_patterns(rules: Sequence[IdentifierRule]) -> dict[str, list[str]]:
    """Per attribute, the ``exclude`` patterns of every identifier rule on it."""
    patterns: dict[str, list[str]] = {}
    for rule in rules:
        patterns.setdefault(rule.attribute, []).extend(rule.exclude)
    return patterns


def _matches_any(column: Column, patterns: Iterable[str]) -> Column:
    condition = F.lit(False)
    for pattern in patterns:
        condition = condition | column.like(pattern.lower())
    return condition


def _like(value: str, pattern: str) -> bool:
    """SQL ``LIKE`` (``%`` any run, ``_`` one character), as Spark's ``Column.like``."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def matches_any(value: str | None, patterns: Iterable[str]) -> bool:
    """True when ``value`` is like one of the (lower-cased) SQL ``LIKE`` patterns."""
    return value is not None and any(_like(value, pattern.lower()) for pattern in patterns)


def excluded_column(value: Column, raw: Column, kind: str, patterns: Sequence[str]) -> Column:
    """True when the standardized value matches an exclusion pattern, or, for a phone, when the
    raw value's digits do (``000-000-0000`` has no E.164 form to match)."""
    excluded = _matches_any(value, patterns)
    if kind == "phone" and patterns:
        excluded = excluded | _matches_any(F.regexp_replace(raw, r"[^0-9]", ""), patterns)
    return F.coalesce(excluded, F.lit(False))


def is_excluded(value: Any, raw: str | None, kind: str, patterns: Sequence[str]) -> bool:
    excluded = matches_any(value if isinstance(value, str) else None, patterns)
    if kind == "phone" and patterns and raw is not None:
        excluded = excluded or matches_any(re.sub(r"[^0-9]", "", raw), patterns)
    return excluded


def value_issue_column(name: str, raw: Column, value: Column, excluded: Column, verified: Column | None) -> Column:
    """Why ``name``'s value was nulled (``name:excluded``, ``name:invalid``) or is doubtful
    (``name:unverified``: a phone kept though the numbering plan does not know it); else null."""
    present = raw.isNotNull() & (F.trim(raw) != "")
    issue = F.when(present & excluded, F.lit(f"{name}:excluded")).when(
        present & value.isNull(), F.lit(f"{name}:invalid")
    )
    if verified is not None:
        issue = issue.when(value.isNotNull() & ~verified, F.lit(f"{name}:unverified"))
    return issue


def value_issue(name: str, raw: str | None, value: Any, excluded: bool, verified: bool | None) -> str | None:
    present = raw is not None and _trim(raw) != ""
    if present and excluded:
        return f"{name}:excluded"
    if present and value is None:
        return f"{name}:invalid"
    if verified is not None and value is not None and not verified:
        return f"{name}:unverified"
    return None


# ---- oversized identifier groups ----------------------------------------------------------


def oversized_column(size: Column, limit: Column) -> Column:
    """A value more records share than the rule's ``max_group_size`` is junk, not evidence."""
    return size > limit


def is_oversized(size: int, rule: IdentifierRule) -> bool:
    return size > rule.max_group_size


# ---- edge classification -------------------------------------------------------------------


def edge_status_column(
    rule: Column, probability: Column, accepted: Column, *, link_threshold: float, review_threshold: float
) -> Column:
    """``link``, ``review`` or null (dropped) for a pair: an identifier rule's pair and an
    accepted pair are links whatever the model says; a model pair by its probability."""
    return (
        F.when((rule != S.MODEL_RULE) | accepted, F.lit(S.LINK))
        .when(probability >= link_threshold, F.lit(S.LINK))
        .when(probability >= review_threshold, F.lit(S.REVIEW))
    )


def edge_status(
    rule: str, probability: float | None, accepted: bool, *, link_threshold: float, review_threshold: float
) -> str | None:
    if rule != S.MODEL_RULE or accepted:
        return S.LINK
    if probability is not None and probability >= link_threshold:
        return S.LINK
    if probability is not None and probability >= review_threshold:
        return S.REVIEW
    return None


def edge_rule_column(rule: Column, probability: Column, accepted: Column, *, link_threshold: float) -> Column:
    """The rule a link is recorded under: ``accepted`` for a model pair below the link
    threshold that is a link only because a reviewer accepted it, else the rule that found it."""
    below = (rule == S.MODEL_RULE) & (probability < link_threshold)
    return F.when(accepted & below, F.lit(S.ACCEPTED_RULE)).otherwise(rule)


def edge_rule(rule: str, probability: float | None, accepted: bool, *, link_threshold: float) -> str:
    below = rule == S.MODEL_RULE and probability is not None and probability < link_threshold
    return S.ACCEPTED_RULE if accepted and below else rule


# ---- the id policy's anchor order ----------------------------------------------------------


def anchor_order(prefix: str = "") -> list[Column]:
    """Oldest source timestamp first (none: last), then source priority, then record key."""
    return [
        F.col(prefix + S.SOURCE_TIMESTAMP).asc_nulls_last(),
        F.col(prefix + S.SOURCE_PRIORITY).asc(),
        F.col(prefix + S.RECORD_KEY).asc(),
    ]


_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def _utc(moment: Any) -> datetime:
    """Timestamps compare in UTC; a record without one is the youngest (nulls last)."""
    if isinstance(moment, datetime):
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    if isinstance(moment, date):
        return datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc)
    return _LATEST


def anchor_key(record: Mapping[str, Any]) -> tuple:
    """A record's place in :func:`anchor_order`, as a sort key."""
    return (_utc(record[S.SOURCE_TIMESTAMP]), record[S.SOURCE_PRIORITY], record[S.RECORD_KEY])


# ---- cannot-link ---------------------------------------------------------------------------

DIFFERENT = "different"  # cut_by of a link whose clusters hold two values of an attribute
UNIQUE_SOURCE = "unique_source"  # ... two records of a duplicate-free source


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _within_one_edit(a: str, b: str) -> bool:
    """Levenshtein distance at most 1 (Spark's ``levenshtein``, on characters)."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    start = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    return a[start + (len(a) == len(b)):] == b[start + 1:]


def _transposed(a: str, b: str) -> bool:
    """Equal but for two adjacent characters swapped."""
    if len(a) != len(b) or a == b:
        return False
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return len(differ) == 2 and differ[1] == differ[0] + 1 and a[differ[0]] == b[differ[1]] and a[differ[1]] == b[differ[0]]


def _day_month_swapped(a: str, b: str) -> bool:
    """Two ISO dates of one year whose day and month are swapped (2001-03-04, 2001-04-03)."""
    return bool(_ISO_DATE.match(a) and _ISO_DATE.match(b)) and a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]


_TOLERATED = {"one_edit": _within_one_edit, "transposition": _transposed, "day_month_swap": _day_month_swapped}


def values_differ(a: str, b: str, tolerate: Sequence[str] = ()) -> bool:
    """Two values of a cannot-link attribute tell two people apart: they differ, and by no
    difference ``tolerate`` names (a typo)."""
    return a != b and not any(_TOLERATED[kind](a, b) for kind in tolerate)


def _values_differ_column(a: Column, b: Column, tolerate: Sequence[str]) -> Column:
    """:func:`values_differ` in Spark."""
    differ = a != b
    for kind in tolerate:
        if kind == "one_edit":
            same = F.levenshtein(a, b) <= 1
        elif kind == "transposition":
            same = _transposed_column(a, b)
        else:  # day_month_swap
            iso = r"^\d{4}-\d{2}-\d{2}$"
            same = (a.rlike(iso) & b.rlike(iso) & (F.substring(a, 1, 4) == F.substring(b, 1, 4))
                    & (F.substring(a, 6, 2) == F.substring(b, 9, 2)) & (F.substring(a, 9, 2) == F.substring(b, 6, 2)))
        differ = differ & ~same
    return differ


def _transposed_column(a: Column, b: Column) -> Column:
    """:func:`_transposed` in Spark: ``b`` is ``a`` with characters ``i`` and ``i + 1`` swapped,
    for some ``i``."""
    n = F.length(a)

    def swapped(i: Column) -> Column:
        return F.concat(F.substring(a, F.lit(1), i - 1), F.substring(a, i + 1, F.lit(1)),
                        F.substring(a, i, F.lit(1)), F.substring(a, i + 2, n))

    return (n == F.length(b)) & (n >= 2) & (a != b) & F.exists(
        F.sequence(F.lit(1), F.greatest(n - 1, F.lit(1))), lambda i: swapped(i) == b)


def any_two_differ(values: Column, tolerate: Sequence[str]) -> Column:
    """True when two values of the array ``values`` differ beyond what ``tolerate`` allows."""
    return F.exists(values, lambda a: F.exists(values, lambda b: _values_differ_column(a, b, tolerate)))


def cannot_link_violated(attributes: Sequence[str], unique_sources: Iterable[str],
                         tolerate: Mapping[str, Sequence[str]] | None = None) -> Column | None:
    """Spark aggregate over one cluster's records: true when it holds two values of a
    constrained attribute that differ (beyond what ``tolerate`` allows it) or two records of a
    duplicate-free source (None: no constraint)."""
    tolerate = tolerate or {}
    checks = []
    for name in attributes:
        if not tolerate.get(name):
            checks.append(F.countDistinct(F.col(name).cast("string")) > 1)
            continue
        checks.append(any_two_differ(F.collect_set(F.col(name).cast("string")), tolerate[name]))
    checks += [F.sum((F.col(S.SOURCE) == name).cast("int")) > 1 for name in unique_sources]
    if not checks:
        return None
    violated = checks[0]
    for check in checks[1:]:
        violated = violated | check
    return violated


def cannot_link_conflict(
    mine: Mapping[str, Collection[str]],
    theirs: Mapping[str, Collection[str]],
    mine_sources: Mapping[str, str],
    theirs_sources: Mapping[str, str],
    *,
    attributes: Sequence[str],
    tolerate: Mapping[str, Sequence[str]] | None = None,
) -> tuple[str, str] | None:
    """The first constraint joining two groups would break, as (constraint, detail), or None.

    ``mine``/``theirs``: each group's values of the constrained ``attributes`` (absent: none;
    several only when ``tolerate`` lets them stand together); ``*_sources``: the record key
    each group holds of every duplicate-free source. Two groups that each keep the constraints
    conflict exactly when their union breaks :func:`cannot_link_violated`.
    """
    tolerate = tolerate or {}
    for name in attributes:
        kinds = tolerate.get(name, ())
        differing = sorted(
            tuple(sorted((left, right)))
            for left in mine.get(name, ()) for right in theirs.get(name, ())
            if values_differ(left, right, kinds)
        )
        if differing:
            low, high = differing[0]
            return f"{DIFFERENT}:{name}", f"{name} {low} <> {high}"
    for source in sorted(mine_sources.keys() & theirs_sources.keys()):
        low, high = sorted((mine_sources[source], theirs_sources[source]))
        return f"{UNIQUE_SOURCE}:{source}", f"{source} is duplicate-free: {low} and {high}"
    return None
