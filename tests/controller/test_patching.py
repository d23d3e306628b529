"""Node patching: nodes labelled kbl.io/reboot-required are rebooted one at a time per group through the safe path.

A stateful fake stands for the reboot (the node goes NotReady when asked, Ready again when the
test says so); the reboot through SSM itself runs against moto with IAM enforced in
``tests/controller/providers/test_iam_enforced.py``. Leaves out: the node agent that sets the
label (it is set by hand here) and the placement reconciler (its ``kbl.io/data-drained`` answer
is written by the test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.patching import Patcher
from kube.api import KBLS, NODE_HOLDINGS, NODES, KubeApi
from tests.controller.test_baking import grown
from tests.controller.test_reconciling import World
from tests.placement.scenarios import kbl_object
from topology import labels
from topology.times import format_time


@dataclass
class FakeRebooter:
    """Reboots go NotReady at once and come back when :meth:`come_back` is called."""

    kube: KubeApi
    rebooted: list[str] = field(default_factory=list)
    down: list[str] = field(default_factory=list)

    def _node(self, provider_id: str) -> dict[str, Any]:
        (node,) = [n for n in self.kube.list(NODES)[0] if n["spec"].get("providerID") == provider_id]
        return node

    def _ready(self, node: dict[str, Any], status: str, at: float) -> None:
        node["status"]["conditions"] = [c for c in node["status"]["conditions"] if c["type"] != "Ready"]
        node["status"]["conditions"].append({"type": "Ready", "status": status, "lastTransitionTime": format_time(at)})
        self.kube.put(NODES, node)  # type: ignore[attr-defined]

    def reboot(self, provider_id: str) -> str:
        node = self._node(provider_id)
        self.rebooted.append(node["metadata"]["name"])
        self.down.append(provider_id)
        return f"cmd-{len(self.rebooted)}"

    def go_down(self, at: float) -> None:
        for provider_id in self.down:
            self._ready(self._node(provider_id), "False", at)

    def come_back(self, at: float) -> None:
        for provider_id in self.down:
            self._ready(self._node(provider_id), "True", at)
        self.down = []


def _nodes(world: World, group: str) -> list[dict[str, Any]]:
    return world.kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")[0]


def test_nodes_needing_a_reboot_are_rebooted_one_at_a_time_per_group_through_the_safe_path() -> None:
    world = World(ready_delay_s=60)
    group = grown(world)
    members = _nodes(world, group)
    names = sorted(n["metadata"]["name"] for n in members)
    for node in members:
        if node["metadata"]["name"] in names[:2]:
            node["metadata"]["labels"][labels.REBOOT_REQUIRED] = "true"
            world.kube.put(NODES, node)
    holder = names[0]
    world.kube.put(NODE_HOLDINGS, {"apiVersion": "kbl.io/v1alpha1", "kind": "NodeHoldings", "metadata": {"name": holder}})
    rebooter = FakeRebooter(world.kube)
    patcher = Patcher(world.kube, rebooter, lambda: world.now)

    def step() -> None:
        patcher.run_once([group])
        world.now += 30
        out = [n for n in _nodes(world, group) if n["spec"].get("unschedulable")]
        assert len(out) <= 1, [n["metadata"]["name"] for n in out]  # one node of the group out at a time
        for node in out:
            marks = node["metadata"]["annotations"]
            assert (marks[labels.DRAIN], marks[labels.DO_NOT_DISRUPT]) == ("reboot", "true")

    for _ in range(4):
        step()
    assert rebooter.rebooted == []  # the holder's data has not left: no reboot
    drained = world.kube.get(NODES, holder)
    assert drained is not None
    drained["metadata"]["annotations"][labels.DATA_DRAINED] = format_time(world.now)
    world.kube.put(NODES, drained)
    step()
    assert rebooter.rebooted == [holder]
    rebooter.go_down(world.now)
    for _ in range(3):
        step()
    assert rebooter.rebooted == [holder]  # waits for the node to come back; the next one waits too
    rebooter.come_back(world.now)
    step()
    back = world.kube.get(NODES, holder)
    assert back is not None
    assert not back["spec"].get("unschedulable")
    assert labels.REBOOT_REQUIRED not in back["metadata"]["labels"]
    for mark in (labels.DRAIN, labels.DO_NOT_DISRUPT, labels.REBOOTING):
        assert mark not in back["metadata"]["annotations"]
    for _ in range(3):  # the second labelled node holds no data: cordon, evict, reboot
        step()
    assert rebooter.rebooted == [holder, names[1]]
    rebooter.go_down(world.now)
    rebooter.come_back(world.now + 60)
    world.now += 60
    step()
    step()
    assert rebooter.rebooted == [holder, names[1]]  # the unlabelled third node is never rebooted
    assert not any(n["spec"].get("unschedulable") for n in _nodes(world, group))


def test_a_reboot_that_never_happened_is_sent_again_after_the_timeout() -> None:
    """A controller killed after recording the reboot and before sending it, or a lost command."""
    world = World(ready_delay_s=60)
    group = grown(world)
    (node, *_) = _nodes(world, group)
    node["metadata"]["labels"][labels.REBOOT_REQUIRED] = "true"
    world.kube.put(NODES, node)
    rebooter = FakeRebooter(world.kube)
    patcher = Patcher(world.kube, rebooter, lambda: world.now, reboot_timeout_s=900)
    patcher.run_once([group])  # cordon
    patcher.run_once([group])  # evict (nothing) and reboot
    assert len(rebooter.rebooted) == 1
    rebooter.down = []  # the reboot was lost: the node stays Ready from before
    world.now += 600
    patcher.run_once([group])
    assert len(rebooter.rebooted) == 1
    world.now += 400
    patcher.run_once([group])
    assert len(rebooter.rebooted) == 2


def test_the_controller_loop_reboots_labelled_nodes_when_given_a_rebooter() -> None:
    world = World(ready_delay_s=60)
    group = grown(world)
    world.kube.put(KBLS, kbl_object("k", min_size=3))
    (node, *_) = _nodes(world, group)
    node["metadata"]["labels"][labels.REBOOT_REQUIRED] = "true"
    world.kube.put(NODES, node)
    rebooter = FakeRebooter(world.kube)
    config_off = world.controller()
    config_off.reconcile_once()
    assert config_off.patcher is None
    from controller import Controller, ControllerSettings

    ctl = Controller(world.kube, world.cloud, ControllerSettings(cluster_name="test"), clock=lambda: world.now, rebooter=rebooter)
    for _ in range(3):
        ctl.reconcile_once()
    assert rebooter.rebooted == [node["metadata"]["name"]]
