"""Capacity that exists (issue 22, items 4 and 5): the real controller on the in-memory API and
the stateful fake cloud, on a simulated clock.

The fake plays AWS as the controller meets it: instances join ``ready_delay_s`` after launch
(never, for ``inf``), a group launches its types in order and the next when one has no
capacity (an ASG's prioritized overrides, an EKS group's ``instanceTypes``), and every failed
launch is reported on the group with its code, type and time (as scaling activities report
them). Left out: the minutes AWS takes to surface a failure (the fake reports it at once), spot
interruptions, and price moves during a run. A stand-in scheduler binds a pending pod to a
Ready, untainted node of its KBL's groups with room (one 3-CPU pod per xlarge node).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller import Controller, ControllerSettings
from controller.providers import ProviderError
from controller.providers.fake import FakeProvider
from kube.api import DATASETS, KBLS, NODES, PODS
from kube.memory import MemoryApi
from placement import capacity as cap
from tests.placement.scenarios import T0, base_nodes, kbl_object, placed_dataset, pod_object
from topology import labels

ZONE_A = cap.group_name("default/k", "us-east-1a")


class Cloud:
    """One cluster (six general nodes in us-east-1a/b/c, a DataSet on zone a's) and a fake cloud."""

    def __init__(self, **fake: Any) -> None:
        self.now = T0
        self.kube = MemoryApi()
        for node in base_nodes():
            self.kube.put(NODES, node)
        self.kube.put(DATASETS, placed_dataset("reads", [["gen-a0", "gen-a1"], ["gen-a1", "gen-a0"]]))
        fake.setdefault("ready_delay_s", 60.0)
        self.cloud = FakeProvider(lambda: self.now, **fake)
        self.controller = Controller(self.kube, self.cloud, ControllerSettings(cluster_name="t"), clock=lambda: self.now)

    def kbl(self, **spec: Any) -> None:
        obj = kbl_object("k", instance_types=spec.pop("instance_types", ("m6i.xlarge",)), max_size=10)
        obj["spec"]["nodeGroup"].update(spec)
        self.kube.put(KBLS, obj)

    def pods(self, n: int, cpu: str = "3") -> None:
        for i in range(n):
            self.kube.put(PODS, pod_object(f"p{i}", kbl="k", cpu=cpu, dataset="reads"))

    def step(self, seconds: float = 30.0) -> cap.Plan:
        plan = self.controller.reconcile_once()
        self.now += seconds
        self.kube.sync_nodes(self.cloud.node_objects())
        self.schedule()
        return plan

    def group_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.kube.list(NODES)[0] if labels.NODE_GROUP_LABEL in n["metadata"]["labels"]]

    def schedule(self) -> None:
        pods = self.kube.list(PODS)[0]
        used = {p["spec"].get("nodeName") for p in pods}
        for pod in pods:
            if pod["spec"].get("nodeName"):
                continue
            for node in self.group_nodes():
                name = node["metadata"]["name"]
                ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
                tainted = any(t["key"] in cap.launches.BROKEN_TAINTS for t in node["spec"].get("taints") or ())
                if ready and not tainted and name not in used:
                    self.kube.create_binding("default", pod["metadata"]["name"], pod["metadata"]["uid"], name)
                    used.add(name)
                    break

    def pending(self) -> int:
        return sum(1 for p in self.kube.list(PODS)[0] if not p["spec"].get("nodeName"))

    def running_on(self) -> list[tuple[str, str, str]]:
        """(zone, capacity type, instance type) of the node each running pod is on."""
        groups = {g.name: g for g in self.cloud.list_groups()}
        nodes = {n["metadata"]["name"]: n for n in self.kube.list(NODES)[0]}
        out = []
        for pod in self.kube.list(PODS)[0]:
            node = nodes.get(pod["spec"].get("nodeName") or "")
            if node is not None:
                node_labels = node["metadata"]["labels"]
                group = groups[node_labels[labels.NODE_GROUP_LABEL]]
                out.append((group.zone, group.capacity_type, node_labels[labels.INSTANCE_TYPE]))
        return sorted(out)

    def status(self, group: str) -> Mapping[str, Any]:
        obj = self.kube.get(KBLS, "k", namespace="default")
        assert obj is not None
        return next((e for e in obj["status"].get("nodeGroups", []) if e["name"] == group), {})


