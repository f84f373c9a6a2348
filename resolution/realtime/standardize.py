"""The batch standardization (:mod:`resolution.standardize`, Spark SQL) in plain Python.

The online path must turn a raw value into exactly what the batch would store, or a record
answered online would land elsewhere after the next run. ``tests/test_realtime_standardize.py``
checks this function against the Spark transforms value by value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from functools import cache

from resolution.config import Config
from resolution.standardize import EMAIL_PATTERN, GMAIL_DOMAINS, _accent_table, parse_phone

_EMAIL = re.compile(EMAIL_PATTERN)
_SPACES = re.compile(r"\s+")


def _trim(text: str) -> str:
    """Spark's ``trim``: spaces only (not tabs or newlines)."""
    return text.strip(" ")


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


def fold_name(value: str) -> str | None:
    folded = _trim(value.lower()).translate(_accent_translation())
    folded = re.sub(r"['`’.]", "", folded)
    folded = re.sub(r"[^a-z\- ]", " ", folded)
    folded = _SPACES.sub(" ", folded).strip(" ")
    return folded or None


def standardize_email(value: str) -> str | None:
    email = _trim(value.lower())
    mailbox = re.sub(r"\+.*$", "", email.split("@", 1)[0], flags=re.DOTALL)
    domain = email.rsplit("@", 1)[-1]
    if domain in GMAIL_DOMAINS:
        mailbox, domain = mailbox.replace(".", ""), "gmail.com"
    normalized = f"{mailbox}@{domain}"
    if _EMAIL.search(email) and _EMAIL.search(normalized):
        return normalized
    return None


def standardize_text(value: str) -> str | None:
    text = _trim(_SPACES.sub(" ", value))
    return text or None


def standardize_address(value: str) -> str | None:
    return standardize_text(re.sub(r"[^a-z0-9 ]", " ", value.lower()))


def standardize_postcode(value: str) -> str | None:
    postcode = re.sub(r"[^A-Z0-9]", "", value.upper())
    return postcode or None


def standardize_id(value: str) -> str | None:
    return _trim(value.upper()) or None


# Spark datetime patterns of resolution.config.DEFAULT_DATE_FORMATS -> strptime formats.
_PATTERN_PARTS = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))


def _strptime_formats(pattern: str) -> list[str]:
    """The strptime formats a Spark pattern accepts (its ``[...]`` parts optional)."""
    pattern = pattern.replace("'T'", "T")
    optional = re.findall(r"\[([^\]]*)\]", pattern)
    base = re.sub(r"\[[^\]]*\]", "", pattern)
    variants = [base]
    if optional:  # with the fraction, without; the zone part is not offered online
        with_parts = base
        for part in optional:
            if part == ".SSSSSS":
                with_parts += ".%f"
        variants.append(with_parts)
    out = []
    for variant in variants:
        for spark, python in _PATTERN_PARTS:
            variant = variant.replace(spark, python)
        if re.search(r"[A-Za-z]", re.sub(r"%[A-Za-z]", "", variant).replace("T", "")):
            continue  # a pattern letter this port does not know: not offered online
        out.append(variant)
    return out


def parse_date(value: str, formats: Sequence[str]) -> date | None:
    """The first format that parses wins, as in the batch (``to_date(try_to_timestamp)``).

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


def _widths_match(text: str, fmt: str) -> bool:
    widths = {"%Y": r"\d{4}", "%m": r"\d{2}", "%d": r"\d{2}", "%H": r"\d{2}", "%M": r"\d{2}", "%S": r"\d{2}",
              "%f": r"\d{1,6}"}
    regex = re.escape(fmt)
    for code, width in widths.items():
        regex = regex.replace(re.escape(code), width)
    return re.fullmatch(regex, text) is not None


def _like(value: str, pattern: str) -> bool:
    """SQL ``LIKE`` (``%`` any run, ``_`` one character), as Spark's ``Column.like``."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _matches_any(value: str | None, patterns: Iterable[str]) -> bool:
    return value is not None and any(_like(value, pattern.lower()) for pattern in patterns)


class Standardizer:
    """Standardize one record's raw attribute values as the batch does for ``source``."""

    def __init__(self, config: Config, *, date_formats: Sequence[str]):
        self.kinds = config.attribute_kinds
        self.region = config.phone_region
        self.phone_validation = config.phone_validation
        self.date_formats = list(date_formats)
        self.exclusions: dict[str, list[str]] = {}
        for rule in config.identifiers:
            self.exclusions.setdefault(rule.attribute, []).extend(rule.exclude)

    def value(self, attribute: str, raw: str | None):
        """The standardized value of one attribute (before exclusions); None when invalid."""
        if raw is None:
            return None
        kind = self.kinds.get(attribute, "id")
        if kind == "email":
            return standardize_email(raw)
        if kind == "phone":
            return parse_phone(raw, self.region, self.phone_validation)[0]
        if kind == "name":
            return fold_name(raw)
        if kind == "date":
            return parse_date(raw, self.date_formats)
        if kind == "address":
            return standardize_address(raw)
        if kind == "postcode":
            return standardize_postcode(raw)
        if kind == "text":
            return standardize_text(raw)
        return standardize_id(raw)

    def record(self, raw: dict[str, str | None]) -> tuple[dict[str, object], list[str]]:
        """Every attribute standardized, and the issues (``phone:invalid``, ``email:excluded``)."""
        values, issues = {}, []
        for attribute in self.kinds:
            text = raw.get(attribute)
            verified = True
            if self.kinds[attribute] == "phone" and text is not None:  # parsed once: value and check
                value, verified = parse_phone(text, self.region, self.phone_validation)
            else:
                value = self.value(attribute, text)
            patterns = self.exclusions.get(attribute, [])
            excluded = _matches_any(value if isinstance(value, str) else None, patterns)
            if self.kinds[attribute] == "phone" and patterns and text is not None:
                excluded = excluded or _matches_any(re.sub(r"[^0-9]", "", text), patterns)
            present = text is not None and _trim(text) != ""
            if present and excluded:
                issues.append(f"{attribute}:excluded")
            elif present and value is None:
                issues.append(f"{attribute}:invalid")
            elif value is not None and not verified:
                issues.append(f"{attribute}:unverified")  # kept, as the batch keeps it
            values[attribute] = None if excluded else value
        return values, issues
