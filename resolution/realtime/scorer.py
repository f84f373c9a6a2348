"""Score one record against its candidates with the trained Splink model, on DuckDB.

The model trained on Spark is rebuilt for DuckDB's SQL (:func:`resolution.scoring.model_for_dialect`:
the config's comparisons, the trained m and u copied level by level). Splink writes the
comparison and prediction SQL once. A request with many candidates runs that one statement over
two small Arrow tables (the record, its candidates) on a connection of its own thread; one with
a few is scored by the same levels compiled to Python (:mod:`.compiled`), which skips DuckDB's
fixed cost of planning the statement.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from resolution.config import Config
from resolution.realtime.compiled import CompiledModel, UnsupportedSQLError, probability
from resolution.schemas import RECORD_KEY
from resolution.scoring import load_model, model_for_dialect

logger = logging.getLogger(__name__)

LEFT, RIGHT = "__idr_record", "__idr_candidates"


def scoring_sql(settings: dict) -> str:
    """One DuckDB statement scoring every row of ``__idr_record`` against every row of
    ``__idr_candidates``: ``record_key_r``, ``match_weight``, ``match_probability``."""
    from splink.internals.predict import predict_from_comparison_vectors_sqls_using_settings
    from splink.internals.settings_creator import SettingsCreator

    settings_obj = SettingsCreator.from_path_or_dict(settings).get_settings("duckdb")
    blocked = ", ".join(settings_obj._columns_to_select_for_blocking)
    vectors = ", ".join(settings_obj._columns_to_select_for_comparison_vector_values)
    steps = [
        ("__splink__blocked", f"select {blocked}, 0 as match_key from {LEFT} as l cross join {RIGHT} as r"),
        ("__splink__df_comparison_vectors", f"select {vectors} from __splink__blocked"),
    ]
    steps += [(step["output_table_name"], step["sql"]) for step in predict_from_comparison_vectors_sqls_using_settings(settings_obj)]
    ctes = ",\n".join(f"{name} as ({sql})" for name, sql in steps)
    return f"with {ctes}\nselect {RECORD_KEY}_r, match_weight, match_probability from {steps[-1][0]}"


COMPILED_MAX_CANDIDATES = 200  # above this DuckDB's vectorized run beats Python's loop


class OnlineScorer:
    """The batch's model, scoring in Python (few candidates) or on DuckDB (many); thread-safe."""

    def __init__(self, config: Config, model_path: str | Path | None = None):
        model = load_model(model_path or config.matching.model, config)
        self.settings = model_for_dialect(model, config, "duckdb")
        self.sql = scoring_sql(self.settings)
        try:
            self.compiled: CompiledModel | None = CompiledModel(self.settings)
        except UnsupportedSQLError as reason:
            logger.warning("model scored on DuckDB only: %s", reason)
            self.compiled = None
        self._database = duckdb.connect()
        self._local = threading.local()

    def _connection(self) -> duckdb.DuckDBPyConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._database.cursor()
        return connection

    def score(self, record: dict, candidates: list[dict], schema: pa.Schema) -> dict[str, tuple[float, float]]:
        """``record_key`` of each candidate -> (match_weight, match_probability).

        ``schema``: the model's input columns (``record_key`` first) and their types.
        """
        if not candidates:
            return {}
        if self.compiled is not None and len(candidates) <= COMPILED_MAX_CANDIDATES:
            cache: dict = {}
            scores = {}
            for candidate in candidates:
                weight = self.compiled.match_weight(record, candidate, cache)
                scores[candidate[RECORD_KEY]] = (weight, probability(weight))
            return scores
        return self.score_on_duckdb(_table([record], schema), _table(candidates, schema))

    def score_on_duckdb(self, record: pa.Table, candidates: pa.Table) -> dict[str, tuple[float, float]]:
        connection = self._connection()
        connection.register(LEFT, record)
        connection.register(RIGHT, candidates)
        try:
            rows = connection.execute(self.sql).fetchall()
        finally:
            connection.unregister(LEFT)
            connection.unregister(RIGHT)
        return {key: (weight, probability) for key, weight, probability in rows}


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)
