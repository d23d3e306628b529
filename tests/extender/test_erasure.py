"""Required locality with an erasure-coded DataSet: a node passes when it holds a piece of every
requested shard (one fragment per shard, as the placement lays them out), and prioritize scores
the piece bytes a node can read locally."""

from __future__ import annotations

from typing import Any

from extender.app import create_app
from extender.framework import Framework
from extender.state import ClusterState
from placement.placements import place
from tests.extender import scenarios as sc
from topology.datasets import DataSet, Erasure, dataset_object
from topology.nodes import Node
from topology.pods import Pod
from topology.snapshots import load_snapshot

ALL = [f"node-{z}-{r}-{h}" for z in range(2) for r in range(2) for h in range(3)]


def erasure_dataset(shards: list[list[int]]) -> dict[str, Any]:
    """A 4+2 DataSet of ``len(shards)`` shards; ``shards[s]`` = the node indexes (into ALL) of its pieces."""
    obj = dataset_object(sc.DATASET, namespace=sc.NAMESPACE, shards=len(shards), shard_size=sc.SHARD_SIZE, redundancy=Erasure(4, 2))
    obj["status"] = {"placement": {"nodes": ALL, "shards": shards}}
    return obj


#: shard s on nodes s .. s+5 (one piece each): a piece of shards 0 and 1 is on nodes 1..5.
SLIDING = [[(s + j) % 12 for j in range(6)] for s in range(4)]


def app_for(obj: dict[str, Any]) -> Any:
    return create_app(ClusterState.from_snapshot(load_snapshot(sc.snapshot(datasets=[obj]))))


def test_required_erasure_passes_nodes_holding_a_piece_of_every_requested_shard() -> None:
    reply = sc.call(app_for(erasure_dataset(SLIDING)), "/filter", sc.names_args(sc.pod(locality="required", shards="0-1"), ALL)).json()
    assert reply["NodeNames"] == ALL[1:6]
    assert set(reply["FailedAndUnresolvableNodes"]) == {ALL[0], *ALL[6:]}
    reason = reply["FailedAndUnresolvableNodes"][ALL[0]]  # a piece of shard 0 only
    assert "a piece of 1 of the 2 requested shards" in reason
    assert "only nodes with a piece of every requested shard qualify" in reason
    assert "a piece of 0 of the 2" in reply["FailedAndUnresolvableNodes"][ALL[8]]


def test_required_erasure_over_an_engine_placement_passes_the_piece_holders() -> None:
    # What issue 12 found: the placement engine puts one piece of a shard per node, and the
    # filter used to demand every byte on one node, so no node passed.
    nodes = [Node.from_object(n) for n in sc.nodes()]
    obj = dataset_object(sc.DATASET, namespace=sc.NAMESPACE, shards=8, shard_size=sc.SHARD_SIZE, redundancy=Erasure(4, 2))
    placement = place(nodes, DataSet.from_object(obj).spec).placement
    obj["status"] = {"placement": placement.to_status()}
    app = app_for(obj)
    for shards in ("3", "0-1", "0-7"):
        wanted = range(int(shards.split("-")[0]), int(shards.split("-")[-1]) + 1)
        expected = [n for n in ALL if all(n in placement.holders(s) for s in wanted)]
        reply = sc.call(app, "/filter", sc.names_args(sc.pod(locality="required", shards=shards), ALL)).json()
        assert reply["NodeNames"] == expected
    one = sc.call(app, "/filter", sc.names_args(sc.pod(locality="required", shards="3"), ALL)).json()
    assert len(one["NodeNames"]) == 6  # k + m pieces, one per node


def test_prioritize_erasure_scores_the_piece_bytes_readable_locally() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot(datasets=[erasure_dataset(SLIDING)])))
    fw = Framework(state)
    cycle = fw.cycle(Pod.from_object(sc.pod(shards="0-1")))
    ids = state.node_ids(ALL)
    local = fw.costs.level_bytes(cycle.wish).table[ids, 0]
    held = [sum(i in SLIDING[s] for s in (0, 1)) for i in range(len(ALL))]  # requested shards with a piece here
    assert local.tolist() == [h * sc.SHARD_SIZE / 4 for h in held]  # a 4+2 piece is a quarter of its shard
    assert cycle.wish.needed_bytes == 2 * sc.SHARD_SIZE  # k pieces of each requested shard are read
    got = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(sc.pod(shards="0-1"), ALL)))
    assert {n for n, s in got.items() if s == 10} <= set(ALL[1:6])  # the best nodes hold a piece of both
    # required and preferred agree: every node the filter passes scores at least as well as any holding nothing
    passing = set(sc.call(create_app(state), "/filter", sc.names_args(sc.pod(locality="required", shards="0-1"), ALL)).json()["NodeNames"])
    assert passing == set(ALL[1:6])
    assert min(got[n] for n in passing) >= max(got[n] for n, h in zip(ALL, held, strict=True) if h == 0)
