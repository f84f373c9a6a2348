"""Connected components on the driver with scipy: the embedded default.

Exact and independent of the graph's diameter (unlike iterative Spark label propagation), but the
edge list must fit in driver memory, so graphs over a configurable size are refused.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from resolution.clustering.base import (
    COMPONENT,
    COMPONENTS_SCHEMA,
    DST,
    GRAPHFRAMES_MAVEN_PACKAGE,
    MAX_EDGES_CONFIG_KEY,
    NODE,
    SRC,
    ConnectedComponents,
    GraphTooLargeError,
)


class ScipyConnectedComponents(ConnectedComponents):
    """Collect the edges through Arrow and label them with ``scipy.sparse.csgraph``."""

    name = "scipy"

    def __init__(self, spark: SparkSession, *, max_edges: int = 50_000_000) -> None:
        self.spark = spark
        self.max_edges = max_edges

    def components(self, edges: DataFrame) -> DataFrame:
        """Label each node with the smallest key of its component (see the interface)."""
        edges = edges.select(SRC, DST).where(F.col(SRC).isNotNull() & F.col(DST).isNotNull())
        # Count first: collecting an oversized graph would kill the driver before we could explain.
        edge_count = edges.count()
        if edge_count > self.max_edges:
            raise GraphTooLargeError(
                f"The match graph has {edge_count:,} edges, over the embedded clustering limit of "
                f"{self.max_edges:,} ({MAX_EDGES_CONFIG_KEY}). Raise that limit if the driver has "
                "the memory, or use the GraphFrames backend, which clusters larger graphs on the "
                f"executors: put the JVM package {GRAPHFRAMES_MAVEN_PACKAGE} on "
                "the classpath with spark.jars.packages (Databricks ML runtimes include it)."
            )
        if edge_count == 0:
            return self.spark.createDataFrame([], COMPONENTS_SCHEMA)
        table = edges.toArrow()
        labels = label_components(table.column(SRC), table.column(DST))
        return self.spark.createDataFrame(labels, schema=COMPONENTS_SCHEMA)


def label_components(src: pa.ChunkedArray, dst: pa.ChunkedArray) -> pa.Table:
    """Map every key in ``src``/``dst`` to the smallest key of its component, vectorised."""
    keys = pc.unique(pa.chunked_array(src.chunks + dst.chunks, type=src.type))
    # Number nodes in sorted key order, so the smallest index of a component is its smallest key.
    keys = keys.take(pc.array_sort_indices(keys))
    rows = pc.index_in(src, value_set=keys).to_numpy()
    cols = pc.index_in(dst, value_set=keys).to_numpy()
    node_count = len(keys)
    # int32 weights: duplicate edges are summed, and a narrower type could wrap round to 0.
    adjacency = coo_matrix(
        (np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(node_count, node_count)
    )
    _, label = connected_components(adjacency, directed=False)
    # np.unique returns, per label, the first (= smallest) node index holding it.
    _, first_node = np.unique(label, return_index=True)
    return pa.table({NODE: keys, COMPONENT: keys.take(pa.array(first_node[label]))})
