import itertools
from typing import Any

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology.clusters import Cluster, nearest_holders
from topology.datasets import DataSet, Erasure, Replicas, ShardPlacement, dataset_object
from topology.errors import KblError
from topology.examples import make_cluster_nodes
from topology.localities import Level, LocalityCosts
from topology.nodes import Node, Resources
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


# ----------------------------------------------------------- one representation: the graph


def tiny_node(name: str, zone: int, rack: int) -> Node:
    return Node(name, "r", f"r/z{zone}", f"r/z{zone}/k{rack}", {}, Resources())


NAMES = [f"n{i}" for i in range(8)]
set_op = st.tuples(st.just("set"), st.sampled_from(NAMES), st.integers(0, 2), st.integers(0, 1))
remove_op = st.tuples(st.just("remove"), st.sampled_from(NAMES), st.just(0), st.just(0))
dataset_op = st.tuples(st.just("dataset"), st.sampled_from(["a", "b"]), st.integers(0, 2**16), st.integers(0, 1))
drop_op = st.tuples(st.just("drop"), st.sampled_from(["a", "b"]), st.just(0), st.just(0))


def random_dataset(name: str, seed: int, same_nodes: bool) -> DataSet:
    """A 2-replica dataset over the fixed names (plus one never-seen node unless same_nodes)."""
    rng = np.random.default_rng(seed)
    names = tuple(NAMES) if same_nodes else (*NAMES, "unseen")
    pieces = rng.integers(-1, len(names), size=(int(rng.integers(1, 6)), 2)).astype(np.int32)
    base = DataSet.from_object(dataset_object(name, shards=pieces.shape[0], shard_size=100, redundancy=Replicas(2)))
    return DataSet(base.spec, ShardPlacement(names, pieces))


def assert_index_is_the_graphs(cluster: Cluster) -> None:
    derived = cluster.derive_index()
    assert derived.node_ids == cluster._node_ids
    rack, zone, region, present = cluster.domain_arrays()
    assert np.array_equal(derived.rack[present == 1], rack[present == 1])
    assert np.array_equal(derived.zone[present == 1], zone[present == 1])
    assert np.array_equal(derived.region[present == 1], region[present == 1])
    assert np.array_equal(derived.present, present)
    graph_nodes = {d["name"]: d["node"] for _, d in cluster.graph.nodes(data=True) if d.get("kind") == "node" and d.get("present")}
    assert dict(cluster.nodes) == graph_nodes
    for key, ds in cluster.datasets.items():
        assert ds is cluster.graph.nodes[("dataset", key)]["dataset"]
        expected: dict[str, list[float]] = {}
        assert ds.placement is not None
        for s, row in enumerate(ds.placement.pieces):
            for i in row:
                if i >= 0:
                    entry = expected.setdefault(ds.placement.nodes[i], [0, 0.0])
                    entry[0] += 1
                    entry[1] += float(ds.spec.shard_sizes[s])
        assert {h.node: [h.pieces, h.bytes] for h in cluster.holdings(key)} == expected
        pieces = cluster.global_pieces(key)
        for s, row in enumerate(ds.placement.pieces):
            for p, i in enumerate(row):
                name = ds.placement.nodes[i] if i >= 0 else None
                assert pieces[s, p] == (cluster.node_id(name) if name in cluster.nodes else -1)
    # the holds edges written straight into the adjacency are the graph networkx itself builds
    g = cluster.graph
    for u, nbrs in g.succ.items():
        for v, data in nbrs.items():
            assert g.pred[v][u] is data
    assert sum(len(p) for p in g.pred.values()) == g.number_of_edges()
    reference: nx.DiGraph[Any] = nx.DiGraph()
    reference.add_nodes_from(g.nodes(data=True))
    reference.add_edges_from(g.edges(data=True))
    assert nx.utils.graphs_equal(reference, g)
    # the byte tables equal those of a cluster built from scratch from the same state
    fresh = Cluster()
    fresh.add_nodes(cluster.nodes.values())
    for ds in cluster.datasets.values():
        fresh.set_dataset(ds)
    for key in cluster.datasets:
        mine, theirs = cluster.level_bytes(key), fresh.level_bytes(key)
        for name in cluster.nodes:
            assert np.array_equal(mine.table[cluster.node_id(name)], theirs.table[fresh.node_id(name)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(set_op, remove_op, dataset_op, drop_op), max_size=25))
def test_index_equals_what_the_graph_says_after_random_updates(ops: list[tuple[str, str, int, int]]) -> None:
    cluster = Cluster()
    for op, name, a, b in ops:
        if op == "set":
            cluster.set_node(tiny_node(name, a, b))
        elif op == "remove":
            cluster.remove_node(name)
        elif op == "dataset":
            cluster.set_dataset(random_dataset(name, a, bool(b)))
        else:
            cluster.remove_dataset(name)
        cluster.domain_arrays()  # a reader holds arrays: the next change must not write into them
    assert_index_is_the_graphs(cluster)
    for _, d in cluster.graph.nodes(data=True):  # no vertex for a node neither seen nor holding data
        if d.get("kind") == "node" and "id" not in d:
            assert cluster.graph.in_degree(("node", d["name"])) > 0


def test_arrays_a_reader_holds_do_not_change_under_it() -> None:
    cluster = Cluster()
    cluster.set_node(tiny_node("a", 0, 0))
    rack, _, _, present = cluster.domain_arrays()
    cluster.set_node(tiny_node("a", 1, 1))
    cluster.remove_node("a")
    assert (rack[0], present[0]) == (0, 1)  # the held copy is the old one
    assert cluster.domain_arrays()[3][0] == 0


