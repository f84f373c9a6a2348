"""``idr train``: estimate the Splink model from the configured sources and save it."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from resolution.config import Config
from resolution.matching import mask_oversized_identifiers
from resolution.pipeline import standardize_sources, store_for
from resolution.scoring import train_model
from resolution.session import detect_backends
from resolution.sources import ingest_sources


def train(spark: SparkSession, config: Config, *, output_path: str | None = None) -> Path:
    """Train on the standardized live records of every source (junk identifiers masked)."""
    store = store_for(spark, config, detect_backends(spark, prefer=config.storage.backend))
    ingested = ingest_sources(spark, config, store=store)
    records = standardize_sources([(source.name, source.records) for source in ingested], config=config)
    matchable = mask_oversized_identifiers(records, rules=config.identifiers).cache()
    path = Path(output_path or config.matching.model)
    train_model(spark, matchable, config=config, output_path=path)
    matchable.unpersist()
    return path
