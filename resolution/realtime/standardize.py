"""One record's raw values standardized as the batch would store them.

The rules themselves (each kind's standardization, exclusions, the reasons values are nulled)
are :mod:`resolution.rules`' Python renderings; this module only applies them to a record, in
the batch's order. ``tests/test_realtime_standardize.py`` checks records against the Spark
transforms value by value.
"""

from __future__ import annotations

from collections.abc import Sequence

from resolution.config import Config
from resolution.rules import exclusion_patterns, is_excluded, kind_rule, kind_rules, value_issue


class Standardizer:
    """Standardize one record's raw attribute values as the batch does for ``source``."""

    def __init__(self, config: Config, *, date_formats: Sequence[str]):
        self.kinds = config.attribute_kinds
        self.rules = kind_rules(config, date_formats=date_formats)
        self.exclusions = exclusion_patterns(config.identifiers)

    def value(self, attribute: str, raw: str | None):
        """The standardized value of one attribute (before exclusions); None when invalid."""
        if raw is None:
            return None
        kind = self.kinds.get(attribute, "id")
        value = kind_rule(self.rules, kind).value(raw)
        return value[0] if kind == "phone" else value

    def record(self, raw: dict[str, str | None]) -> tuple[dict[str, object], list[str]]:
        """Every attribute standardized, and the issues (``phone:invalid``, ``email:excluded``)."""
        values, issues = {}, []
        for attribute, kind in self.kinds.items():
            text = raw.get(attribute)
            verified = None
            if kind == "phone":  # parsed once: the value and whether the numbering plan knows it
                value, verified = (None, False) if text is None else kind_rule(self.rules, kind).value(text)
            else:
                value = self.value(attribute, text)
            excluded = is_excluded(value, text, kind, self.exclusions.get(attribute, []))
            issue = value_issue(attribute, text, value, excluded, verified)
            if issue is not None:
                issues.append(issue)
            values[attribute] = None if excluded else value
        return values, issues