def test_bulk_add_builds_the_same_graph_and_index_as_one_by_one() -> None:
    nodes = [tiny_node(f"n{i}", i % 3, i % 2) for i in range(12)]
    one, bulk = Cluster(), Cluster()
    for node in nodes:
        one.set_node(node)
    bulk.add_nodes(nodes)
    assert set(one.graph.edges) == set(bulk.graph.edges)
    assert one._node_ids == bulk._node_ids
    for a, b in zip(one.domain_arrays(), bulk.domain_arrays(), strict=True):
        assert np.array_equal(a, b)
    assert_index_is_the_graphs(bulk)


def test_the_graph_is_sized_by_nodes_and_datasets_not_replicas() -> None:
    cluster = small_cluster()
    names = tuple(sorted(cluster.nodes))
    pieces = np.array([[s % 8, (s + 1) % 8, (s + 2) % 8] for s in range(3000)], dtype=np.int32)
    base = DataSet.from_object(dataset_object("big", shards=3000, shard_size=10, redundancy=Replicas(3)))
    before = cluster.graph.number_of_edges()
    cluster.set_dataset(DataSet(base.spec, ShardPlacement(names, pieces)))
    assert cluster.graph.number_of_edges() - before == 8  # one aggregate edge per holder node
    assert sum(h.pieces for h in cluster.holdings("default/big")) == 9000


def test_writes_to_the_node_and_dataset_views_go_through_the_graph() -> None:
    cluster = Cluster()
    cluster.nodes["a"] = tiny_node("a", 0, 0)
    assert ("node", "a") in cluster.graph
    assert cluster.node_id("a") == 0
    del cluster.nodes["a"]
    assert cluster.node_id("a") is None
    assert cluster.graph.nodes[("node", "a")]["present"] is False
    with pytest.raises(KblError, match="another name"):
        cluster.nodes["b"] = tiny_node("a", 0, 0)
    ds = random_dataset("a", 1, True)
    cluster.datasets[ds.key] = ds
    assert ("dataset", ds.key) in cluster.graph
    del cluster.datasets[ds.key]
    assert ("dataset", ds.key) not in cluster.graph


def test_nearest_holders_by_topology_distance() -> None:
    cluster = small_cluster()
    order = nearest_holders(cluster, "node-0-0-0", ["node-1-1-1", "node-0-1-0", "node-0-0-1", "node-0-0-0", "gone"])
    assert order == ["node-0-0-0", "node-0-0-1", "node-0-1-0", "node-1-1-1"]
    with pytest.raises(KblError, match="unknown node"):
        nearest_holders(cluster, "gone", [])


def test_main_zone_is_where_most_bytes_of_the_datasets_are() -> None:
    cluster = small_cluster()
    names = sorted(cluster.nodes)  # node-0-*-* in zone 0, node-1-*-* in zone 1
    zone0 = cluster.nodes[names[0]].zone
    zone1 = cluster.nodes[names[7]].zone
    cluster.set_dataset(placed("d", cluster, [[0, 7], [1, 6], [2, 5]], Replicas(2)))
    cluster.set_dataset(placed("e", cluster, [[7], [6]], Replicas(1)))
    assert cluster.zone_bytes(["default/d"]) == {zone0: 300.0, zone1: 300.0}
    assert cluster.main_zone(["default/d", "default/e"]) == zone1
    assert cluster.main_zone(["default/none"]) is None


def test_domain_tree_and_members_come_from_the_graph() -> None:
    cluster = small_cluster()
    tree = cluster.domain_tree()
    assert len(tree) == 1
    (zones,) = tree.values()
    assert len(zones) == 2
    assert all(len(racks) == 2 and all(len(n) == 2 for n in racks.values()) for racks in zones.values())
    members = cluster.domain_members("zone")
    assert sorted(len(v) for v in members.values()) == [4, 4]
    with pytest.raises(KblError, match="unknown level"):
        cluster.domain_members("planet")


def test_an_unchanged_place_changes_no_index() -> None:
    cluster = small_cluster()
    version = cluster.version
    node = cluster.nodes["node-0-0-0"]
    cluster.set_node(Node(node.name, node.region, node.zone, node.rack, {"x": "y"}, node.allocatable))
    assert cluster.version == version
    assert cluster.nodes["node-0-0-0"].labels == {"x": "y"}


def test_a_dropped_cluster_is_freed_at_once_without_the_cycle_collector() -> None:
    """A controller builds a Cluster per pass: a reference cycle would keep each one (about a GiB
    at 100,000 nodes) until the next full collection."""
    import gc
    import weakref

    was = gc.isenabled()
    gc.disable()
    try:
        cluster = small_cluster()
        names = sorted(cluster.nodes)
        ds = placed("d", cluster, [[0, 7]], Replicas(2))
        cluster.datasets[ds.key] = ds
        cluster.nodes[names[0]] = cluster.nodes[names[0]]
        cluster.remove_node(names[1])
        cluster.remove_dataset(ds.key)
        assert cluster.holdings(ds.key) == []
        assert cluster.zone_bytes([ds.key]) == {}
        gone, graph_gone = weakref.ref(cluster), weakref.ref(cluster.graph)
        del cluster
        assert gone() is None
        assert graph_gone() is None
    finally:
        if was:
            gc.enable()