def _break(cloud: Cloud, node: dict[str, Any]) -> None:
    """The node lifecycle controller's view of a node whose kubelet stopped reporting."""
    node["status"]["conditions"] = [{"type": "Ready", "status": "Unknown", "lastTransitionTime": "2026-12-06T00:00:00Z"}]
    node["spec"]["taints"] = [*node["spec"].get("taints", []), {"key": labels.UNREACHABLE_TAINT, "effect": "NoSchedule"}]
    cloud.kube.put(NODES, node)


def test_a_broken_node_never_blocks_growth() -> None:
    world = Cloud()
    world.kbl()
    world.pods(1)
    for _ in range(4):
        world.step()
    assert world.pending() == 0
    assert len(world.group_nodes()) == 1
    (node,) = world.group_nodes()
    world.kube.delete(PODS, "p0", "default")  # its work done: the node has room again
    _break(world, node)
    world.pods(1)  # a new pod that fits the broken node's "room"
    for _ in range(4):
        world.step()
    assert world.pending() == 0  # it runs, on a new node
    assert sum(g.desired for g in world.cloud.list_groups()) == 2
    # The same pod beside a Ready node with room asks for nothing (the scheduler will bind it).
    ready = Cloud()
    ready.kbl()
    ready.pods(1)
    for _ in range(4):
        ready.step()
    ready.kube.delete(PODS, "p0", "default")
    ready.kube.put(PODS, pod_object("p1", kbl="k", cpu="3", dataset="reads"))
    ready.controller.reconcile_once()
    assert sum(g.desired for g in ready.cloud.list_groups()) == 1


def test_a_request_that_never_joins_is_given_up_after_the_max_provision_time_and_the_next_option_grows() -> None:
    world = Cloud(ready_delay_s={ZONE_A: float("inf"), "*": 60.0})  # zone a's instances launch but never join
    world.kbl()
    world.pods(2)
    waited = 0.0
    while world.pending() and waited < 1200:
        world.step(30.0)
        waited += 30.0
    groups = {g.zone: g for g in world.cloud.list_groups()}
    assert world.pending() == 0
    # Given up after 15 minutes (not before: the first 14 minutes asked nothing else).
    assert 900 <= waited <= 900 + 60 + 3 * 30
    assert groups["us-east-1a"].desired == 0  # the requests that never joined are cancelled
    assert {z for z, _, _ in world.running_on()} == {"us-east-1b"}  # a neighbour zone
    entry = world.status(ZONE_A)
    assert entry["launchFailures"] == 1
    assert entry["backoffUntil"] > world.now
    creates = [c.args["spec"] for c in world.cloud.calls_of("create_group")]
    assert [s.zone for s in creates] == ["us-east-1a", "us-east-1b"]
    events = [e["reason"] for e in world.kube.events]
    assert "NodeGroupBackedOff" in events


def test_the_neighbour_zone_plan_says_what_it_costs_the_data() -> None:
    world = Cloud(capacity={("us-east-1a", "m6i.xlarge"): 0})
    world.kbl()
    world.pods(1)
    plans = [world.step() for _ in range(3)]
    creates = [a for p in plans for a in p.of(cap.CreateNodeGroup) if isinstance(a, cap.CreateNodeGroup)]
    neighbour = next(c for c in creates if c.zone != "us-east-1a")
    assert neighbour.cross_zone_bytes == 20 * 2**30  # both 10 GiB shards live only in zone a
    assert "neighbour zone" in neighbour.reason
    assert "20.0 GiB" in neighbour.reason


