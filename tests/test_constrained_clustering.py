"""Constrained clustering of one component: hand-checked cases and properties on random graphs."""

from __future__ import annotations

import math
import random

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from resolution.clustering.constrained import Cut, Link, Record, split_component


def person(key: str, *, dob: str | None = None, source: str = "web") -> Record:
    return Record(key, source, {"dob": dob})


def test_a_household_chain_is_cut_at_its_weakest_link_between_two_birth_dates():
    # mum and son share a family email (weak link, weight 2); the son's order has no birth date
    # and links to both (weights 9 and 4): it goes with the stronger, the email link is cut
    records = [person("crm:mum", dob="1960-01-01"), person("crm:son", dob="1990-05-05"), person("web:order")]
    links = [Link("crm:mum", "crm:son", 2.0), Link("web:order", "crm:son", 9.0), Link("web:order", "crm:mum", 4.0)]
    labels, cuts = split_component(records, links, attributes=["dob"])
    assert labels == {"crm:mum": "crm:mum", "crm:son": "crm:son", "web:order": "crm:son"}
    assert cuts == [
        Cut("web:order", "crm:mum", "different:dob", "dob 1960-01-01 <> 1990-05-05"),
        Cut("crm:mum", "crm:son", "different:dob", "dob 1960-01-01 <> 1990-05-05"),
    ]


def test_a_tolerated_typo_keeps_a_duplicate_while_a_real_difference_is_cut():
    # the copy's birth date has day and month swapped (FEBRL's typo): one person; the sister,
    # linked by the family address, is born another day: cut, though a weaker link than the typo's
    records = [person("a:1", dob="1984-02-11"), person("b:1", dob="1984-11-02"), person("a:2", dob="1987-06-30")]
    links = [Link("a:1", "b:1", 6.0), Link("b:1", "a:2", 8.0)]
    exact, exact_cuts = split_component(records, links, attributes=["dob"])
    assert exact["a:1"] != exact["b:1"]  # without tolerance the typo splits the person
    labels, cuts = split_component(records, links, attributes=["dob"], tolerate={"dob": ["day_month_swap"]})
    assert labels["a:1"] == labels["b:1"] != labels["a:2"]
    assert cuts == [Cut("b:1", "a:2", "different:dob", "dob 1984-11-02 <> 1987-06-30")]
    assert len(exact_cuts) == 2
    # a sister whose birth date is the person's with day and month swapped is one person too:
    # tolerance is per attribute and knows nothing of households (a second constraint must)


def test_a_component_without_conflict_is_its_connected_component():
    records = [person("a", dob="1980-01-01"), person("b"), person("c", dob="1980-01-01")]
    labels, cuts = split_component(records, [Link("a", "b", -3.0), Link("b", "c", None)], attributes=["dob"])
    assert labels == {"a": "a", "b": "a", "c": "a"} and cuts == []


def test_a_duplicate_free_source_contributes_one_record_per_entity():
    records = [person("crm:1", source="crm"), person("crm:2", source="crm"), person("web:9")]
    labels, cuts = split_component(
        records, [Link("crm:1", "web:9", 5.0), Link("crm:2", "web:9", 7.0)], unique_sources={"crm"}
    )
    assert labels == {"crm:1": "crm:1", "crm:2": "crm:2", "web:9": "crm:2"}
    assert [(cut.key_l, cut.constraint) for cut in cuts] == [("crm:1", "unique_source:crm")]


def test_a_rejected_pair_stays_apart_even_through_a_third_record():
    records = [person("a"), person("b"), person("c")]
    labels, cuts = split_component(
        records, [Link("a", "c", 8.0), Link("b", "c", 6.0)], rejected_pairs=[("b", "a"), ("a", "x:elsewhere")]
    )
    assert labels == {"a": "a", "b": "b", "c": "a"}
    assert [(cut.key_l, cut.key_r, cut.constraint) for cut in cuts] == [("b", "c", "rejected")]


def test_equal_weights_tie_by_record_keys_whatever_the_order_of_arrival():
    records = [person("a", dob="1"), person("b", dob="2"), person("m")]
    links = [Link("m", "b", 1.0000000001), Link("a", "m", 1.0)]  # equal to 6 decimals
    for order in (links, links[::-1]):
        labels, _ = split_component(records[::-1], order, attributes=["dob"])
        assert labels == {"a": "a", "b": "b", "m": "a"}  # (a, m) sorts before (b, m)


# ---------------------------------------------------------------- properties on random graphs


@st.composite
def constrained_graphs(draw):
    size = draw(st.integers(1, 12))
    keys = [f"k{index:02d}" for index in range(size)]
    records = [
        Record(key, draw(st.sampled_from(["crm", "web", "shop"])),
               {"dob": draw(st.sampled_from([None, None, "1970", "1980"])),
                "ssn": draw(st.sampled_from([None, None, None, "111", "222"]))})
        for key in keys
    ]
    pairs = st.tuples(st.sampled_from(keys), st.sampled_from(keys)).filter(lambda pair: pair[0] != pair[1])
    links = [Link(left, right, draw(st.one_of(st.none(), st.integers(-5, 5).map(float))))
             for left, right in draw(st.lists(pairs, max_size=20))]
    rejected = draw(st.lists(pairs, max_size=3))
    unique = draw(st.sets(st.sampled_from(["crm", "web", "shop"]), max_size=2))
    return records, links, rejected, unique


