"""The controller through the real KubeClient against kmock's Kubernetes emulator over HTTP."""

from __future__ import annotations

import threading

import pytest

from controller import Controller, ControllerSettings
from controller.providers.fake import FakeProvider
from kube.api import KBLS, NODES
from kube.client import KubeClient
from placement import capacity as cap
from tests.kube.emulators import Emulator
from tests.placement.scenarios import T0, base_nodes, kbl_object, placed_dataset, pod_object
from topology import labels
from topology.examples import make_node
from topology.nodes import Node
from topology.times import format_time


class KilledError(Exception):
    """The controller process dies here."""


def seed(emulator: Emulator, pods: int = 3) -> None:
    for node in base_nodes():
        emulator.post("/api/v1/nodes", node)
    emulator.post("/apis/kbl.io/v1alpha1/namespaces/default/kbls", kbl_object("genomics"))
    for i in range(pods):
        emulator.post("/api/v1/namespaces/default/pods", pod_object(f"p{i}", kbl="genomics", cpu="3"))


def test_unschedulable_pods_seen_over_http_become_one_group_and_a_kbl_status(emulator: Emulator) -> None:
    seed(emulator)
    cloud = FakeProvider(lambda: T0)
    client = KubeClient.from_url(emulator.url)
    try:
        plan = Controller(client, cloud, ControllerSettings(cluster_name="emu"), clock=lambda: T0).reconcile_once()
        assert [a.kind for a in plan.actions] == ["CreateNodeGroup"]
        assert [(g.name, g.desired) for g in cloud.list_groups()] == [(cap.group_name("default/genomics", "us-east-1a"), 3)]
        kbl = client.get(KBLS, "genomics", namespace="default")
        assert kbl is not None
        assert kbl["status"]["nodeGroups"][0]["phase"] == "Active"
    finally:
        client.close()


@pytest.mark.parametrize("step", ["after-intent", "after-create"])
def test_restart_over_http_converges_without_a_second_group(emulator: Emulator, step: str) -> None:
    seed(emulator)
    cloud = FakeProvider(lambda: T0)

    def die(at: str) -> None:
        if at == step:
            raise KilledError(at)

    first = KubeClient.from_url(emulator.url)
    with pytest.raises(KilledError):
        Controller(first, cloud, ControllerSettings(cluster_name="emu"), clock=lambda: T0, step_hook=die).reconcile_once()
    first.close()
    second = KubeClient.from_url(emulator.url)
    try:
        for _ in range(2):
            Controller(second, cloud, ControllerSettings(cluster_name="emu"), clock=lambda: T0).reconcile_once()
        assert len(cloud.list_groups()) == 1
        assert len({c.args["token"] for c in cloud.calls_of("create_group")}) == 1
        kbl = second.get(KBLS, "genomics", namespace="default")
        assert kbl is not None
        assert [e["phase"] for e in kbl["status"]["nodeGroups"]] == ["Active"]
    finally:
        second.close()


@pytest.mark.parametrize("typed", [False, True], ids=["raw lists", "typed lists"])
def test_watch_over_http_triggers_a_reconcile_for_a_new_unschedulable_pod(emulator: Emulator, typed: bool) -> None:
    seed(emulator, pods=0)
    cloud = FakeProvider(lambda: T0)
    client = KubeClient.from_url(emulator.url)
    settings = ControllerSettings(cluster_name="emu", resync_s=60, batch_window_s=0.05)
    ctl = Controller(client, cloud, settings, clock=lambda: T0, lists=client.typed_reader() if typed else None)
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if ctl.reconciles:
                break
            stop.wait(0.02)
        stop.wait(0.3)  # the watches are open
        emulator.post("/api/v1/namespaces/default/pods", pod_object("late", kbl="genomics"))
        for _ in range(300):
            if cloud.calls_of("create_group"):
                break
            stop.wait(0.02)
    finally:
        stop.set()
        thread.join(10)
        client.close()
    assert len(cloud.calls_of("create_group")) == 1


def test_a_typed_reader_serves_nodes_typed_and_the_controller_plans_as_from_raw_lists(emulator: Emulator) -> None:
    """``kbl controller`` lists through :meth:`KubeClient.typed_reader`: the same plan and node-ready times."""
    seed(emulator, pods=4)
    group = cap.group_name("default/genomics", "us-east-1a")
    for i, ready_after in enumerate((80, 110)):
        node = make_node(f"grp-{i}", zone="us-east-1a", rack="rack-7", extra_labels={labels.EKS_NODE_GROUP_LABEL: group})
        node["metadata"]["creationTimestamp"] = format_time(T0 - 600)
        node["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": format_time(T0 - 600 + ready_after)}]
        emulator.post("/api/v1/nodes", node)
    emulator.post("/apis/kbl.io/v1alpha1/namespaces/default/datasets", placed_dataset("reads", [["gen-a0", "grp-0"], ["grp-1", "gen-b0"]]))
    client = KubeClient.from_url(emulator.url)
    try:
        nodes, _ = client.typed_reader().list(NODES)
        assert all(isinstance(n, Node) for n in nodes)
        assert all(isinstance(n, dict) for n in client.list(NODES)[0])  # the client itself still lists raw objects
        plans, ready = [], []
        for lists in (None, client.typed_reader()):
            ctl = Controller(
                client, FakeProvider(lambda: T0), ControllerSettings(cluster_name="emu", dry_run=True), clock=lambda: T0, lists=lists
            )
            state = ctl.observe()
            plans.append(ctl.plan(state).to_json_lines())
            ready.append(dict(state.node_ready_s))
        assert plans[0] == plans[1]
        assert "CreateNodeGroup" in plans[1]
        assert ready[0] == ready[1]
        assert ready[1][group] == 110
    finally:
        client.close()
