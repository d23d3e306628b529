"""The candidate pools of the gate controller: the node ids of a set of racks or zones."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from extender.admission import apply_patch
from extender.narrowing import DomainIndex, GateController, gate_patch
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from kube.api import NODES, WatchEvent
from tests.extender import scenarios as sc
from tests.extender.fakes import PodWriter
from topology.snapshots import load_snapshot


def fed_state() -> ClusterState:
    state = ClusterState(ExtenderSettings())
    state.replace(NODES, sc.nodes())
    return state


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2), st.lists(st.integers(0, 12), max_size=8), st.integers(0, 3))
def test_a_pool_holds_exactly_the_node_ids_of_its_domains_sorted(level: int, wanted: list[int], removed: int) -> None:
    state = fed_state()
    index = DomainIndex()
    index.nodes_of(state, level, np.array([0], dtype=np.int64))  # built before the topology changes below
    for node in sc.nodes()[:removed]:  # removed nodes keep their ids: the index must follow
        state.apply(WatchEvent("DELETED", node), NODES)
    domain_of = state.cluster.domain_arrays()[level - 1]
    domains = np.array(sorted(set(wanted)), dtype=np.int64)
    pool = index.nodes_of(state, level, domains)
    expected = [i for i, d in enumerate(domain_of.tolist()) if d in set(wanted)]
    assert pool.dtype == np.int64
    assert pool.tolist() == expected


def test_a_released_pod_whose_candidate_leaves_after_a_quiet_step_is_still_deleted() -> None:
    # the candidates check is remembered between steps while no node event and no release came:
    # the node event after a remembered check must still be seen
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    writer = PodWriter()
    controller = GateController(state, writer, ExtenderSettings(narrow_release_timeout_s=3600.0), clock=lambda: 0.0)
    pod = sc.pod("p")
    pod["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}]
    controller.observe("ADDED", apply_patch(pod, gate_patch(pod)))
    assert controller.step().narrowed == 1
    controller.step()  # a quiet step: remembered
    controller.step()
    assert writer.deleted == []
    candidates = (
        controller._released[f"{sc.NAMESPACE}/p"].ids
        if f"{sc.NAMESPACE}/p" in controller._released
        else next(iter(controller._released.values())).ids
    )
    gone = next(n for n in sc.nodes() if state.cluster.node_id(n["metadata"]["name"]) == candidates[-1])
    state.apply(WatchEvent("DELETED", gone), NODES)
    controller.step()
    assert writer.deleted == ["p"]
