"""``idr train``: estimate the Splink model from the configured sources and save it."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from pyspark.sql import SparkSession

from resolution.config import Config
from resolution.frames import union_all
from resolution.matching import mask_oversized_identifiers
from resolution.model_report import TrainingReport
from resolution.scoring import train_model
from resolution.sources import ingest_sources
from resolution.standardize import standardize_records
from resolution.store import open_store
from resolution.store.inbox import ensure_inbox


class TrainedModel(NamedTuple):
    """Where the model was saved, and what training learnt (``report.lines()`` to print it)."""

    path: Path
    report: TrainingReport


def train(spark: SparkSession, config: Config, *, output_path: str | None = None) -> TrainedModel:
    """Train on the standardized live records of every source (junk identifiers masked)."""
    store = open_store(spark, config)
    ensure_inbox(config)  # the service's inbox is a source before the service ever wrote to it
    ingested = ingest_sources(spark, config, store=store)
    records = standardize_records(union_all([source.records for source in ingested]), config=config)
    matchable = mask_oversized_identifiers(records, rules=config.identifiers).cache()
    path = Path(output_path or config.matching.model)
    report = train_model(spark, matchable, config=config, output_path=path)
    matchable.unpersist()
    return TrainedModel(path, report)
