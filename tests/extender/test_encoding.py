"""The hot path's shortcuts give exactly what the plain code gives: encoded replies, cached ids."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from extender import messages
from extender.costs import CostTables
from extender.state import ClusterState
from kube.api import NODES, PODS, WatchEvent
from tests.extender import scenarios as sc
from topology.errors import ProtocolError
from topology.examples import make_node
from topology.snapshots import load_snapshot


def test_priority_body_is_byte_for_byte_the_encoded_priority_list() -> None:
    names = ["a", 'quo"te', "ü-node", "unknown"]
    entries = np.empty((3, messages.MAX_PRIORITY + 1), dtype=object)
    for i, name in enumerate(names[:3]):
        entries[i] = messages.priority_entries(name)
    scores = np.array([10, 0, 7, 3], dtype=np.int64)
    for ids in (np.array([0, 1, 2, -1]), np.array([0, 1, 2, 2])):
        offered = names if ids[-1] < 0 else [*names[:3], names[2]]
        body = messages.priority_body(offered, ids, scores, entries)
        assert body == orjson.dumps(messages.priority_reply(offered, scores.tolist()))
        assert [e["Host"] for e in orjson.loads(body)] == offered
    assert messages.priority_body([], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), entries) == b"[]"


def test_remembered_candidate_lists_follow_node_removal_and_return() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    names = ["node-0-0-0", "node-0-0-1", "nowhere", "node-0-0-0"]
    first = state.node_ids(names)
    assert state.node_ids(list(names)) is first  # equal list: the remembered ids
    assert first[2] == -1
    assert first[0] == first[3] >= 0
    state.apply(WatchEvent("DELETED", {"metadata": {"name": "node-0-0-1"}}), NODES)
    assert state.node_ids(list(names)).tolist() == [first[0], -1, -1, first[0]]
    state.apply(WatchEvent("ADDED", make_node("node-0-0-1", zone="us-east-1a", rack="rack-0")), NODES)
    assert state.node_ids(list(names)).tolist() == first.tolist()
    other = ["node-0-0-0", "node-0-0-2", "nowhere", "node-0-0-0"]  # same length and ends, differs inside
    assert state.node_ids(other)[1] == state.cluster.node_id("node-0-0-2")


def test_utilization_cache_sees_every_load_change() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    request = np.array([1000.0, 0.0, 1.0])
    nid = state.cluster.node_id("node-0-0-0")
    assert nid is not None
    costs = CostTables(state)
    before = float(costs.utilization(request)[nid])
    state.apply(WatchEvent("ADDED", sc.pod("x", cpu="8")), PODS)
    state.record_assignment(sc.NAMESPACE, "x", "uid-x", "node-0-0-0")
    after = float(costs.utilization(request)[nid])
    assert after > before


def test_flat_reply_fragments_grow_with_new_nodes_and_match_the_plain_encoding() -> None:
    names = [f"n{i}" for i in range(5)] + ['quo"te', "ü-node"]
    fragments = messages.PriorityFragments()
    for count in (1, 2, 5, 7):  # grows past its capacity twice
        fragments.ensure(count, names.__getitem__)
        ids = np.arange(count, dtype=np.int64)[::-1].copy()
        scores = np.arange(count, dtype=np.int64) % (messages.MAX_PRIORITY + 1)
        offered = [names[i] for i in ids.tolist()]
        assert fragments.body(offered, ids, scores) == orjson.dumps(messages.priority_reply(offered, scores.tolist()))
    unknown = np.array([0, -1], dtype=np.int64)
    assert fragments.body(["n0", "new"], unknown, np.array([3, 4])) == orjson.dumps(messages.priority_reply(["n0", "new"], [3, 4]))
    assert fragments.body([], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)) == b"[]"


@pytest.mark.parametrize("bad", [[1, "a"], ["a", None], [["a"]], [{"a": 1}]])
def test_node_names_that_are_not_all_strings_are_refused(bad: list[object]) -> None:
    with pytest.raises(ProtocolError, match="NodeNames"):
        messages.parse_args({"Pod": sc.pod(), "NodeNames": bad})
