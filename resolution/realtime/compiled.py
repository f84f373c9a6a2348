"""The model's comparison levels compiled from their DuckDB SQL into Python functions.

DuckDB runs the model's SQL over a few candidates in about 5 ms, whatever their number: the
statement is planned each time. A request with a handful of candidates is answered faster by
evaluating each level's condition in Python. The conditions are Splink's own SQL (parsed with
sqlglot, which Splink uses), so nothing is written twice; the functions are DuckDB's, on the
same bytes (DuckDB's ``levenshtein`` and ``jaro_winkler_similarity`` work on UTF-8 bytes).
SQL's three-valued logic is kept: a condition that is NULL does not select its level.

A condition using anything not listed here raises :class:`UnsupportedSQLError` when the model is
compiled, and the scorer keeps DuckDB for that model. ``tests/test_realtime_scoring.py``
checks that both score every pair alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

import sqlglot
from rapidfuzz.distance import JaroWinkler, Levenshtein
from sqlglot import expressions as exp

Row = dict[str, Any]
Value = Callable[[Row, Row], Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class UnsupportedSQLError(ValueError):
    """A level's SQL uses an expression this compiler does not evaluate."""


def _jaro_winkler(left: str, right: str) -> float:
    if not left and not right:  # DuckDB: 0.0 for two empty strings
        return 0.0
    return JaroWinkler.similarity(left.encode(), right.encode())


