"""Connected components behind one interface, with a driver-side and a distributed backend.

The GraphFrames backend is imported only when asked for, so this package works where
graphframes-py or its JVM package is missing.
"""

from __future__ import annotations

import importlib.util

from pyspark.sql import SparkSession

from resolution.clustering.base import (
    COMPONENT,
    COMPONENTS_SCHEMA,
    DST,
    EDGES_SCHEMA,
    GRAPHFRAMES_MAVEN_PACKAGE,
    MAX_EDGES_CONFIG_KEY,
    NODE,
    SRC,
    ConnectedComponents,
    GraphTooLargeError,
)
from resolution.clustering.scipy_backend import ScipyConnectedComponents
from resolution.packages import GRAPHFRAMES, missing_message, missing_packages
from resolution.session import GRAPHFRAMES_JVM_CLASS, jvm_class_available

__all__ = [
    "COMPONENT",
    "COMPONENTS_SCHEMA",
    "DST",
    "EDGES_SCHEMA",
    "GRAPHFRAMES_MAVEN_PACKAGE",
    "MAX_EDGES_CONFIG_KEY",
    "NODE",
    "SRC",
    "ConnectedComponents",
    "GraphTooLargeError",
    "ScipyConnectedComponents",
    "available_backends",
    "get_connected_components",
]

BACKENDS = ("scipy", "graphframes")


def get_connected_components(
    spark: SparkSession, backend: str, *, max_edges: int
) -> ConnectedComponents:
    """Build the named backend; ``max_edges`` bounds the driver-side (scipy) one."""
    if backend == "scipy":
        return ScipyConnectedComponents(spark, max_edges=max_edges)
    if backend == "graphframes":
        from resolution.clustering.graphframes_backend import GraphFramesConnectedComponents

        return GraphFramesConnectedComponents(spark)
    raise ValueError(f"unknown clustering backend {backend!r}; expected one of {BACKENDS}")


def available_backends(spark: SparkSession) -> dict[str, str | None]:
    """Map each backend name to None when this session can use it, else to the reason why not."""
    graphframes_reason = None
    if importlib.util.find_spec("graphframes") is None:
        graphframes_reason = "the graphframes-py Python package is not installed"
    elif not jvm_class_available(spark, GRAPHFRAMES_JVM_CLASS):
        fetched = "" if missing_packages([GRAPHFRAMES]) else " (it is in the local Maven repository)"
        graphframes_reason = (
            f"the GraphFrames JVM package is not on the classpath ({GRAPHFRAMES_JVM_CLASS} does "
            f"not load); add it with spark.jars.packages={GRAPHFRAMES_MAVEN_PACKAGE}{fetched} "
            "or use a Databricks ML runtime"
        )
        if not fetched:
            graphframes_reason += f"; locally: {missing_message([GRAPHFRAMES])}"
    return {"scipy": None, "graphframes": graphframes_reason}
