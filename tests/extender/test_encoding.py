"""The hot path's shortcuts give exactly what the plain code gives: encoded replies, cached ids."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from extender import messages
from extender.costs import CostTables
from extender.framework import Framework
from extender.state import ClusterState
from kube.api import NODES, PODS, WatchEvent
from tests.extender import scenarios as sc
from topology.errors import ProtocolError
from topology.examples import make_node
from topology.snapshots import load_snapshot


@pytest.mark.parametrize(
    "names",
    [
        [],
        ["a"],
        ["node-0", "node-10", "n"],
        ["a", 'quo"te', "ü-node", "back\\slash", "tab\tbed", "del\x7f", "nul\x00x", "brace}"],
        ["ü", "😀-node", "x"],
    ],
)
def test_priority_template_reads_back_as_the_plain_priority_list(names: list[str]) -> None:
    template = messages.PriorityTemplate(names)
    rng = np.random.default_rng(len(names))
    for scores in (np.zeros(len(names), dtype=np.int64), np.full(len(names), 10), rng.integers(0, 11, len(names))):
        body = template.body(scores)
        assert orjson.loads(body) == messages.priority_reply(names, scores.tolist())
        assert len(template) == len(names)


@given(st.lists(st.text(max_size=6), max_size=12), st.data())
def test_any_names_and_scores_encode_to_the_plain_priority_list(names: list[str], data: st.DataObject) -> None:
    scores = np.array(data.draw(st.lists(st.integers(0, 10), min_size=len(names), max_size=len(names))), dtype=np.int64)
    body = messages.PriorityTemplate(names, messages.names_key(names)).body(scores)
    assert orjson.loads(body) == messages.priority_reply(names, scores.tolist())


def test_lists_whose_names_hold_the_separator_never_share_a_remembered_reply_or_ids() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    fw = Framework(state)
    first, second = ["node-0-0-0\x00", "node-0-0-1"], ["node-0-0-0", "\x00node-0-0-1"]
    assert messages.names_key(first) == messages.names_key(second)
    assert not messages.key_is_exact(messages.names_key(first), 2)
    for names in (first, second, first):
        scores = np.array([3, 7], dtype=np.int64)
        assert orjson.loads(fw.reply(names, scores)) == messages.priority_reply(names, [3, 7])
        assert state.node_ids(names).tolist() == [-1 if (i := state.cluster.node_id(n)) is None else i for n in names]


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


def test_offered_lists_are_remembered_by_key_and_the_key_comes_from_parsing() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    names = ["node-0-0-0", "node-0-0-1", "nowhere"]
    args = messages.parse_args(orjson.loads(orjson.dumps({"Pod": sc.pod(), "NodeNames": names})))
    assert args.key == messages.names_key(names)
    assert state.node_ids(args.names, args.key) is state.node_ids(list(names))
    nodes = messages.parse_args({"Pod": sc.pod(), "Nodes": {"items": [{"metadata": {"name": n}} for n in names]}})
    assert nodes.key == args.key


@pytest.mark.parametrize("bad", [[1, "a"], ["a", None], [["a"]], [{"a": 1}]])
def test_node_names_that_are_not_all_strings_are_refused(bad: list[object]) -> None:
    with pytest.raises(ProtocolError, match="NodeNames"):
        messages.parse_args({"Pod": sc.pod(), "NodeNames": bad})
