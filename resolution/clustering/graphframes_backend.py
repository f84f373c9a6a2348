"""Connected components with GraphFrames on the executors: the backend for large graphs.

The only module that imports graphframes. It needs the GraphFrames JVM package on the
classpath (``io.graphframes:graphframes-spark4_2.13`` via spark.jars.packages; built into
Databricks ML runtimes); ``resolution.clustering.available_backends`` reports whether it is.
"""

from __future__ import annotations

from graphframes import GraphFrame
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from resolution.clustering.base import COMPONENT, DST, NODE, SRC, ConnectedComponents
from resolution.session import has_checkpoint_dir

_LABEL = "_cc_label"
_SMALLEST = "_cc_smallest_key"


class GraphFramesConnectedComponents(ConnectedComponents):
    """Label components with GraphFrames' distributed two-phase algorithm."""

    name = "graphframes"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def components(self, edges: DataFrame) -> DataFrame:
        """Label each node with the smallest key of its component (see the interface)."""
        edges = edges.select(SRC, DST).where(F.col(SRC).isNotNull() & F.col(DST).isNotNull())
        vertices = (
            edges.select(F.col(SRC).alias("id"))
            .union(edges.select(F.col(DST).alias("id")))
            .distinct()
        )
        labelled = GraphFrame(vertices, edges).connectedComponents(
            algorithm="two_phase",  # "graphframes" is a deprecated alias of it in 0.12
            # -1 lets AQE handle skewed components; GraphFrames documents it as the faster mode.
            broadcastThreshold=-1,
            # The algorithm checkpoints every few iterations; without a checkpoint dir it must
            # fall back to local checkpoints instead of failing.
            use_local_checkpoints=not has_checkpoint_dir(self.spark),
        )
        # GraphFrames names components with arbitrary longs; rename them to the smallest key so
        # the output matches the scipy backend exactly.
        labels = labelled.select(F.col("id").alias(NODE), F.col("component").alias(_LABEL))
        smallest = labels.groupBy(_LABEL).agg(F.min(NODE).alias(_SMALLEST))
        return labels.join(smallest, _LABEL).select(F.col(NODE), F.col(_SMALLEST).alias(COMPONENT))

