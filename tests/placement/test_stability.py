"""placement.stability.keeps: True only when place(previous=...) keeps every piece where it is."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placement import place
from placement.layouts import build_layout
from placement.stability import keeps
from topology.datasets import DataSet, Erasure, Redundancy, Replicas, ShardPlacement, dataset_object
from topology.errors import PlacementError
from topology.examples import make_cluster_nodes
from topology.nodes import Node


def _nodes(zones: int, racks: int, hosts: int, mixed: bool, seed: int) -> list[Node]:
    objs = make_cluster_nodes(zones=zones, racks_per_zone=racks, hosts_per_rack=hosts, weights="mixed" if mixed else "equal", seed=seed)
    return [Node.from_object(o) for o in objs]


def _spec(shards: int, redundancy: Redundancy, domain: str) -> DataSet:
    return DataSet.from_object(dataset_object("d", shards=shards, shard_size="1Gi", redundancy=redundancy, failure_domain=domain))


def test_fresh_placement_is_kept_and_a_lost_node_is_not() -> None:
    nodes = _nodes(3, 2, 3, False, 0)
    spec = _spec(300, Replicas(3), "host").spec
    first = place(nodes, spec).placement
    assert keeps(nodes, spec, first)
    assert place(nodes, spec, previous=first).moves == ()
    assert not keeps(nodes[1:], spec, first)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zones=st.integers(1, 3),
    racks=st.integers(1, 3),
    hosts=st.integers(1, 4),
    mixed=st.booleans(),
    scheme=st.sampled_from(["r2", "r3", "e42", "e21"]),
    domain=st.sampled_from(["host", "rack", "zone"]),
    shards=st.integers(1, 200),
    change=st.sampled_from(["none", "drop-node", "swap-slot", "shuffle", "weights"]),
    seed=st.integers(0, 10_000),
)
def test_keeps_implies_place_moves_nothing(
    *,
    zones: int, racks: int, hosts: int, mixed: bool, scheme: str, domain: str, shards: int, change: str, seed: int
) -> None:
    nodes = _nodes(zones, racks, hosts, mixed, seed)
    schemes: dict[str, Redundancy] = {"r2": Replicas(2), "r3": Replicas(3), "e42": Erasure(4, 2), "e21": Erasure(2, 1)}
    red = schemes[scheme]
    spec = _spec(shards, red, domain).spec
    try:
        base = place(nodes, spec, seed=seed).placement
    except PlacementError:
        return
    rng = np.random.default_rng(seed)
    previous = base
    if change == "drop-node":
        nodes = [n for i, n in enumerate(nodes) if i != rng.integers(len(nodes))]
    elif change == "swap-slot":
        pieces = base.pieces.copy()
        pieces[rng.integers(shards), rng.integers(red.width)] = rng.integers(len(base.nodes))
        previous = ShardPlacement(base.nodes, pieces)
    elif change == "shuffle":
        pieces = rng.integers(0, len(base.nodes), size=base.pieces.shape).astype(np.int32)
        previous = ShardPlacement(base.nodes, pieces)
    elif change == "weights":
        nodes = _nodes(zones, racks, hosts, not mixed, seed + 1)
    kept = keeps(nodes, spec, previous)
    try:
        result = place(nodes, spec, previous=previous)
    except PlacementError:
        assert not kept
        return
    if kept:
        assert result.moves == ()
        got = np.array([*result.placement.nodes, ""], dtype=object)[result.placement.pieces]
        want = np.array([*previous.nodes, ""], dtype=object)[previous.pieces]
        assert (got == want).all()
    if change == "none" and result.moves == () and result.report.violations == 0:
        # place keeps its own fresh result: keeps says so too unless a node sits on a band edge
        layout = build_layout(nodes, spec)
        band = np.abs(np.bincount(np.array([layout.index[n] for n in result.placement.nodes])[result.placement.pieces].ravel(),
                                  weights=np.repeat(layout.piece_bytes, red.width), minlength=layout.size) - layout.targets)
        if (band < layout.targets * 0.05 * 0.999).all():
            assert kept
