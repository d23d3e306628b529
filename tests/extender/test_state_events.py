"""Pod watch events that change nothing the cache holds: no load moves, caches stay valid.

A gated pod gets about five watch events (created, gate removed with an affinity, unschedulable,
bound, running); some change no field kbl reads. The cache must then keep its load and its
``load_version`` (what the cost and eligibility caches are keyed on), and every event that does
change something must still land. What the events leave out: the API server's other fields
(managedFields, status timestamps other than conditions), which kbl never reads.
"""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from extender.settings import ExtenderSettings
from extender.state import ClusterState
from kube.api import DATASETS, KBLS, NODES, PODS, WatchEvent
from tests.extender import scenarios as sc
from topology.pods import Pod


def fed_state() -> ClusterState:
    state = ClusterState(ExtenderSettings(inflight_ttl_s=10), expect=(NODES, PODS, DATASETS, KBLS))
    state.replace(NODES, sc.nodes())
    state.replace(DATASETS, [sc.dataset()])
    return state


def test_an_event_that_changes_no_field_kbl_reads_keeps_the_load_version() -> None:
    state = fed_state()
    pending = sc.pod("p", cpu="2")
    state.apply(WatchEvent("ADDED", pending), PODS)
    version = state.load_version
    released = copy.deepcopy(pending)  # what the gate controller's release patch changes
    released["metadata"]["resourceVersion"] = "7"
    released["spec"]["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    released["spec"]["schedulingGates"] = []
    state.apply(WatchEvent("MODIFIED", released), PODS)
    assert state.load_version == version
    assert [key for key, _ in state.waiting_pods()] == ["uid-p"]
    bound = copy.deepcopy(released)
    bound["spec"]["nodeName"] = "node-0-0-0"
    state.apply(WatchEvent("MODIFIED", bound), PODS)
    assert state.load_version > version
    ids = state.node_ids(["node-0-0-0"])
    assert state.load(ids)[0][0, 0] == 2000
    assert list(state.waiting_pods()) == []


def test_an_unchanged_event_of_a_bound_pod_still_clears_its_inflight_assignment() -> None:
    # the bind reply and the watch race: an assignment recorded for a pod whose record says
    # bound is refused, but one recorded before an unchanged event must still be cleared by it
    state = fed_state()
    bound = sc.pod("p", cpu="2", node_name="node-0-0-0")
    state.apply(WatchEvent("ADDED", bound), PODS)
    state._pods["uid-p"].pod = Pod.from_object(sc.pod("p", cpu="2"))  # as if the watch had not shown the binding
    state.record_assignment(sc.NAMESPACE, "p", "uid-p", "node-0-0-1")
    state._pods["uid-p"].pod = Pod.from_object(bound)
    assert state.inflight == 1
    state.apply(WatchEvent("MODIFIED", copy.deepcopy(bound)), PODS)
    assert state.inflight == 0
    ids = state.node_ids(["node-0-0-0", "node-0-0-1"])
    assert state.load(ids)[0][:, 0].tolist() == [2000, 0]


EDITS = st.lists(
    st.sampled_from(["resourceVersion", "affinity", "gate", "cpu", "node", "phase", "unschedulable", "label", "delete"]),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(EDITS)
def test_a_stream_of_events_leaves_the_same_load_as_a_fresh_cache_fed_the_last_one(edits: list[str]) -> None:
    state = fed_state()
    obj = sc.pod("p", cpu="1")
    state.apply(WatchEvent("ADDED", obj), PODS)
    gone = False
    for edit in edits:
        obj = copy.deepcopy(obj)
        if edit == "delete":
            state.apply(WatchEvent("DELETED", obj), PODS)
            gone = True
            continue
        if edit == "resourceVersion":
            obj["metadata"]["resourceVersion"] = str(len(edits))
        elif edit == "affinity":
            obj["spec"]["affinity"] = {"nodeAffinity": {}}
        elif edit == "gate":
            obj["spec"]["schedulingGates"] = [{"name": "kbl.io/narrowing"}]
        elif edit == "cpu":
            obj["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "3"
        elif edit == "node":
            obj["spec"]["nodeName"] = "node-1-0-0"
        elif edit == "phase":
            obj.setdefault("status", {})["phase"] = "Succeeded"
        elif edit == "unschedulable":
            obj.setdefault("status", {})["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
        elif edit == "label":
            obj["metadata"].setdefault("labels", {})["x"] = "y"
        version = state.load_version
        prior = state._pods["uid-p"].pod if "uid-p" in state._pods else None
        state.apply(WatchEvent("MODIFIED", obj), PODS)
        gone = False
        if prior is not None and prior == Pod.from_object(obj):
            assert state.load_version == version  # nothing kbl reads changed
        else:
            assert state.load_version > version
    fresh = fed_state()
    if not gone:
        fresh.apply(WatchEvent("ADDED", obj), PODS)
    ids = state.node_ids([n["metadata"]["name"] for n in sc.nodes()])
    assert state.load(ids)[0].tolist() == fresh.load(ids)[0].tolist()
    assert [k for k, _ in state.waiting_pods()] == [k for k, _ in fresh.waiting_pods()]
    assert list(state.holding_pods()) == list(fresh.holding_pods())
