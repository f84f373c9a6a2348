"""One conformance suite for every connected-components backend.

Each backend must give the same labelling: every node maps to the smallest key of its component.
A backend this session cannot use is skipped with its reason (shown by ``pytest -ra``).
"""

from __future__ import annotations

import random
from itertools import pairwise

import networkx as nx
import pytest
from chispa import assert_df_equality
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import DataFrame, SparkSession

from resolution.clustering import (
    COMPONENT,
    COMPONENTS_SCHEMA,
    EDGES_SCHEMA,
    NODE,
    ConnectedComponents,
    GraphTooLargeError,
    ScipyConnectedComponents,
    available_backends,
    get_connected_components,
)

Edge = tuple[str, str]


@pytest.fixture(scope="module", params=["scipy", "graphframes"])
def backend(request, spark: SparkSession) -> ConnectedComponents:
    reason = available_backends(spark)[request.param]
    if reason is not None:
        pytest.skip(f"{request.param} backend unavailable: {reason}")
    return get_connected_components(spark, request.param, max_edges=1_000_000)


def run_components(spark: SparkSession, backend: ConnectedComponents, edges: list[Edge]) -> dict:
    """Run the backend and return {node: component}, checking the output contract on the way."""
    result = backend.components(spark.createDataFrame(edges, EDGES_SCHEMA))
    assert [(f.name, f.dataType) for f in result.schema] == [
        (f.name, f.dataType) for f in COMPONENTS_SCHEMA
    ]
    rows = result.collect()
    labels = {row[NODE]: row[COMPONENT] for row in rows}
    assert len(labels) == len(rows), "a node appears more than once"
    return labels


def reference_components(edges: list[Edge]) -> dict[str, str]:
    """networkx's components, each named by its smallest key (Python str order = Spark's)."""
    graph = nx.Graph(edges)
    return {node: min(part) for part in nx.connected_components(graph) for node in part}


def chain(keys: list[str]) -> list[Edge]:
    return list(pairwise(keys))


# Short keys from a small alphabet collide and sort awkwardly ("10" < "9", "A" < "a", "é" > "z").
node_keys = st.text(alphabet="ab:019Aé", min_size=1, max_size=4)


@st.composite
def random_graphs(draw) -> list[Edge]:
    nodes = draw(st.lists(node_keys, min_size=1, max_size=40, unique=True))
    node = st.sampled_from(nodes)
    return draw(st.lists(st.tuples(node, node), max_size=80))


@st.composite
def batched_graphs(draw) -> list[Edge]:
    """Several random graphs in one edge list, so each Spark round trip checks more graphs.

    A per-graph key prefix keeps them disjoint and keeps the order of keys within each graph.
    """
    graphs = draw(st.lists(random_graphs(), min_size=1, max_size=4))
    return [(f"{i}|{a}", f"{i}|{b}") for i, edges in enumerate(graphs) for a, b in edges]


# Each example is a Spark round trip (~0.5 s for scipy, several jobs for GraphFrames).
EXAMPLES_PER_BACKEND = {"scipy": 25, "graphframes": 8}


def test_random_graphs_match_networkx(spark, backend):
    @settings(
        max_examples=EXAMPLES_PER_BACKEND[backend.name],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(edges=batched_graphs())
    def check(edges: list[Edge]) -> None:
        assert run_components(spark, backend, edges) == reference_components(edges)

    check()


def test_long_chain_is_one_component(spark, backend):
    keys = [f"k{i}" for i in range(600)]
    random.Random(7).shuffle(keys)  # the smallest key sits mid-chain, not at an end
    edges = [(a, b) if i % 2 else (b, a) for i, (a, b) in enumerate(chain(keys))]
    assert run_components(spark, backend, edges) == {key: "k0" for key in keys}


def test_star_is_one_component(spark, backend):
    leaves = [f"leaf:{i}" for i in range(1000)]
    edges = [("zz-hub", leaf) for leaf in leaves]
    assert run_components(spark, backend, edges) == {node: "leaf:0" for node in [*leaves, "zz-hub"]}


def test_disjoint_chains_stay_apart(spark, backend):
    chains = {f"c{c}": [f"c{c}:{i:03d}" for i in reversed(range(50))] for c in range(5)}
    edges = [edge for keys in chains.values() for edge in chain(keys)]
    assert run_components(spark, backend, edges) == {
        key: f"{name}:000" for name, keys in chains.items() for key in keys
    }


def test_duplicate_reversed_and_self_loop_edges(spark, backend):
    edges = [("b", "a"), ("a", "b"), ("a", "b"), ("c", "c"), ("d", "d"), ("e", "d"), ("d", "e")]
    actual = backend.components(spark.createDataFrame(edges, EDGES_SCHEMA))
    expected = spark.createDataFrame(
        [("a", "a"), ("b", "a"), ("c", "c"), ("d", "d"), ("e", "d")], COMPONENTS_SCHEMA
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_empty_edges_give_empty_components(spark, backend):
    result: DataFrame = backend.components(spark.createDataFrame([], EDGES_SCHEMA))
    assert result.columns == [NODE, COMPONENT]
    assert result.count() == 0


def test_component_is_smallest_key_as_string_not_number(spark, backend):
    edges = [("a:9", "a:10"), ("a:10", "a:100"), ("b:2", "b:11")]
    assert run_components(spark, backend, edges) == {
        "a:9": "a:10",
        "a:10": "a:10",
        "a:100": "a:10",
        "b:2": "b:11",
        "b:11": "b:11",
    }


def test_scipy_refuses_graph_over_max_edges(spark):
    edges = spark.createDataFrame([("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")], EDGES_SCHEMA)
    assert ScipyConnectedComponents(spark, max_edges=4).components(edges).count() == 4
    with pytest.raises(GraphTooLargeError) as error:
        ScipyConnectedComponents(spark, max_edges=3).components(edges)
    message = str(error.value)
    assert "GraphFrames" in message
    assert "matching.max_embedded_graph_edges" in message
    assert "4 edges" in message


def test_unknown_backend_is_rejected(spark):
    with pytest.raises(ValueError, match="unknown clustering backend"):
        get_connected_components(spark, "networkx", max_edges=10)
