import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology.clusters import Cluster
from topology.datasets import DataSet, Erasure, Replicas, ShardPlacement, dataset_object
from topology.errors import KblError
from topology.examples import make_cluster_nodes
from topology.localities import Level, LocalityCosts
from topology.nodes import Node
from topology.snapshots import load_snapshot


def small_cluster() -> Cluster:
    nodes = make_cluster_nodes(zones=2, racks_per_zone=2, hosts_per_rack=2)
    return load_snapshot({"kind": "List", "items": nodes}).cluster()


def test_graph_is_a_region_zone_rack_node_tree() -> None:
    cluster = small_cluster()
    assert len(cluster.domains("region")) == 1
    assert len(cluster.domains("zone")) == 2
    assert len(cluster.domains("rack")) == 4
    assert len(cluster.domains("node")) == 8
    for zone in cluster.domains("zone"):
        assert len(cluster.children("zone", zone)) == 2


def test_distance_levels_between_nodes() -> None:
    cluster = small_cluster()
    assert cluster.level("node-0-0-0", "node-0-0-0") is Level.NODE
    assert cluster.level("node-0-0-0", "node-0-0-1") is Level.RACK
    assert cluster.level("node-0-0-0", "node-0-1-0") is Level.ZONE
    assert cluster.level("node-0-0-0", "node-1-0-0") is Level.REGION
    costs = LocalityCosts(node=0, rack=1, zone=3, region=9, remote=27)
    assert cluster.distance("node-0-0-0", "node-1-1-1", costs) == 9
    assert cluster.distance("node-0-0-0", "node-0-0-1", costs) == 1


def test_nodes_in_different_regions_are_remote() -> None:
    cluster = small_cluster()
    base = cluster.nodes["node-0-0-0"]
    cluster.set_node(Node("far", "eu-west-1", "eu-west-1/eu-west-1a", "eu-west-1/eu-west-1a/r", {}, base.allocatable))
    assert cluster.level("node-0-0-0", "far") is Level.REMOTE


def test_distance_of_unknown_node_is_a_clear_error() -> None:
    with pytest.raises(KblError, match="unknown node 'nope'"):
        small_cluster().level("node-0-0-0", "nope")


def test_costs_must_not_decrease_with_distance() -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        LocalityCosts(node=0, rack=5, zone=1)


def placed(name: str, cluster: Cluster, pieces: list[list[int]], redundancy: Replicas | Erasure, size: int = 100) -> DataSet:
    base = DataSet.from_object(dataset_object(name, shards=len(pieces), shard_size=size, redundancy=redundancy))
    names = tuple(sorted(cluster.nodes))
    arr = np.full((len(pieces), redundancy.width), -1, dtype=np.int32)
    for s, row in enumerate(pieces):
        arr[s, : len(row)] = row
    return DataSet(base.spec, ShardPlacement(names, arr))


def brute_force_level_bytes(cluster: Cluster, ds: DataSet, node: str, shards: list[int]) -> list[float]:
    """Reference: for each shard, read the `needed` nearest pieces, one by one."""
    out = [0.0] * 5
    red = ds.spec.redundancy
    assert ds.placement is not None
    for s in shards:
        piece = float(ds.spec.shard_sizes[s]) * red.piece_fraction()
        levels = sorted(int(cluster.level(node, h)) for h in ds.placement.holders(s) if h in cluster.nodes)
        for i in range(red.needed):
            out[levels[i] if i < len(levels) else 4] += piece
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.data(),
    st.sampled_from([Replicas(1), Replicas(2), Replicas(3), Erasure(2, 1), Erasure(4, 2)]),
)
def test_level_bytes_match_reading_the_nearest_pieces(data: st.DataObject, red: Replicas | Erasure) -> None:
    cluster = small_cluster()
    n = len(cluster.nodes)
    shards = data.draw(st.integers(1, 6))
    pieces = [data.draw(st.lists(st.integers(0, n - 1), min_size=red.width, max_size=red.width)) for _ in range(shards)]
    ds = placed("d", cluster, pieces, red, size=data.draw(st.integers(1, 10**6)))
    cluster.set_dataset(ds)
    wanted = sorted(set(data.draw(st.lists(st.integers(0, shards - 1), min_size=1))))
    table = cluster.level_bytes(ds.key, wanted)
    for name in cluster.nodes:
        row = table.table[cluster.node_id(name)]
        assert np.allclose(row, brute_force_level_bytes(cluster, ds, name, wanted))
        assert np.isclose(row.sum(), table.needed_bytes)


def test_removed_node_no_longer_serves_its_pieces() -> None:
    cluster = small_cluster()
    names = sorted(cluster.nodes)
    ds = placed("d", cluster, [[0, 7]], Replicas(2))
    cluster.set_dataset(ds)
    before = cluster.level_bytes(ds.key)
    assert before.table[cluster.node_id(names[0]), Level.NODE] == 100
    cluster.remove_node(names[0])
    after = cluster.level_bytes(ds.key)
    assert after.table[cluster._node_ids[names[0]], Level.NODE] == 0
    assert cluster.nodes_holding(ds.key, 0) == [names[7]]
    assert cluster.level_bytes(ds.key).table[cluster.node_id(names[7]), Level.NODE] == 100


def test_readding_a_node_restores_its_shard_edges() -> None:
    cluster = small_cluster()
    names = sorted(cluster.nodes)
    ds = placed("d", cluster, [[0, 7]], Replicas(2))
    cluster.set_dataset(ds)
    node = cluster.nodes[names[0]]
    cluster.remove_node(names[0])
    cluster.set_node(node)
    assert sorted(cluster.nodes_holding(ds.key, 0)) == [names[0], names[7]]
    assert cluster.level_bytes(ds.key).table[cluster.node_id(names[0]), Level.NODE] == 100


def test_every_node_vertex_hangs_under_exactly_one_rack() -> None:
    cluster = small_cluster()
    for name, kind in itertools.product(cluster.nodes, ["rack"]):
        parents = list(cluster.graph.predecessors(("node", name)))
        assert len(parents) == 1
        assert parents[0][0] == kind
