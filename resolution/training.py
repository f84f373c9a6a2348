"""``idr train``: estimate the Splink model from the configured sources and save it."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from pyspark.sql import SparkSession

from resolution.config import Config
from resolution.frames import union_all
from resolution.matching import mask_oversized_identifiers
from resolution.model_report import TrainingReport
from resolution.scoring import load_model, propose_link_threshold, train_model
from resolution.sources import ingest_sources
from resolution.standardize import standardize_records
from resolution.store import open_store
from resolution.store.inbox import ensure_inbox
from resolution.threshold import ThresholdProposal, save_proposal


class TrainedModel(NamedTuple):
    """Where the model was saved, and what training learnt (``report.lines()`` to print it)."""

    path: Path
    report: TrainingReport


def _matchable(spark: SparkSession, config: Config):
    """The standardized live records of every source, junk identifiers masked (cached)."""
    store = open_store(spark, config)
    ensure_inbox(config)  # the service's inbox is a source before the service ever wrote to it
    ingested = ingest_sources(spark, config, store=store)
    records = standardize_records(union_all([source.records for source in ingested]), config=config)
    return mask_oversized_identifiers(records, rules=config.identifiers).cache()


def train(spark: SparkSession, config: Config, *, output_path: str | None = None) -> TrainedModel:
    """Train on the standardized live records of every source (junk identifiers masked)."""
    matchable = _matchable(spark, config)
    path = Path(output_path or config.matching.model)
    report = train_model(spark, matchable, config=config, output_path=path)
    matchable.unpersist()
    return TrainedModel(path, report)


def propose(spark: SparkSession, config: Config) -> ThresholdProposal | None:
    """The link threshold the config's trained model proposes on the current records, saved
    beside the model (as ``idr train`` does, without training again)."""
    matchable = _matchable(spark, config)
    proposal = propose_link_threshold(spark, matchable, model=load_model(config.matching.model, config), config=config)
    matchable.unpersist()
    save_proposal(proposal, config.matching.model)
    return proposal
