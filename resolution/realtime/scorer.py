"""Score one record against its candidates with the trained Splink model, on DuckDB.

The model trained on Spark is rebuilt for DuckDB's SQL (:func:`resolution.scoring.model_for_dialect`:
the config's comparisons, the trained m and u copied level by level). Splink writes the
comparison and prediction SQL once; each request then runs that one statement over two small
Arrow tables (the record, its candidates) on a connection of its own thread.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from resolution.config import Config
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


class OnlineScorer:
    """The batch's model, scoring on DuckDB; safe to call from many threads."""

    def __init__(self, config: Config, model_path: str | Path | None = None):
        model = load_model(model_path or config.matching.model, config)
        self.settings = model_for_dialect(model, config, "duckdb")
        self.sql = scoring_sql(self.settings)
        self._database = duckdb.connect()
        self._local = threading.local()

    def _connection(self) -> duckdb.DuckDBPyConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._database.cursor()
        return connection

    def score(self, record: pa.Table, candidates: pa.Table) -> dict[str, tuple[float, float]]:
        """``record_key`` of each candidate -> (match_weight, match_probability)."""
        if candidates.num_rows == 0:
            return {}
        connection = self._connection()
        connection.register(LEFT, record)
        connection.register(RIGHT, candidates)
        try:
            rows = connection.execute(self.sql).fetchall()
        finally:
            connection.unregister(LEFT)
            connection.unregister(RIGHT)
        return {key: (weight, probability) for key, weight, probability in rows}