def test_a_capacity_error_on_the_first_type_falls_back_to_the_next_type_then_capacity_type_then_zone() -> None:
    types = ("m6i.xlarge", "m6i.2xlarge")
    a = "us-east-1a"
    cases: list[tuple[dict[tuple[str, ...], int], tuple[str, str, str]]] = [
        ({}, (a, "SPOT", "m6i.xlarge")),
        ({(a, "m6i.xlarge", "SPOT"): 0}, (a, "SPOT", "m6i.2xlarge")),  # next type, inside the group
        ({(a, "m6i.xlarge", "SPOT"): 0, (a, "m6i.2xlarge", "SPOT"): 0}, (a, "ON_DEMAND", "m6i.xlarge")),  # capacity type
        ({(a, "m6i.xlarge"): 0, (a, "m6i.2xlarge"): 0}, ("us-east-1b", "SPOT", "m6i.xlarge")),  # zone
    ]
    for capacity, expected in cases:
        world = Cloud(capacity=capacity)
        world.kbl(instance_types=types, capacityTypes=["SPOT", "ON_DEMAND"])
        world.pods(1)
        for _ in range(8):
            world.step()
        assert world.running_on() == [expected], capacity
        assert world.pending() == 0
        # Nothing launched that did not serve: at most the one node the pod runs on.
        assert len(world.group_nodes()) == 1, capacity


def test_a_kbl_that_allows_one_capacity_type_never_falls_back_to_the_other() -> None:
    world = Cloud(capacity={("us-east-1a", "m6i.xlarge"): 0})
    world.kbl()  # ON_DEMAND only
    world.pods(1)
    for _ in range(6):
        world.step()
    assert {g.capacity_type for g in world.cloud.list_groups()} == {"ON_DEMAND"}


def test_backoff_grows_per_group_and_resets_on_success() -> None:
    zones = ("us-east-1a", "us-east-1b", "us-east-1c")
    world = Cloud(capacity={(z, "m6i.xlarge"): 0 for z in zones})  # no capacity anywhere
    world.kbl()
    world.pods(1)
    backoffs: list[float] = []
    seen = 0
    while len(backoffs) < 5:
        world.step(30.0)
        entry = world.status(ZONE_A)
        if entry.get("launchFailures", 0) > seen:
            seen = entry["launchFailures"]
            backoffs.append(round(entry["backoffUntil"] - entry["lastLaunchFailure"]))
    assert backoffs == [300, 600, 1200, 1800, 1800]  # Cluster Autoscaler's 5 min doubling to 30 min, per group
    for zone in zones[1:]:
        assert world.status(cap.group_name("default/k", zone))["launchFailures"] >= 1  # each group its own count
    world.cloud.capacity.clear()  # capacity returns
    for _ in range(80):
        world.step(30.0)
        if not world.pending() and world.status(ZONE_A).get("launchFailures") == 0:
            break
    assert world.pending() == 0
    succeeded = [cap.group_name("default/k", z) for z, _, _ in world.running_on()]
    assert world.status(succeeded[0])["launchFailures"] == 0  # reset once a node launched after the failure joined


def test_a_creation_the_cloud_refuses_for_good_backs_the_group_off_and_the_next_zone_grows() -> None:
    world = Cloud()
    world.kbl()
    world.pods(1)
    refusal = ProviderError(
        "InvalidParameterException", "Your requested instance type (m6i.xlarge) is not supported in us-east-1a", retryable=False
    )
    world.cloud.inject("create_group", refusal, times=1)
    for _ in range(6):
        world.step()
    assert world.pending() == 0
    assert {z for z, _, _ in world.running_on()} == {"us-east-1b"}
    assert world.status(ZONE_A)["launchFailures"] == 1
    assert len(world.cloud.calls_of("create_group")) == 2  # the refused one is not asked again while backed off
