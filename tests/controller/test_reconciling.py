"""The controller on a fake Kubernetes API and the fake cloud: grow, restart safety, safe shrink."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from controller import Controller, ControllerSettings
from controller.providers import NodeGroupSpec, ProviderError
from controller.providers.fake import FakeProvider
from kube.api import DATASETS, KBLS, NODES, PODS
from placement import capacity as cap
from placement import removal_is_safe
from tests.dataplane.reconciler.worlds import World as DataWorld
from tests.dataplane.reconciler.worlds import dataset
from tests.kube.fakekube import FakeKube
from tests.placement.scenarios import T0, base_nodes, kbl_object, placed_dataset, pod_object
from topology import labels
from topology.datasets import Replicas
from topology.nodes import Node


class KilledError(Exception):
    """The controller process dies here."""


class World:
    """One cluster and one cloud, shared by every controller a test starts."""

    def __init__(self, ready_delay_s: float = 90.0) -> None:
        self.now = T0
        self.kube = FakeKube()
        self.cloud = FakeProvider(lambda: self.now, ready_delay_s=ready_delay_s)
        for node in base_nodes():
            self.kube.put(NODES, node)

    def controller(self, hook: Callable[[str], None] | None = None, **settings: Any) -> Controller:
        config = ControllerSettings(cluster_name="test", **settings)
        return Controller(self.kube, self.cloud, config, clock=lambda: self.now, step_hook=hook)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.kube.sync_nodes(self.cloud.node_objects())

    def schedule_pending(self) -> int:
        """A stand-in for kube-scheduler: bind pending pods to free group nodes, one per node."""
        pods, _ = self.kube.list(PODS)
        nodes, _ = self.kube.list(NODES)
        used = {p["spec"].get("nodeName") for p in pods}
        free = [
            n["metadata"]["name"] for n in nodes if "kbl.io/node-group" in n["metadata"]["labels"] and n["metadata"]["name"] not in used
        ]
        bound = 0
        for pod in pods:
            if not pod["spec"].get("nodeName") and free:
                self.kube.create_binding(pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"], free.pop(0))
                bound += 1
        return bound


def test_first_unschedulable_pod_of_a_kbl_triggers_a_cloud_request_without_waiting_for_resync() -> None:
    world = World()
    world.kube.put(KBLS, kbl_object("genomics"))
    ctl = world.controller(resync_s=60.0, batch_window_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for _ in range(100):  # the first reconcile ran (nothing to do)
            if ctl.reconciles:
                break
            stop.wait(0.02)
        world.kube.put(PODS, pod_object("p0", kbl="genomics"))
        world.kube.put(PODS, pod_object("p1", kbl="genomics"))
        for _ in range(250):
            if world.cloud.calls_of("create_group"):
                break
            stop.wait(0.02)
    finally:
        stop.set()
        thread.join(5)
    creates = world.cloud.calls_of("create_group")
    assert len(creates) == 1
    assert creates[0].args["spec"].desired == 1  # both 1-CPU pods batched onto one node


STEPS = ("before-intent", "after-intent", "after-create", "after-status")


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_any_step_of_a_group_creation_a_new_controller_converges_without_duplicates(step: str) -> None:
    world = World()
    world.kube.put(KBLS, kbl_object("genomics"))
    for i in range(3):
        world.kube.put(PODS, pod_object(f"p{i}", kbl="genomics", cpu="3"))

    def die(at: str) -> None:
        if at == step:
            raise KilledError(at)

    with pytest.raises(KilledError):
        world.controller(hook=die).reconcile_once()
    # A new process: nothing carried over but the cluster and the cloud.
    for _ in range(3):
        world.controller().reconcile_once()
        world.advance(30)
    groups = world.cloud.list_groups()
    assert [(g.name, g.desired) for g in groups] == [(cap.group_name("default/genomics", "us-east-1a"), 3)]
    tokens = {c.args["token"] for c in world.cloud.calls_of("create_group")}
    assert len(tokens) == 1
    kbl = world.kube.get(KBLS, "genomics")
    assert kbl is not None
    entries = kbl["status"]["nodeGroups"]
    assert [(e["name"], e["phase"]) for e in entries] == [(groups[0].name, "Active")]


def test_group_of_a_deleted_kbl_is_not_leaked() -> None:
    world = World()
    world.kube.put(KBLS, kbl_object("tmp"))
    world.kube.put(PODS, pod_object("p", kbl="tmp"))
    world.controller().reconcile_once()
    world.kube.delete(KBLS, "tmp")
    world.kube.delete(PODS, "p")
    for _ in range(4):
        world.advance(100)
        world.controller().reconcile_once()
    assert world.cloud.list_groups() == []


def test_pods_get_nodes_then_idle_nodes_leave_and_cluster_autoscaler_is_kept_away() -> None:
    world = World(ready_delay_s=90)
    world.kube.put(KBLS, kbl_object("genomics"))
    for i in range(2):
        world.kube.put(PODS, pod_object(f"p{i}", kbl="genomics", cpu="3"))
    ctl = world.controller()
    ctl.reconcile_once()
    world.advance(100)
    assert world.schedule_pending() == 2
    ctl.reconcile_once()
    nodes = [n for n in world.kube.list(NODES)[0] if n["metadata"]["labels"].get("kbl.io/kbl") == "genomics"]
    assert len(nodes) == 2
    assert all(n["metadata"]["annotations"].get(cap.CA_SCALE_DOWN_DISABLED) == "true" for n in nodes)
    for i in range(2):
        world.kube.delete(PODS, f"p{i}")
    for _ in range(4):
        world.advance(200)
        ctl.reconcile_once()
    assert [g.desired for g in world.cloud.list_groups()] == [0]
    assert len(world.cloud.calls_of("remove_instance")) == 2


def test_scale_down_of_a_data_holding_node_waits_until_the_placement_reconciler_moved_its_pieces() -> None:
    """The placement is moved by the placement reconciler, never by hand (issue 12).

    This replaces a test that rewrote ``status.placement`` by hand after the controller asked for
    a repair. The companion controller's drain path is being rewritten to the data-plane contract
    (it sets ``kbl.io/drain`` and waits for ``kbl.io/data-drained``), so its side is played here
    by the contract alone: the node is annotated ``kbl.io/drain``; the reconciler copies every
    piece off it make before break (simulated agents report them ready one by one) and only then
    writes ``kbl.io/data-drained``, after which removing the node loses nothing.
    """
    world = DataWorld(nodes=base_nodes())
    world.add_dataset(dataset("reads", shards=6, redundancy=Replicas(1), failure_domain="host"))
    reconciler = world.reconciler()
    world.settle(reconciler)
    reads = world.typed("reads")
    assert reads.placement is not None
    leaving = reads.placement.nodes[0]
    nodes = [Node.from_object(o) for o in world.api.list(NODES)[0]]
    assert not removal_is_safe(nodes, reads.spec, reads.placement, [leaving], min_spare=0)
    world.annotate(leaving, {labels.DRAIN: "scale-down"})
    notes: dict[str, str] = {}
    for _ in range(50):
        reconciler.reconcile_once()
        node = world.api.get(NODES, leaving)
        assert node is not None
        notes = node["metadata"]["annotations"]
        if labels.DATA_DRAINED in notes:
            break
        assert min(world.copies(world.typed("reads"))) >= 1, "a shard's only ready copy was released before its new one"
        world.agent_step(per_step=1)
    assert notes[labels.LAST_PIECES] == "0"
    reads = world.typed("reads")
    assert reads.placement is not None
    assert leaving not in reads.placement.nodes
    assert removal_is_safe(nodes, reads.spec, reads.placement, [leaving], min_spare=0)
    world.remove_node(leaving)  # the controller may now remove it
    assert world.copies(reads) == [1] * 6


def test_scale_down_of_the_last_replica_drains_waits_for_the_move_then_proceeds() -> None:
    world = World(ready_delay_s=30)
    world.kube.put(KBLS, kbl_object("data"))
    world.kube.put(PODS, pod_object("p", kbl="data"))
    ctl = world.controller()
    ctl.reconcile_once()
    world.advance(60)
    node = next(n["metadata"]["name"] for n in world.kube.list(NODES)[0] if n["metadata"]["labels"].get("kbl.io/kbl") == "data")
    world.kube.put(DATASETS, placed_dataset("reads", [[node], ["gen-a0"]], replicas=1))
    world.kube.delete(PODS, "p")
    for _ in range(3):
        world.advance(300)
        ctl.reconcile_once()
    obj = world.kube.get(NODES, node)
    assert obj is not None
    assert obj["spec"]["unschedulable"] is True
    assert obj["metadata"]["annotations"][labels.DRAIN]  # the placement reconciler is asked to move the data
    assert not world.cloud.calls_of("remove_instance")
    assert any(e["reason"] == "ScaleDownWaitsForData" for e in world.kube.events)
    # Standing in for the placement reconciler: the piece moved; the node may now go.
    world.kube.put(DATASETS, placed_dataset("reads", [["gen-b0"], ["gen-a0"]], replicas=1))
    for _ in range(3):
        world.advance(300)
        ctl.reconcile_once()
    assert len(world.cloud.calls_of("remove_instance")) == 1


def test_eviction_refused_by_a_pod_disruption_budget_keeps_the_node() -> None:
    world = World(ready_delay_s=30)
    world.kube.put(KBLS, kbl_object("k"))
    world.kube.put(PODS, pod_object("p", kbl="k"))
    ctl = world.controller()
    ctl.reconcile_once()
    world.advance(60)
    node = next(n["metadata"]["name"] for n in world.kube.list(NODES)[0] if n["metadata"]["labels"].get("kbl.io/kbl") == "k")
    world.kube.delete(PODS, "p")
    guarded = pod_object("guarded", kbl="other", node=node, labels={"app": "db"})
    world.kube.put(PODS, guarded)
    world.kube.pdbs.append(({"app": "db"}, 1))
    for _ in range(3):
        world.advance(300)
        ctl.reconcile_once()
    assert world.kube.get(PODS, "guarded") is not None
    assert not world.cloud.calls_of("remove_instance")
    assert any("PodDisruptionBudget" in e["message"] for e in world.kube.events)


def test_throttled_cloud_calls_are_retried_and_sizes_stay_within_budget() -> None:
    world = World()
    world.kube.put(KBLS, kbl_object("k", max_size=4))
    for i in range(10):
        world.kube.put(PODS, pod_object(f"p{i}", kbl="k", cpu="3"))
    world.cloud.inject("create_group", ProviderError("ThrottlingException", "slow down", retryable=True), times=1)
    for _ in range(4):
        world.controller().reconcile_once()  # the first attempt fails; later ones converge
        world.advance(10)
    assert [g.desired for g in world.cloud.list_groups()] == [4]


def test_two_controllers_racing_never_exceed_the_global_budget() -> None:
    world = World()
    for name in ("a", "b", "c"):
        world.kube.put(KBLS, kbl_object(name, max_size=10))
        for i in range(6):
            world.kube.put(PODS, pod_object(f"{name}{i}", kbl=name, cpu="3"))
    budget = cap.CapacitySettings(max_nodes_total=8)
    ctls = [world.controller(capacity=budget), world.controller(capacity=budget)]
    threads = [threading.Thread(target=lambda c=c: [c.reconcile_once() for _ in range(5)]) for c in ctls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(g.desired for g in world.cloud.list_groups()) <= 8


def test_dry_run_changes_nothing() -> None:
    world = World()
    world.kube.put(KBLS, kbl_object("k"))
    world.kube.put(PODS, pod_object("p", kbl="k"))
    before = world.kube.version
    plan = world.controller(dry_run=True).reconcile_once()
    assert [a.kind for a in plan.actions] == ["CreateNodeGroup"]
    assert world.kube.version == before
    assert world.cloud.calls_of("create_group") == []


def test_each_group_is_detached_from_cluster_autoscaler_once() -> None:
    world = World()
    world.kube.put(KBLS, kbl_object("k"))
    world.kube.put(PODS, pod_object("p", kbl="k"))
    for _ in range(3):
        world.controller().reconcile_once()
    assert [c.args["name"] for c in world.cloud.calls_of("detach_from_cluster_autoscaler")] == [cap.group_name("default/k", "us-east-1a")]
    kbl = world.kube.get(KBLS, "k")
    assert kbl is not None
    assert kbl["status"]["nodeGroups"][0]["clusterAutoscalerDetached"] is True


def test_a_stale_plan_executed_after_another_controller_grew_stays_within_the_global_budget() -> None:
    world = World()
    for name in ("a", "b"):
        world.kube.put(KBLS, kbl_object(name, max_size=10))
        group = cap.group_name(f"default/{name}", "us-east-1a")
        world.cloud.create_group(NodeGroupSpec(group, f"default/{name}", "us-east-1a", "m6i.xlarge", 2, 10), "t")
    budget = cap.CapacitySettings(max_nodes_total=8)
    first, second = world.controller(capacity=budget), world.controller(capacity=budget)
    for i in range(6):
        world.kube.put(PODS, pod_object(f"a{i}", kbl="a", cpu="3"))
    stale_state = first.observe()
    stale = first.plan(stale_state)  # a: 2 -> 6, planned while b was idle
    for i in range(6):
        world.kube.put(PODS, pod_object(f"b{i}", kbl="b", cpu="3"))
    world.kube.delete(KBLS, "a")  # the second controller does not see a's need at all
    second.reconcile_once()  # b: 2 -> 6
    first.actor.execute(stale, stale_state)
    assert sum(g.desired for g in world.cloud.list_groups()) <= 8
    assert any("budget" in why for _, why in first.actor.log.refused)


class CountingKube(FakeKube):
    """The in-memory API counting its lists, per resource."""

    def __init__(self) -> None:
        super().__init__()
        self.lists: dict[str, int] = {}

    def list(self, resource: Any, *, namespace: str | None = None, label_selector: str | None = None) -> Any:
        self.lists[resource.plural] = self.lists.get(resource.plural, 0) + 1
        return super().list(resource, namespace=namespace, label_selector=label_selector)


def test_the_loop_reads_through_informers_and_never_relists_on_an_event() -> None:
    world = World()
    kube = CountingKube()
    for node in base_nodes():
        kube.put(NODES, node)
    kube.put(KBLS, kbl_object("genomics"))
    settings = ControllerSettings(cluster_name="test", resync_s=60.0, batch_window_s=0.05)
    ctl = Controller(kube, world.cloud, settings, clock=lambda: world.now)
    stop = threading.Event()
    thread = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for i in range(5):
            kube.put(PODS, pod_object(f"p{i}", kbl="genomics"))
            for _ in range(100):
                if ctl.reconciles > i + 1:
                    break
                stop.wait(0.02)
    finally:
        stop.set()
        thread.join(10)
    assert ctl.reconciles >= 5  # event-driven reconciles happened ...
    # ... on one list each
    assert kube.lists == {"nodes": 1, "pods": 1, "datasets": 1, "placementslices": 1, "kbls": 1, "nodeholdings": 1, "jobs": 1}
    assert world.cloud.calls_of("create_group")