def _violations(members: list[Record], unique: set[str], rejected: list[tuple[str, str]]) -> list[str]:
    found = []
    for name in ("dob", "ssn"):
        if len({r.values[name] for r in members if r.values[name] is not None}) > 1:
            found.append(name)
    for source in unique:
        if sum(r.source == source for r in members) > 1:
            found.append(source)
    keys = {r.key for r in members}
    found += [f"{a}~{b}" for a, b in rejected if a in keys and b in keys]
    return found


@settings(max_examples=300, deadline=None)
@given(constrained_graphs(), st.randoms(use_true_random=False))
def test_random_graphs_keep_constraints_connected_components_and_order(graph, shuffle: random.Random):
    records, links, rejected, unique = graph
    options = {"attributes": ["dob", "ssn"], "unique_sources": unique, "rejected_pairs": rejected}
    labels, cuts = split_component(records, links, **options)
    by_key = {record.key: record for record in records}
    clusters: dict[str, list[Record]] = {}
    for key, label in labels.items():
        clusters.setdefault(label, []).append(by_key[key])
    assert set(labels) == set(by_key)

    # no cluster breaks a constraint, and each is named by its smallest key
    for label, members in clusters.items():
        assert not _violations(members, unique, rejected), members
        assert label == min(r.key for r in members)

    # a component that breaks no constraint is exactly its connected component
    graph = nx.Graph()
    graph.add_nodes_from(by_key)
    graph.add_edges_from((link.key_l, link.key_r) for link in links)
    for component in nx.connected_components(graph):
        members = [by_key[key] for key in component]
        if not _violations(members, unique, rejected):
            assert {labels[key] for key in component} == {min(component)}

    # each cluster is held together by its own links; the cut links are those between clusters
    kept = nx.Graph()
    kept.add_nodes_from(by_key)
    kept.add_edges_from((link.key_l, link.key_r) for link in links if labels[link.key_l] == labels[link.key_r])
    assert sorted(map(sorted, nx.connected_components(kept))) == sorted(
        sorted(r.key for r in members) for members in clusters.values()
    )
    between = {frozenset((link.key_l, link.key_r)) for link in links if labels[link.key_l] != labels[link.key_r]}
    assert {frozenset((cut.key_l, cut.key_r)) for cut in cuts} == between
    # and every cut is necessary: the two clusters a cut link joins would together break a
    # constraint (an implementation cutting every link of a conflicting component fails here)
    for cut in cuts:
        joined = clusters[labels[cut.key_l]] + clusters[labels[cut.key_r]]
        assert _violations(joined, unique, rejected), f"needless cut {cut}"

    # the same records, links and constraints in any order, links either way round: same result
    reordered = [Link(link.key_r, link.key_l, link.weight) if shuffle.random() < 0.5 else link for link in links]
    shuffle.shuffle(reordered)
    shuffled_records = list(records)
    shuffle.shuffle(shuffled_records)
    again, again_cuts = split_component(shuffled_records, reordered, **options)
    assert again == labels
    assert {(frozenset((c.key_l, c.key_r)), c.constraint) for c in again_cuts} == {
        (frozenset((c.key_l, c.key_r)), c.constraint) for c in cuts
    }


def _single_best_links(records: list[Record], links: list[Link], unique: set[str], rejected) -> dict[str, str]:
    """Splink's single best links (``cluster_using_single_best_links``), as its docs define it:
    round after round, two clusters join when their strongest allowed link is each other's."""
    cluster = {record.key: frozenset([record.key]) for record in records}
    by_key = {record.key: record for record in records}
    ordered = sorted(links, key=lambda link: (-(link.weight if link.weight is not None else -math.inf),
                                              *sorted((link.key_l, link.key_r))))
    while True:
        best: dict[frozenset, Link] = {}
        for link in ordered:
            left, right = cluster[link.key_l], cluster[link.key_r]
            if left == right or _violations([by_key[k] for k in left | right], unique, rejected):
                continue
            best.setdefault(left, link)
            best.setdefault(right, link)
        mutual = {link for link in best.values() if best[cluster[link.key_l]] is best[cluster[link.key_r]] is link}
        if not mutual:
            break
        for link in mutual:
            joined = cluster[link.key_l] | cluster[link.key_r]
            cluster.update(dict.fromkeys(joined, joined))
    return {key: min(members) for key, members in cluster.items()}


@settings(max_examples=300, deadline=None)
@given(constrained_graphs())
def test_single_best_links_give_the_partition_strongest_first_gives(graph):
    """Why ``cannot_link`` offers no single-best-link method: every constraint here only grows
    when clusters join, so the strongest allowed link overall is always a mutual best, and
    joining mutual bests round by round ends at the partition strongest-first gives."""
    records, links, rejected, unique = graph
    labels, _ = split_component(records, links, attributes=["dob", "ssn"], unique_sources=unique,
                                rejected_pairs=rejected)
    assert _single_best_links(records, links, unique, rejected) == labels
