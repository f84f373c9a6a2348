"""Benchmark sources as Delta tables with the change data feed on (shared by the benchmarks)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake


def write_delta_source(path: Path, frame: pd.DataFrame, *, key: str | None = None) -> None:
    """Make the Delta table at ``path`` hold ``frame``: created with its change data feed on,
    or else one MERGE on ``key`` (default: the first column) that touches only rows that
    differ, so the change data feed holds just the changes, as a source system's would."""
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    if not DeltaTable.is_deltatable(str(path)):
        write_deltalake(str(path), arrow, configuration={"delta.enableChangeDataFeed": "true"})
        return
    key = key or arrow.column_names[0]
    differs = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in arrow.column_names if c != key)
    (
        DeltaTable(str(path)).merge(arrow, f"t.{key} = s.{key}", source_alias="s", target_alias="t")
        .when_matched_update_all(predicate=differs)
        .when_not_matched_insert_all()
        .when_not_matched_by_source_delete()
        .execute()
    )
