"""The layout's water-filling, checked against its recursive definition.

The functions below are the definition ``placement.layouts`` used until it was vectorised (one
Python call per domain and per node: 20 s a DataSet at 100,000 nodes); they are kept here as the
oracle the vectorised ones must agree with, to a few ulps (the sums run in another order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from placement import place
from placement.layouts import NodeArrays, build_layout, hierarchical_slots, hierarchical_targets, waterfill
from topology.datasets import DataSet, Replicas, dataset_object
from topology.errors import PlacementError
from topology.examples import make_cluster_nodes
from topology.nodes import Node

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def waterfill_by_definition(weights: F64, caps: F64, total: float) -> F64:
    """Split ``total`` in proportion to ``weights`` with no share above its cap.

    Shares that hit their cap are fixed there and the rest is split again among the others
    (progressive filling). If the caps sum to less than ``total`` every share is at its cap.
    """
    alloc = np.zeros_like(weights)
    free = weights > 0
    remaining = float(total)
    while remaining > 1e-9 and free.any():
        share = remaining * weights / weights[free].sum()
        share[~free] = 0.0
        over = free & (alloc + share > caps)
        if not over.any():
            alloc += share
            break
        remaining -= float((caps[over] - alloc[over]).sum())
        alloc[over] = caps[over]
        free &= ~over
    return alloc


def slots_by_definition(chain: Sequence[tuple[I64, int]], members: I64) -> int:
    """Most pieces of one shard ``members`` can hold under the caps of ``chain`` (coarsest first)."""
    if not chain:
        return len(members)
    ids, cap = chain[0]
    total = 0
    for g in np.unique(ids[members]):
        total += min(cap, slots_by_definition(chain[1:], members[ids[members] == g]))
    return total


def targets_by_definition(weights: F64, chain: Sequence[tuple[I64, int]], per_node_max: float, total: float) -> F64:
    """Water-fill ``total`` bytes down the levels of ``chain`` (coarsest first), then over nodes.

    A domain can hold at most ``min(cap, slots of its children) * per_node_max`` bytes; a node at
    most ``per_node_max`` (one piece per shard).
    """
    out = np.zeros(len(weights), dtype=np.float64)

    def split(members: I64, level: int, amount: float) -> None:
        if level == len(chain):
            out[members] = waterfill_by_definition(weights[members], np.full(len(members), per_node_max), amount)
            return
        ids, cap = chain[level]
        sub_ids = ids[members]
        groups = np.unique(sub_ids)
        parts = [members[sub_ids == g] for g in groups]
        gw = np.array([weights[p].sum() for p in parts], dtype=np.float64)
        gmax = np.array([min(cap, slots_by_definition(chain[level + 1 :], p)) * per_node_max for p in parts], dtype=np.float64)
        alloc = waterfill_by_definition(gw, gmax, amount)
        for p, a in zip(parts, alloc.tolist(), strict=True):
            split(p, level + 1, a)

    split(np.arange(len(weights)), 0, total)
    return out


_chains = st.integers(0, 3)


@st.composite
def chains(draw: st.DrawFn) -> tuple[F64, list[tuple[I64, int]]]:
    """Weights of n nodes and a chain of nested domain levels (ids may repeat across parents)."""
    n = draw(st.integers(1, 60))
    weights = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.5, 1e12]), min_size=n, max_size=n)), dtype=np.float64)
    chain = []
    for _ in range(draw(_chains)):
        k = draw(st.integers(1, 8))
        ids = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)), dtype=np.int64)
        chain.append((ids, draw(st.integers(1, 4))))
    return weights, chain


@settings(max_examples=300, deadline=None)
@given(chains(), st.integers(1, 5), st.sampled_from([1.0, 7.5, 2.0**40]))
def test_vectorised_water_filling_is_the_recursive_definition(case: tuple[F64, list[tuple[I64, int]]], width: int, piece: float) -> None:
    weights, chain = case
    members = np.arange(len(weights))
    assert hierarchical_slots(chain, members) == slots_by_definition(chain, members)
    total = piece * width
    np.testing.assert_allclose(
        hierarchical_targets(weights, chain, piece, total),
        targets_by_definition(weights, chain, piece, total),
        rtol=1e-12,
        atol=1e-9 * piece,
    )
    caps = np.full(len(weights), piece)
    np.testing.assert_allclose(
        waterfill(weights, caps, total), waterfill_by_definition(weights, caps, total), rtol=1e-12, atol=1e-9 * piece
    )


def test_a_layout_at_thousands_of_nodes_has_the_targets_of_the_definition() -> None:
    nodes = [Node.from_object(o) for o in make_cluster_nodes(zones=3, racks_per_zone=20, hosts_per_rack=40, weights="mixed", seed=5)]
    for domain in ("host", "rack"):
        spec = DataSet.from_object(dataset_object("d", shards=5000, shard_size="1Gi", redundancy=Replicas(3), failure_domain=domain)).spec
        layout = build_layout(nodes, spec)
        chain = [*((r.ids, r.cap) for r in reversed(layout.spread)), (layout.domains, layout.cap)]
        per_node = float(layout.piece_bytes.sum())
        np.testing.assert_allclose(layout.targets, targets_by_definition(layout.weights, chain, per_node, per_node * 3), rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    zones=st.integers(1, 3),
    racks=st.integers(1, 3),
    hosts=st.integers(1, 4),
    mixed=st.booleans(),
    domain=st.sampled_from(["host", "rack", "zone"]),
    selector=st.sampled_from([None, "a", "b"]),
    empty=st.integers(0, 3),
    seed=st.integers(0, 1000),
)
def test_a_layout_read_from_node_arrays_is_the_layout_read_from_the_nodes(
    *, zones: int, racks: int, hosts: int, mixed: bool, domain: str, selector: str | None, empty: int, seed: int
) -> None:
    """``build_layout(..., table=NodeArrays(nodes))``: the reconciler's fast path, field by field."""
    objs = make_cluster_nodes(zones=zones, racks_per_zone=racks, hosts_per_rack=hosts, weights="mixed" if mixed else "equal", seed=seed)
    rng = np.random.default_rng(seed)
    for i, obj in enumerate(objs):
        obj["metadata"]["labels"]["pool"] = "a" if rng.random() < 0.7 else "b"  # some nodes do not match a selector
        if i < empty:
            obj["status"]["allocatable"]["ephemeral-storage"] = "0"  # not eligible
    nodes = [Node.from_object(o) for o in objs]
    rng.shuffle(nodes)
    ds = dataset_object("d", shards=60, shard_size="1Gi", redundancy=Replicas(2), failure_domain=domain)
    if selector:
        ds["spec"]["nodeSelector"] = {"pool": selector}
    spec = DataSet.from_object(ds).spec
    try:
        plain = build_layout(nodes, spec, strict=False)
    except PlacementError:
        return
    fast = build_layout(nodes, spec, strict=False, table=NodeArrays(nodes))
    assert fast.names == plain.names
    assert fast.index == plain.index
    assert fast.domain_names == plain.domain_names
    assert (fast.cap, fast.problem) == (plain.cap, plain.problem)
    for field in ("weights", "domains", "eligible", "piece_bytes", "targets", "node_hash"):
        assert np.array_equal(getattr(fast, field), getattr(plain, field)), field
    assert fast.levels.keys() == plain.levels.keys()
    assert all(np.array_equal(fast.levels[k], plain.levels[k]) for k in plain.levels)
    assert [(r.level, r.cap) for r in fast.spread] == [(r.level, r.cap) for r in plain.spread]
    assert all(np.array_equal(a.ids, b.ids) for a, b in zip(fast.spread, plain.spread, strict=True))
    if not plain.problem:
        with_table = place(nodes, spec, table=NodeArrays(nodes)).placement
        assert with_table.equals(place(nodes, spec).placement)


