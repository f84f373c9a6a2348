"""Prepare output rows for a MERGE: stamp them with the run, keep only what changed.

A run compares what it computed with what the table holds and MERGEs only rows that are new,
changed or gone, so a re-run with no source change writes nothing (DESIGN.md id policy).
Run bookkeeping columns (``run_id``, ``updated_at``) are not part of the comparison: an
unchanged row keeps the run that last changed it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from resolution.schemas import REJECTED_AT, RUN_ID, UPDATED_AT

DELETE_FLAG = "_delete"
BOOKKEEPING = (RUN_ID, UPDATED_AT, REJECTED_AT)


def fingerprint(columns: Sequence[str]) -> Column:
    """A hash of the business columns of a row (maps and arrays included, via JSON)."""
    return F.sha2(F.to_json(F.struct(*[F.col(c) for c in columns])), 256)


def stamp_run(frame: DataFrame, *, schema: StructType, run_id: str, now: Column) -> DataFrame:
    """Add run_id / updated_at and select the columns of the table schema, in order and typed."""
    stamps = {RUN_ID: F.lit(run_id), UPDATED_AT: now, REJECTED_AT: now}
    columns = [
        (stamps[field.name] if field.name in stamps and field.name not in frame.columns else F.col(field.name))
        .cast(field.dataType)
        .alias(field.name)
        for field in schema.fields
    ]
    return frame.select(*columns)


def changed_rows(new: DataFrame, current: DataFrame, *, keys: Sequence[str]) -> DataFrame:
    """Rows to MERGE: new or changed rows of ``new``, plus keys only in ``current`` flagged deleted.

    Both frames have the table's columns. The output has them plus the boolean ``_delete``; a
    deleted row carries only its keys (a MERGE deletes by key). One full outer join on the
    keys compares a fingerprint of the business columns of both sides.
    """
    compare = [c for c in new.columns if c not in keys and c not in BOOKKEEPING]
    existing = current.select(*keys, fingerprint(compare).alias("__current_fp"))
    compared = new.withColumn("__new_fp", fingerprint(compare)).join(existing, list(keys), "full")
    is_delete = F.col("__new_fp").isNull()
    differs = F.col("__current_fp").isNull() | (F.col("__current_fp") != F.col("__new_fp"))
    return compared.filter(is_delete | differs).select(*new.columns, is_delete.alias(DELETE_FLAG))
