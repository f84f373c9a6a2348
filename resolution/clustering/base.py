"""The connected-components interface that every clustering backend implements.

Both backends return the same deterministic labelling (a component is named by its smallest
node key), so the rest of the pipeline never knows which one ran.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pyspark.sql import DataFrame
from pyspark.sql.types import StringType, StructField, StructType

from resolution.packages import GRAPHFRAMES

SRC = "src"
DST = "dst"
NODE = "node"
COMPONENT = "component"

EDGES_SCHEMA = StructType([StructField(SRC, StringType()), StructField(DST, StringType())])
COMPONENTS_SCHEMA = StructType(
    [StructField(NODE, StringType()), StructField(COMPONENT, StringType())]
)

# The Maven coordinate users add through spark.jars.packages (the JVM classes stay org.graphframes.*).
GRAPHFRAMES_MAVEN_PACKAGE = GRAPHFRAMES.coordinate
MAX_EDGES_CONFIG_KEY = "matching.max_embedded_graph_edges"


class GraphTooLargeError(RuntimeError):
    """The graph is too large for the driver-side backend; use the distributed one."""


class ConnectedComponents(ABC):
    """Label every node of an undirected graph with its connected component."""

    name: str

    @abstractmethod
    def components(self, edges: DataFrame) -> DataFrame:
        """Return one row per distinct node in ``edges`` with its component.

        ``edges`` has string columns ``src`` and ``dst`` (record keys); duplicate edges, both
        directions and self-loops are allowed, edge direction is ignored and rows with a null key
        are skipped. The output has exactly the columns ``node`` and ``component``, where
        ``component`` is the lexicographically smallest node key in that node's component, so
        labels are stable across backends and runs.
        """