def _levenshtein(left: str, right: str) -> int:
    return Levenshtein.distance(left.encode(), right.encode())


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _epoch(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return (moment - _EPOCH).total_seconds()
    if isinstance(value, date):
        return float((value - date(1970, 1, 1)).days * 86400)
    raise TypeError(f"EPOCH of {type(value).__name__}")


def _strict(function: Callable[..., Any], *arguments: Value) -> Value:
    """``function`` of the arguments' values; NULL when any of them is NULL (SQL semantics)."""
    def evaluate(left: Row, right: Row):
        values = [argument(left, right) for argument in arguments]
        if any(value is None for value in values):
            return None
        return function(*values)

    return evaluate


_COMPARE = {
    exp.EQ: lambda a, b: a == b,
    exp.NEQ: lambda a, b: a != b,
    exp.GT: lambda a, b: a > b,
    exp.GTE: lambda a, b: a >= b,
    exp.LT: lambda a, b: a < b,
    exp.LTE: lambda a, b: a <= b,
}


def compile_condition(sql: str) -> Callable[[Row, Row], bool]:
    """A level's condition as ``f(left, right) -> bool`` (True only when SQL says TRUE)."""
    node = sqlglot.parse_one(sql, read="duckdb")
    value = _compile(node)
    return lambda left, right: value(left, right) is True


def _column(name: str) -> Value:
    if name.endswith("_l"):
        attribute = name[:-2]
        return lambda left, right: left.get(attribute)
    if name.endswith("_r"):
        attribute = name[:-2]
        return lambda left, right: right.get(attribute)
    raise UnsupportedSQLError(f"column {name!r} is neither _l nor _r")


def _compile(node: exp.Expression) -> Value:  # noqa: C901 - one branch per SQL construct
    if isinstance(node, exp.Paren):
        return _compile(node.this)
    if isinstance(node, exp.Column):
        return _column(node.name)
    if isinstance(node, exp.Null):
        return lambda left, right: None
    if isinstance(node, exp.Boolean):
        constant = node.this
        return lambda left, right: constant
    if isinstance(node, exp.Literal):
        constant = node.this if node.is_string else (float(node.this) if "." in node.this else int(node.this))
        return lambda left, right: constant
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        inner = _compile(node.this)
        return lambda left, right: inner(left, right) is None
    if isinstance(node, exp.Not):
        inner = _compile(node.this)
        return lambda left, right: None if (v := inner(left, right)) is None else not v
    if isinstance(node, exp.And | exp.Or):
        first, second = _compile(node.this), _compile(node.expression)
        is_and = isinstance(node, exp.And)

        def logic(left: Row, right: Row):
            a, b = first(left, right), second(left, right)
            if is_and:
                return False if a is False or b is False else (None if a is None or b is None else True)
            return True if a is True or b is True else (None if a is None or b is None else False)

        return logic
    if type(node) in _COMPARE:
        return _strict(_COMPARE[type(node)], _compile(node.this), _compile(node.expression))
    if isinstance(node, exp.Sub):
        return _strict(lambda a, b: a - b, _compile(node.this), _compile(node.expression))
    if isinstance(node, exp.Abs):
        return _strict(abs, _compile(node.this))
    if isinstance(node, exp.JarowinklerSimilarity):
        return _strict(_jaro_winkler, _compile(node.this), _compile(node.expression))
    if isinstance(node, exp.Levenshtein) and not any(node.args.get(k) for k in ("ins_cost", "del_cost", "sub_cost", "max_dist")):
        return _strict(_levenshtein, _compile(node.this), _compile(node.expression))
    if isinstance(node, exp.Cast) and node.to.this in (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR):
        return _strict(_text, _compile(node.this))
    if isinstance(node, exp.TimeToUnix):
        return _strict(_epoch, _compile(node.this))
    if isinstance(node, exp.Nullif):
        first, second = _compile(node.this), _compile(node.expression)

        def nullif(left: Row, right: Row):
            a, b = first(left, right), second(left, right)
            return None if a is not None and b is not None and a == b else a

        return nullif
    if isinstance(node, exp.RegexpExtract):
        pattern = re.compile(node.expression.this)
        group = int(node.args["group"].this) if node.args.get("group") is not None else 0

        def extract(text: str) -> str:
            found = pattern.search(text)
            return found.group(group) if found else ""

        return _strict(extract, _compile(node.this))
    if isinstance(node, exp.ArraySize):
        return _strict(len, _compile(node.this))
    if isinstance(node, exp.Anonymous) and node.name.lower() in ("list_intersect", "array_intersect"):
        first, second = (_compile(e) for e in node.expressions)
        return _strict(lambda a, b: [x for x in dict.fromkeys(a) if x in set(b)], first, second)
    raise UnsupportedSQLError(f"{type(node).__name__} in level SQL: {node.sql('duckdb')}")


class CompiledModel:
    """A trained model's match weight of a pair, level by level, in Python."""

    def __init__(self, settings: dict):
        from splink.internals.settings_creator import SettingsCreator

        settings_obj = SettingsCreator.from_path_or_dict(settings).get_settings("duckdb")
        model = settings_obj.core_model_settings
        prior = model.probability_two_random_records_match
        self.prior_weight = math.log2(prior / (1 - prior))
        self.comparisons = []
        for comparison in model.comparisons:
            levels = []
            for level in comparison.comparison_levels:
                weight = 0.0 if level.is_null_level else math.log2(level._bayes_factor)
                condition = None if level._is_else_level else compile_condition(level.sql_condition)
                levels.append((condition, weight))
            inputs = sorted({c.unquote().name for c in comparison._input_columns_used_by_case_statement})
            self.comparisons.append((inputs, levels))

    def match_weight(self, left: Row, right: Row, cache: dict | None = None) -> float:
        """``cache`` (one per left record) reuses a comparison's level for equal right values."""
        total = self.prior_weight
        for index, (inputs, levels) in enumerate(self.comparisons):
            key = (index, *(_hashable(right.get(name)) for name in inputs))
            weight = cache.get(key) if cache is not None else None
            if weight is None:
                weight = next((w for condition, w in levels if condition is None or condition(left, right)), 0.0)
                if cache is not None:
                    cache[key] = weight
            total += weight
        return total


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def probability(weight: float) -> float:
    """Splink's match probability of a match weight."""
    odds = 2.0 ** weight
    return odds / (1.0 + odds)
