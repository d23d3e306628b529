"""The cache: incremental updates through apply/replace, in-flight expiry, readiness, events, metrics."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from extender.app import create_app
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from kube.api import DATASETS, KBLS, NODES, PODS, WatchEvent
from tests.extender import scenarios as sc
from tests.extender.fakes import RecordingApi
from topology import labels
from topology.errors import ObjectError
from topology.examples import make_node
from topology.nodes import Node
from topology.snapshots import load_snapshot

ALL = [f"node-{z}-{r}-{h}" for z in range(2) for r in range(2) for h in range(3)]


def fed_state(clock: Any = None) -> ClusterState:
    """A watch-mode state fed event by event, as an informer would."""
    kwargs = {"clock": clock} if clock else {}
    state = ClusterState(ExtenderSettings(inflight_ttl_s=10), expect=(NODES, PODS, DATASETS, KBLS), **kwargs)
    state.replace(NODES, sc.nodes())
    state.replace(DATASETS, [sc.dataset()])
    return state


def test_state_is_ready_only_after_every_resource_had_its_first_full_list() -> None:
    state = fed_state()
    app = create_app(state)
    assert sc.call(app, "/readyz", method="GET").status_code == 503
    state.replace(PODS, [])
    assert not state.ready
    state.replace(KBLS, [])
    assert sc.call(app, "/readyz", method="GET").status_code == 200
    assert sc.call(app, "/readyz", method="GET").status_code == 200
    snap = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    assert snap.ready


def test_node_heartbeat_does_not_invalidate_the_byte_tables() -> None:
    state = fed_state()
    version = state.cluster.version
    node = copy.deepcopy(sc.nodes()[0])
    node["status"]["conditions"][0]["lastHeartbeatTime"] = "2030-01-01T00:00:00Z"
    state.apply(WatchEvent("MODIFIED", node), NODES)
    assert state.cluster.version == version
    moved = copy.deepcopy(node)
    moved["metadata"]["labels"][labels.DEFAULT_RACK] = "rack-9"
    state.apply(WatchEvent("MODIFIED", moved), NODES)
    assert state.cluster.version > version


def test_watch_confirmation_replaces_the_inflight_assignment_and_deletion_frees_the_node() -> None:
    state = fed_state()
    pending = sc.pod("p", cpu="8")
    state.apply(WatchEvent("ADDED", pending), PODS)
    state.record_assignment(sc.NAMESPACE, "p", "uid-p", "node-0-0-0")
    ids = state.node_ids(["node-0-0-0"])
    assert state.inflight == 1
    assert state.load(ids)[0][0, 0] == 8000
    bound = sc.pod("p", cpu="8", node_name="node-0-0-0")
    state.apply(WatchEvent("MODIFIED", bound), PODS)
    assert state.inflight == 0
    assert state.load(ids)[0][0, 0] == 8000  # now counted once, as bound
    assert state.locality_bytes[0] == 2 * sc.SHARD_SIZE  # both shards read on the node, counted once
    state.apply(WatchEvent("DELETED", bound), PODS)
    assert state.load(ids)[0][0, 0] == 0


def test_inflight_assignments_expire_after_the_ttl() -> None:
    now = [0.0]
    state = fed_state(clock=lambda: now[0])
    state.record_assignment(sc.NAMESPACE, "p", "uid-p", "node-0-0-0")
    assert state.inflight == 1
    now[0] = 11.0
    assert state.inflight == 0
    assert state.load(state.node_ids(["node-0-0-0"]))[0].sum() == 0


def test_relist_deletes_what_disappeared_and_counts_the_relist() -> None:
    state = fed_state()
    state.replace(NODES, sc.nodes()[:6])
    assert len(state.cluster.nodes) == 6
    assert state.relists["nodes"] == 2
    assert state.node_ids(["node-1-0-0"]).tolist() == [-1]


def test_invalid_objects_are_counted_not_raised() -> None:
    state = fed_state()
    bad = sc.dataset("broken")
    bad["spec"]["shards"] = -1
    state.apply(WatchEvent("ADDED", bad), DATASETS)
    state.apply(WatchEvent("ADDED", {"metadata": {}}), NODES)
    assert state.rejected == {"DataSet": 1, "Node": 1}


def test_dataset_update_changes_scores_without_a_rebuild() -> None:
    state = fed_state()
    moved = sc.dataset()
    moved["status"]["placement"]["nodes"] = ["node-0-0-2", "node-1-0-2", "node-0-1-0", "node-1-1-0"]
    state.apply(WatchEvent("MODIFIED", moved), DATASETS)
    got = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(sc.pod(), ALL)))
    assert {n for n, s in got.items() if s == 10} == {"node-0-0-2", "node-1-0-2"}


def test_best_node_not_offered_raises_one_rate_limited_event_and_a_metric() -> None:
    api = RecordingApi()
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    app = create_app(state, api=api)
    far = ["node-0-1-1", "node-0-1-2"]  # neither holds shards 0-1 nor shares a rack with a holder
    for _ in range(3):
        sc.scores(sc.call(app, "/prioritize", sc.names_args(sc.pod(), far)))
    app.state.events.flush()
    assert len(api.events) == 1
    involved, reason, message, kind = api.events[0]
    assert involved["name"] == "reader"
    assert reason == "KblBetterDataNodeNotOffered"
    assert "percentageOfNodesToScore: 100" in message
    assert kind == "Warning"
    metrics = sc.call(app, "/metrics", method="GET").text
    assert "kbl_extender_better_node_not_offered_total 3.0" in metrics
    assert 'kbl_extender_events_total{outcome="rate_limited"} 2.0' in metrics
    # offering the holder: no event
    sc.call(app, "/prioritize", sc.names_args(sc.pod("other"), ["node-0-0-0", *far]))
    app.state.events.flush()
    assert len(api.events) == 1


def test_metrics_count_requests_latency_and_locality_by_level() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    app = create_app(state)
    sc.call(app, "/filter", sc.names_args(sc.pod(), ALL))
    sc.call(app, "/bind", {"PodName": "reader", "PodNamespace": sc.NAMESPACE, "PodUID": "uid-reader", "Node": "node-0-0-1"})
    sc.call(app, "/filter", content=b"nope")
    text = sc.call(app, "/metrics", method="GET").text
    assert 'kbl_extender_requests_total{code="200",verb="filter"} 1.0' in text
    assert 'kbl_extender_requests_total{code="400",verb="filter"} 1.0' in text
    assert 'kbl_extender_request_duration_seconds_count{verb="bind"} 1.0' in text
    assert 'kbl_extender_locality_bytes_total{level="rack"} 2.147483648e+10' in text
    assert 'kbl_extender_locality_bytes_total{level="node"} 0.0' in text
    assert np.isclose(state.locality_bytes.sum(), 2 * sc.SHARD_SIZE)


def _state_arrays(state: ClusterState) -> dict[str, Any]:
    ids = state.cluster.node_ids(sorted(state.cluster.nodes))
    return {
        "names": sorted(state.cluster.nodes),
        "nodes": [state.cluster.nodes[n] for n in sorted(state.cluster.nodes)],
        "alloc": state._alloc[ids].tolist(),
        "usable": state._usable[ids].tolist(),
        "owner": [state.kbl_name(i) if i >= 0 else None for i in state._owner[ids].tolist()],
        "group": [state.kbl_name(i) if i >= 0 else None for i in state._group[ids].tolist()],
        "taints": {state.cluster.name_of(i): t for i, t in state._taints.items()},
        "dedicated": {state.kbl_name(k): v for k, v in state._dedicated_nodes.items() if v},
        "domains": [_canonical(a[ids].tolist()) for a in state.cluster.domain_arrays()],
    }


def _canonical(ids: list[int]) -> list[int]:
    """Domain ids renumbered by first appearance: which nodes share a domain, not the numbering."""
    seen: dict[int, int] = {}
    return [seen.setdefault(i, len(seen)) for i in ids]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 12),
            st.sampled_from(["us-east-1a", "us-east-1b"]),
            st.sampled_from(["r1", "r2"]),
            st.sampled_from([None, "kbl-a", "kbl-b"]),
            st.booleans(),
            st.booleans(),
            st.sampled_from([4000, 8000, -1]),
        ),
        max_size=25,
    ),
    st.lists(st.integers(0, 12), max_size=5),
)
def test_a_first_list_written_in_bulk_gives_the_state_of_one_event_per_node(
    rows: list[tuple[int, str, str, str | None, bool, bool, int]], relisted: list[int]
) -> None:
    objects = []
    for i, zone, rack, kbl, ready, cordoned, cpu in rows:
        taints = [{"key": labels.DEDICATED_TAINT, "value": kbl, "effect": "NoSchedule"}] if kbl else []
        extra = {labels.KBL_LABEL: kbl} if kbl else None
        obj = make_node(f"n{i}", zone=zone, rack=rack, cpu_m=max(cpu, 0), taints=taints, extra_labels=extra)
        if cpu < 0:
            obj["status"]["allocatable"]["cpu"] = "lots"  # rejected with its reason, in both ways
        obj["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
        obj["spec"]["unschedulable"] = cordoned
        objects.append(obj)
    one_by_one, bulk = ClusterState(), ClusterState()
    for obj in objects:
        one_by_one.apply(WatchEvent("ADDED", obj), NODES)
    bulk.replace(NODES, objects)
    assert _state_arrays(bulk) == _state_arrays(one_by_one)
    assert bulk.rejected == one_by_one.rejected
    typed = ClusterState()  # a list typed as it was decoded (KubeClient.typed_lists): Nodes, and dicts where unusual
    typed_items: list[Any] = []
    for obj in objects:
        try:
            typed_items.append(Node.from_object(obj))
        except ObjectError:
            typed_items.append(obj)
    typed.replace(NODES, typed_items)
    assert _state_arrays(typed) == _state_arrays(one_by_one)
    assert typed.rejected == one_by_one.rejected
    # a relist of part of them afterwards: deletions and updates, as events would do
    again = [o for o in objects if int(o["metadata"]["name"][1:]) in relisted]
    names = {o["metadata"]["name"] for o in again}
    for name in sorted(set(one_by_one.cluster.nodes) - names):
        one_by_one.apply(WatchEvent("DELETED", {"metadata": {"name": name}}), NODES)
    for obj in again:
        one_by_one.apply(WatchEvent("MODIFIED", obj), NODES)
    bulk.replace(NODES, again)
    assert _state_arrays(bulk) == _state_arrays(one_by_one)
