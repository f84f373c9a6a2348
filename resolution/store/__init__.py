"""Delta tables behind one interface, written by delta-spark (JVM) or delta-rs (``deltalake``).

Backends are imported only when asked for, so this package works where delta-spark or Delta's
JVM package is missing.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from pyspark.sql import SparkSession

from resolution.config import Config
from resolution.packages import DELTA, FETCH_COMMAND, spark_submit_packages
from resolution.session import DELTA_JVM_CLASS, Backends, detect_backends, jvm_class_available
from resolution.store.base import (
    CHANGE_COLUMNS,
    CHANGE_DATA_FEED_PROPERTY,
    CHANGE_TYPE,
    COMMIT_TIMESTAMP,
    COMMIT_VERSION,
    ChangeFeedUnavailableError,
    ConcurrentCommitError,
    DeltaStore,
    MergeMetrics,
    StoreError,
    StoreLocation,
)

__all__ = [
    "BACKENDS",
    "CHANGE_COLUMNS",
    "ChangeFeedUnavailableError",
    "CHANGE_DATA_FEED_PROPERTY",
    "CHANGE_TYPE",
    "COMMIT_TIMESTAMP",
    "COMMIT_VERSION",
    "DELTA_MAVEN_PACKAGE",
    "ConcurrentCommitError",
    "DeltaStore",
    "MergeMetrics",
    "StoreError",
    "StoreLocation",
    "available_store_backends",
    "get_store",
    "open_store",
]

BACKENDS = ("deltalake", "delta-spark")
DELTA_MAVEN_PACKAGE = DELTA.coordinate


def get_store(
    spark: SparkSession, backend: str, location: StoreLocation, **options: Any
) -> DeltaStore:
    """Build the named Delta backend; ``options`` (e.g. ``max_commit_attempts``) go to it.

    An unusable backend fails here with the reason, not later with a JVM stack trace.
    """
    if backend not in BACKENDS:
        raise StoreError(f"unknown Delta backend {backend!r}; expected one of {BACKENDS}")
    reason = available_store_backends(spark)[backend]
    if reason is not None:
        raise StoreError(f"the {backend} backend cannot run here: {reason}")
    if backend == "deltalake":
        from resolution.store.deltalake_backend import DeltaLakeStore

        return DeltaLakeStore(spark, location, **options)
    from resolution.store.delta_spark_backend import DeltaSparkStore

    return DeltaSparkStore(spark, location, **options)


def open_store(spark: SparkSession, config: Config, backends: Backends | None = None) -> DeltaStore:
    """The Delta store of the config's warehouse or catalog.schema, on the backend it asks for
    (``backends``: already detected for this session, else detected here)."""
    backends = backends or detect_backends(spark, prefer=config.storage.backend)
    storage = config.storage
    location = StoreLocation(warehouse=storage.warehouse, catalog=storage.catalog, schema=storage.schema)
    options = {"deletion_vectors": storage.deletion_vectors} if backends.delta == "delta-spark" else {}
    return get_store(spark, backends.delta, location, **options)


def available_store_backends(spark: SparkSession) -> dict[str, str | None]:
    """Map each backend name to None when this session can use it, else to the reason why not."""
    deltalake_reason = None
    if importlib.util.find_spec("deltalake") is None:
        deltalake_reason = "the deltalake (delta-rs) Python package is not installed"
    delta_spark_reason = None
    if importlib.util.find_spec("delta") is None:
        delta_spark_reason = "the delta-spark Python package is not installed"
    elif not jvm_class_available(spark, DELTA_JVM_CLASS):
        delta_spark_reason = (
            f"Delta's JVM package is not on the classpath ({DELTA_JVM_CLASS} does not load); "
            f"locally `{FETCH_COMMAND}` and storage.backend: jvm load it; with spark-submit: "
            f"--packages {spark_submit_packages([DELTA])} (plus Delta's SQL extension and "
            "catalog settings); Databricks has it built in"
        )
    return {"deltalake": deltalake_reason, "delta-spark": delta_spark_reason}