def test_node_arrays_of_other_nodes_are_not_read() -> None:
    nodes = [Node.from_object(o) for o in make_cluster_nodes(zones=3, racks_per_zone=2, hosts_per_rack=2)]
    spec = DataSet.from_object(dataset_object("d", shards=20, shard_size="1Gi", redundancy=Replicas(3))).spec
    stale = NodeArrays(nodes[:-1])
    assert build_layout(nodes, spec, table=stale).names == build_layout(nodes, spec).names


@settings(max_examples=60, deadline=None)
@given(
    zones=st.integers(1, 3),
    racks=st.integers(1, 3),
    hosts=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    leave=st.integers(0, 5),
    join=st.integers(0, 5),
    relabel=st.integers(0, 3),
)
def test_a_table_derived_after_nodes_come_and_go_equals_a_table_built_afresh(
    *, zones: int, racks: int, hosts: int, seed: int, leave: int, join: int, relabel: int
) -> None:
    """``NodeArrays.derived`` (the reconciler's O(change) path when nodes join, leave or change):
    every array a fresh table computes (names, index, weights, selector matches, domain ids at
    every level, hashes) is the same, and ``keeps`` answers the same on both."""
    from placement.stability import NodeTable, keeps

    rng = np.random.default_rng(seed)
    objs = make_cluster_nodes(zones=zones, racks_per_zone=racks, hosts_per_rack=hosts, weights="mixed", seed=seed)
    extra = make_cluster_nodes(zones=zones + 1, racks_per_zone=racks + 1, hosts_per_rack=hosts + 1, weights="mixed", seed=seed + 1)
    for o in [*objs, *extra]:
        o["metadata"]["labels"]["pool"] = "a" if rng.random() < 0.7 else "b"
    nodes = [Node.from_object(o) for o in objs]
    table = NodeTable(nodes)
    selectors = [{}, {"pool": "a"}]
    keys = ["host", "rack", "zone", "pool", "missing-label"]
    for sel in selectors:  # what a pass computed before the change (only those are carried)
        table.matching(sel)
    for key in keys:
        table.sorted_domains(key)
    table.weights("ephemeral-storage")
    table.hashes()
    gone = {nodes[i].name for i in rng.choice(len(nodes), size=min(leave, len(nodes)), replace=False).tolist()}
    names = {n.name for n in nodes}
    joining = [n for n in (Node.from_object(o) for o in extra) if n.name not in names][:join]
    changed = [n for n in nodes if n.name not in gone][:relabel]
    renewed = []
    for n in changed:  # the same node, a new object with another label and capacity (an update)
        obj = next(o for o in objs if o["metadata"]["name"] == n.name)
        obj["metadata"]["labels"]["pool"] = "b" if n.labels.get("pool") == "a" else "a"
        obj["status"]["allocatable"]["ephemeral-storage"] = "3000000000000"
        renewed.append(Node.from_object(obj))
    after = [*(n for n in nodes if n.name not in gone and n not in changed), *joining, *renewed]
    derived = table.derived(gone | {n.name for n in changed}, [*joining, *renewed])
    fresh = NodeTable(after)
    assert derived is not None
    assert derived.names == fresh.names
    assert derived.index == fresh.index
    assert [id(n) for n in derived.nodes] == [id(n) for n in fresh.nodes]
    assert derived.same_nodes(after)
    for sel in selectors:
        assert np.array_equal(derived.matching(sel), fresh.matching(sel))
    for key in keys:
        ids, uniq = derived.sorted_domains(key)
        assert uniq == fresh.sorted_domains(key)[1], key
        assert np.array_equal(ids, fresh.sorted_domains(key)[0]), key
    assert np.array_equal(derived.weights("ephemeral-storage"), fresh.weights("ephemeral-storage"))
    assert np.array_equal(derived.hashes(), fresh.hashes())
    spec = DataSet.from_object(dataset_object("d", shards=30, shard_size="1Gi", redundancy=Replicas(2), failure_domain="host")).spec
    try:
        before = place(nodes, spec).placement
    except PlacementError:
        return
    assert np.array_equal(derived.known(before.nodes), fresh.known(before.nodes))  # the remap of the old names
    assert keeps(derived, spec, before) == keeps(fresh, spec, before)


