"""The controller keeps its Cluster between passes and writes only what changed into it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import Controller
from controller.providers.fake import FakeProvider
from tests.kube.fakekube import FakeKube
from tests.placement.scenarios import T0
from topology.clusters import Cluster
from topology.datasets import DataSet, Replicas, ShardPlacement, dataset_object
from topology.nodes import Node, Resources

NAMES = [f"n{i}" for i in range(6)]


def node(name: str, rack: int) -> Node:
    return Node(name, "r", f"r/z{rack % 2}", f"r/z{rack % 2}/k{rack}", {}, Resources(storage_b=10**12))


def dataset(key: str, seed: int) -> DataSet:
    rng = np.random.default_rng(seed)
    names = tuple(NAMES[: int(rng.integers(2, len(NAMES) + 1))])
    pieces = rng.integers(-1, len(names), size=(int(rng.integers(1, 5)), 2)).astype(np.int32)
    base = DataSet.from_object(dataset_object(key, shards=pieces.shape[0], shard_size=100, redundancy=Replicas(2)))
    return DataSet(base.spec, ShardPlacement(names, pieces))


def assert_same_cluster(kept: Cluster, nodes: list[Node], datasets: list[DataSet]) -> None:
    fresh = Cluster()
    fresh.add_nodes(nodes)
    for d in datasets:
        fresh.set_dataset(d)
    assert dict(kept.nodes) == dict(fresh.nodes)
    assert dict(kept.datasets) == dict(fresh.datasets)
    for d in datasets:
        mine, theirs = kept.level_bytes(d.key), fresh.level_bytes(d.key)
        for n in nodes:
            assert np.array_equal(mine.table[kept.node_id(n.name)], theirs.table[fresh.node_id(n.name)])
        assert kept.holdings(d.key) == fresh.holdings(d.key)


node_op = st.tuples(st.just("node"), st.sampled_from(NAMES), st.integers(0, 3))
gone_op = st.tuples(st.just("gone"), st.sampled_from(NAMES), st.just(0))
data_op = st.tuples(st.just("data"), st.sampled_from(["a", "b"]), st.integers(0, 2**16))
drop_op = st.tuples(st.just("drop"), st.sampled_from(["a", "b"]), st.just(0))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(node_op, gone_op, data_op, drop_op), max_size=4), min_size=1, max_size=6))
def test_the_kept_cluster_is_the_cluster_built_from_scratch_after_every_pass(passes: list[list[tuple[str, str, int]]]) -> None:
    controller = Controller(FakeKube(), FakeProvider(lambda: T0))
    nodes = {name: node(name, i % 3) for i, name in enumerate(NAMES[:4])}
    datasets: dict[str, DataSet] = {}
    for events in [[], *passes]:  # a first pass, then passes after a few events each
        for op, name, value in events:
            if op == "node":
                nodes[name] = node(name, value)  # a new object: an event replaced it in the cache
            elif op == "gone":
                nodes.pop(name, None)
            elif op == "data":
                datasets[f"default/{name}"] = dataset(name, value)
            else:
                datasets.pop(f"default/{name}", None)
        kept = controller._cluster_of(list(nodes.values()), list(datasets.values()))
        assert_same_cluster(kept, list(nodes.values()), list(datasets.values()))


def test_a_pass_after_one_node_event_writes_only_that_node() -> None:
    controller = Controller(FakeKube(), FakeProvider(lambda: T0))
    nodes = [node(name, i % 3) for i, name in enumerate(NAMES)]
    datasets = [dataset("a", 1), dataset("b", 2)]
    cluster = controller._cluster_of(nodes, datasets)
    version = cluster.version
    assert controller._cluster_of(list(nodes), list(datasets)) is cluster
    assert cluster.version == version  # nothing changed: nothing written
    moved = node(NAMES[0], 2)
    cluster = controller._cluster_of([moved, *nodes[1:]], datasets)
    assert cluster.nodes[NAMES[0]] is moved
    assert cluster.version > version
