"""Bind and preempt, and hotspot avoidance through the bind -> next pod loop."""

from __future__ import annotations

from typing import Any

from extender.app import create_app
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from kube.api import ApiError
from tests.extender import scenarios as sc
from tests.extender.fakes import RecordingApi
from topology.snapshots import load_snapshot

ALL = [f"node-{z}-{r}-{h}" for z in range(2) for r in range(2) for h in range(3)]


def state_for(settings: ExtenderSettings | None = None, **kw: Any) -> ClusterState:
    return ClusterState.from_snapshot(load_snapshot(sc.snapshot(**kw)), settings)


def bind_args(name: str, node: str) -> dict[str, str]:
    return {"PodName": name, "PodNamespace": sc.NAMESPACE, "PodUID": f"uid-{name}", "Node": node}


def test_bind_creates_the_binding_and_the_next_pod_sees_the_load_at_once() -> None:
    api = RecordingApi()
    state = state_for()
    app = create_app(state, api=api)
    big = sc.pod("big", cpu="60")  # nearly fills a 63.77-cpu node
    assert sc.call(app, "/filter", sc.names_args(big, ALL)).status_code == 200  # kube-scheduler filters first
    reply = sc.call(app, "/bind", bind_args("big", "node-0-0-0")).json()
    assert reply == {"Error": ""}
    assert api.bindings == [(sc.NAMESPACE, "big", "uid-big", "node-0-0-0")]
    assert state.inflight == 1
    nxt = sc.scores(sc.call(app, "/prioritize", sc.names_args(sc.pod("next", cpu="4"), ALL)))
    assert nxt["node-1-0-0"] == 10
    assert nxt["node-0-0-0"] < 10  # its locality faded: no room left


def test_bind_reports_api_errors_in_the_error_field() -> None:
    api = RecordingApi()
    api.fail_binding = ApiError(409, "pod already bound")
    state = state_for()
    reply = sc.call(create_app(state, api=api), "/bind", bind_args("p", "node-0-0-0")).json()
    assert "409" in reply["Error"]
    assert state.inflight == 0


def test_bind_in_snapshot_mode_only_records_and_disabled_bind_says_why() -> None:
    state = state_for()
    assert sc.call(create_app(state), "/bind", bind_args("p", "node-0-0-0")).json() == {"Error": ""}
    assert state.inflight == 1
    off = create_app(state_for(ExtenderSettings(bind_enabled=False)))
    assert "disabled" in sc.call(off, "/bind", bind_args("p", "node-0-0-0")).json()["Error"]


def test_many_pods_reading_the_same_shards_spread_once_the_holders_fill() -> None:
    state = state_for()
    app = create_app(state)
    placed: dict[str, int] = {}
    for i in range(12):  # each pod takes 16 of 63.77 cpus: 3 fit per node
        p = sc.pod(f"p{i}", cpu="16")
        got = sc.scores(sc.call(app, "/prioritize", sc.names_args(p, ALL)))
        best = max(got, key=lambda n: got[n])  # ties: first offered, like a deterministic scheduler
        assert sc.call(app, "/bind", {"PodName": f"p{i}", "PodNamespace": sc.NAMESPACE, "PodUID": f"uid-p{i}", "Node": best}).json() == {
            "Error": ""
        }
        placed[best] = placed.get(best, 0) + 1
    assert all(count <= 3 for count in placed.values()), placed  # never past capacity
    assert placed.get("node-0-0-0", 0) >= 2
    assert placed.get("node-1-0-0", 0) >= 2
    # the rest went next door (same rack as a holder), not across the zone
    assert set(placed) <= {"node-0-0-0", "node-0-0-1", "node-0-0-2", "node-1-0-0", "node-1-0-1", "node-1-0-2"}


def test_without_fading_the_holder_keeps_winning_until_it_is_full() -> None:
    state = state_for(ExtenderSettings(hotspot_threshold=1.0))
    app = create_app(state)
    first: list[str] = []
    for i in range(3):
        got = sc.scores(sc.call(app, "/prioritize", sc.names_args(sc.pod(f"p{i}", cpu="16"), ALL)))
        best = max(got, key=lambda n: got[n])
        sc.call(app, "/bind", {"PodName": f"p{i}", "PodNamespace": sc.NAMESPACE, "PodUID": f"uid-p{i}", "Node": best})
        first.append(best)
    assert first == ["node-0-0-0"] * 3


def test_preempt_keeps_victims_in_uid_form_and_drops_nodes_the_filter_rejects() -> None:
    state = state_for(extra_nodes=[sc.dedicated_node("ded-a", "alpha")])
    app = create_app(state)
    victim = sc.pod("victim", dataset_name=None, shards=None, node_name="node-0-0-0")
    body = {
        "Pod": sc.pod(locality="required"),
        "NodeNameToVictims": {
            "node-0-0-0": {"Pods": [victim], "NumPDBViolations": 1},
            "node-0-0-1": {"Pods": [victim], "NumPDBViolations": 0},  # holds no data: dropped
            "ded-a": {"Pods": [victim], "NumPDBViolations": 0},  # foreign dedicated node: dropped
            "node-1-0-0": {"Pods": [], "NumPDBViolations": 0},  # no victims: never returned
        },
        "NodeNameToMetaVictims": None,
    }
    reply = sc.call(app, "/preempt", body).json()
    assert reply == {"NodeNameToMetaVictims": {"node-0-0-0": {"Pods": [{"UID": "uid-victim"}], "NumPDBViolations": 1}}}
    meta = {
        "Pod": sc.pod(),
        "NodeNameToVictims": None,
        "NodeNameToMetaVictims": {
            "node-0-0-1": {"Pods": [{"UID": "u1"}, {"UID": "u2"}], "NumPDBViolations": 0},
            "ded-a": {"Pods": [{"UID": "u3"}], "NumPDBViolations": 0},
        },
    }
    reply = sc.call(app, "/preempt", meta).json()
    assert reply == {"NodeNameToMetaVictims": {"node-0-0-1": {"Pods": [{"UID": "u1"}, {"UID": "u2"}], "NumPDBViolations": 0}}}


def test_preempt_with_no_victims_at_all_answers_an_empty_map() -> None:
    reply = sc.call(create_app(state_for()), "/preempt", {"Pod": sc.pod(), "NodeNameToVictims": None, "NodeNameToMetaVictims": None})
    assert reply.json() == {"NodeNameToMetaVictims": {}}