def test_a_table_is_not_derived_when_a_name_is_unknown_or_would_be_listed_twice() -> None:
    nodes = [Node.from_object(o) for o in make_cluster_nodes(zones=1, racks_per_zone=1, hosts_per_rack=3)]
    table = NodeArrays(nodes)
    assert table.derived({"no-such-node"}, []) is None
    assert table.derived((), [nodes[0]]) is None  # already there and not removed
    assert table.derived((), [nodes[-1], nodes[-1]]) is None


def test_a_table_remembers_a_bounded_number_of_node_lists_and_answers_the_same_for_any() -> None:
    """A pass asks a table for the positions of every DataSet's node list; with thousands of
    DataSets a cache per list would hold 100,000 entries each: at most 64 lists are remembered,
    and a list forgotten is answered the same when asked again."""
    from placement.stability import NodeTable

    nodes = [Node.from_object(o) for o in make_cluster_nodes(zones=3, racks_per_zone=2, hosts_per_rack=3)]
    table = NodeTable(nodes)
    names = [n.name for n in nodes]
    position = np.arange(len(names) + 1, dtype=np.int64)
    position[-1] = -1
    lists = [tuple(names[i:] + names[:i] + [f"gone-{i}"]) for i in range(100)]
    first = [table.lut(lst, position).copy() for lst in lists]
    assert len(table._luts) <= 64
    assert len(table._known) <= 64
    for lst, was in zip(lists, first, strict=True):
        assert np.array_equal(table.lut(lst, position), was)
        assert table.lut(lst, position)[-2] == -1  # an unknown name
