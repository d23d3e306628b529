"""The gate controller as ``kbl serve --narrowing`` runs it, against kmock's API emulator.

:func:`extender.narrowing.start` elects a leader on a Lease, watches pods through its own
informer and acts only through the API (:class:`~kube.client.KubeClient` over a real socket):
merge patches of gated pods, deletes of stuck ones. The extender's cache is built from the
scenario snapshot (what its node, DataSet and pod informers would hold); a node dying is its
node watch's DELETED event. The test plays the Job controller and kube-scheduler only where it
says so. What the emulator leaves out: the API server's validation of pod updates (the
driver-based tests in test_narrowing.py check the patch against those rules) and ``resourceVersion``
preconditions on pods.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from benchmarks.driving import NodeAffinity
from extender.narrowing import GATE, GateController, is_gated, start
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from kube.api import NODES, PODS, WatchEvent
from kube.client import KubeClient
from kube.leading import LeaderElectionSettings
from tests.extender import scenarios as sc
from tests.kube.emulators import Emulator
from topology.snapshots import load_snapshot

FAST = LeaderElectionSettings(
    lease_name="kbl-narrowing", namespace="kbl-system", lease_duration_s=1.5, renew_deadline_s=1.0, retry_period_s=0.1
)
POD_PATH = f"/api/v1/namespaces/{sc.NAMESPACE}/pods"


def wait_for(check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def gated(name: str) -> dict[str, Any]:
    """A Job's preferred data pod as the webhook admitted it with narrowing on: gated."""
    pod = sc.pod(name, shards="2")
    pod["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}]
    pod["spec"]["schedulerName"] = "kbl-scheduler"
    pod["spec"]["schedulingGates"] = [{"name": GATE}]
    return pod


@pytest.fixture
def running(emulator: Emulator) -> Iterator[tuple[GateController, ClusterState, KubeClient]]:
    emulator.serve_replace("coordination.k8s.io", "v1", "leases")
    settings = ExtenderSettings(narrowing=True, narrow_candidates=2, narrow_release_timeout_s=60.0)
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()), settings)
    api = KubeClient.from_url(emulator.url)
    stop = threading.Event()
    controller, informers = start(state, api, stop, election=FAST, period_s=0.1)
    try:
        wait_for(controller.alive)
        yield controller, state, api
    finally:
        stop.set()
        for informer in informers:
            informer.stop()


def test_a_gated_pod_is_narrowed_by_name_and_ungated_in_one_patch_through_the_api(
    emulator: Emulator, running: tuple[GateController, ClusterState, KubeClient]
) -> None:
    controller, state, api = running
    emulator.post(POD_PATH, gated("p1"))
    pod = wait_for(lambda: (p := api.get(PODS, "p1", namespace=sc.NAMESPACE)) and not is_gated(p) and p)
    names = NodeAffinity.of(pod).names
    assert names is not None
    assert len(names) == 2  # narrow_candidates
    assert names <= set(state.cluster.nodes)
    patches = [r for r in emulator.requests("patch") if r.url.path.endswith("/pods/p1")]
    assert len(patches) == 1  # gate removed and affinity set in the same write
    assert patches[0].headers["Content-Type"] == "application/merge-patch+json"
    wait_for(lambda: controller.totals.narrowed == 1)  # totals are added when the step ends, after its patch


def test_a_pod_narrowed_to_a_node_that_dies_is_deleted_and_its_owner_routed_after(
    emulator: Emulator, running: tuple[GateController, ClusterState, KubeClient]
) -> None:
    controller, state, api = running
    emulator.post(POD_PATH, gated("p2"))
    pod = wait_for(lambda: (p := api.get(PODS, "p2", namespace=sc.NAMESPACE)) and not is_gated(p) and p)
    names = NodeAffinity.of(pod).names
    assert names
    dead = sorted(names)[0]
    node_obj = next(n for n in sc.nodes() if n["metadata"]["name"] == dead)
    with state.lock:  # the node informer's DELETED event
        state.apply(WatchEvent("DELETED", node_obj), NODES)
    wait_for(lambda: api.get(PODS, "p2", namespace=sc.NAMESPACE) is None)  # deleted through the API
    wait_for(lambda: controller.totals.deleted == 1)
    wait_for(lambda: controller.remembers("job-uid"))
    assert not controller.should_gate(gated("p3"))  # the Job's replacement is routed, not gated again


def test_a_gated_replacement_of_a_remembered_owner_is_released_unchanged(
    emulator: Emulator, running: tuple[GateController, ClusterState, KubeClient]
) -> None:
    controller, state, api = running
    emulator.post(POD_PATH, gated("p4"))
    wait_for(lambda: (p := api.get(PODS, "p4", namespace=sc.NAMESPACE)) and not is_gated(p))
    node_obj = next(
        n for n in sc.nodes() if n["metadata"]["name"] in (NodeAffinity.of(api.get(PODS, "p4", namespace=sc.NAMESPACE) or {}).names or ())
    )
    with state.lock:
        state.apply(WatchEvent("DELETED", node_obj), NODES)
    wait_for(lambda: api.get(PODS, "p4", namespace=sc.NAMESPACE) is None)
    # another replica's webhook (which does not share this memory) gated the replacement anyway
    emulator.post(POD_PATH, gated("p4-r1"))
    pod = wait_for(lambda: (p := api.get(PODS, "p4-r1", namespace=sc.NAMESPACE)) and not is_gated(p) and p)
    assert NodeAffinity.of(pod).required is None  # unchanged: no narrowing a second time
    wait_for(lambda: controller.totals.released_unchanged == 1)


def test_when_the_controller_stops_the_webhook_stops_gating(emulator: Emulator) -> None:
    emulator.serve_replace("coordination.k8s.io", "v1", "leases")
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()), ExtenderSettings(narrowing=True))
    stop = threading.Event()
    controller, informers = start(state, KubeClient.from_url(emulator.url), stop, election=FAST, period_s=0.1)
    wait_for(controller.alive)
    assert controller.should_gate(gated("x"))
    stop.set()
    for informer in informers:
        informer.stop()
    wait_for(lambda: not controller.alive(), timeout_s=FAST.lease_duration_s + 5)
    assert not controller.should_gate(gated("x"))  # new pods are routed as before


def test_a_gated_pod_is_narrowed_as_soon_as_the_watch_sees_it_not_at_the_next_period(emulator: Emulator) -> None:
    emulator.serve_replace("coordination.k8s.io", "v1", "leases")
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()), ExtenderSettings(narrowing=True))
    api = KubeClient.from_url(emulator.url)
    stop = threading.Event()
    controller, informers = start(state, api, stop, election=FAST, period_s=60.0)
    try:
        wait_for(controller.alive)
        time.sleep(0.5)  # the runner is now waiting out its 60 s period
        emulator.post(POD_PATH, gated("fast"))
        wait_for(lambda: (p := api.get(PODS, "fast", namespace=sc.NAMESPACE)) and not is_gated(p), timeout_s=10.0)
    finally:
        stop.set()
        for informer in informers:
            informer.stop()
