"""Rolling a group to a new image goes through the one safe path, one node at a time (controller/rolling.py).

The cloud is the stateful fake (instances join ``ready_delay_s`` after launch; an instance keeps
the image it started from, as an Auto Scaling instance keeps its launch-template version); the
Auto Scaling group itself runs against moto in ``test_rolling_asg.py``. The test plays the
placement reconciler (:class:`Reconciler`): a node asked to drain gets its pieces copied to a
staying node of the group ``drain_s`` later, then ``kbl.io/data-drained``; it leaves out the
copies themselves and the node agents' reports (every group node counts as running an agent).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.baking import prototype_image
from controller.locking import GroupLocks
from controller.patching import Patcher
from controller.providers.queueing import QueueProvider, Worker
from controller.providers.retrying import Backoff
from controller.rolling import Roller
from kube.api import DATASETS, KBLS, NODE_HOLDINGS, NODES, KubeApi
from tests.aws import Aws
from tests.controller.providers.test_queueing import queues
from tests.controller.test_baking import grown
from tests.controller.test_patching import FakeRebooter
from tests.controller.test_reconciling import World
from tests.placement.scenarios import kbl_object, placed_dataset
from topology import labels
from topology.times import format_time, parse_time


class KilledError(Exception):
    """The controller process died at this step."""


def _members(world: World, group: str) -> list[dict[str, Any]]:
    return members_of(world.kube, group)


def members_of(kube: KubeApi, group: str) -> list[dict[str, Any]]:
    return kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")[0]


def rows_of(kube: KubeApi, name: str) -> list[list[str]]:
    obj = kube.get(DATASETS, name, namespace="default")
    assert obj is not None
    placement = obj["status"]["placement"]
    return [[placement["nodes"][i] for i in row] for row in placement["shards"]]


def _rows(world: World, name: str) -> list[list[str]]:
    return rows_of(world.kube, name)


@dataclass
class Reconciler:
    """Plays the placement reconciler: pieces off a draining node onto a staying one, then data-drained."""

    kube: KubeApi
    clock: Callable[[], float]
    group: str
    drain_s: float = 60.0
    asked: dict[str, float] = field(default_factory=dict)

    def step(self) -> None:
        kube, now = self.kube, self.clock()
        members = members_of(kube, self.group)
        for node in members:
            name = node["metadata"]["name"]
            kube.put(NODE_HOLDINGS, {"apiVersion": "kbl.io/v1alpha1", "kind": "NodeHoldings", "metadata": {"name": name}})  # type: ignore[attr-defined]
        staying = sorted(n["metadata"]["name"] for n in members if not n["spec"].get("unschedulable"))
        for node in members:
            name = node["metadata"]["name"]
            marks = node["metadata"].get("annotations") or {}
            if labels.DRAIN not in marks:
                self.asked.pop(name, None)
                continue
            since = self.asked.setdefault(name, now)
            answered = parse_time(marks.get(labels.DATA_DRAINED))
            if now - since < self.drain_s or (answered is not None and answered >= since):
                continue
            rows = rows_of(kube, "reads")
            for row in rows:
                if name in row:
                    target = next(s for s in staying if s not in row)  # a copy first (make before break)
                    row[row.index(name)] = target
            kube.put(DATASETS, placed_dataset("reads", rows))  # type: ignore[attr-defined]
            node["metadata"]["annotations"] = {**marks, labels.DATA_DRAINED: format_time(now), labels.LAST_PIECES: "0"}
            kube.put(NODES, node)  # type: ignore[attr-defined]


def rolled_world(n: int = 3, max_size: int = 5) -> tuple[World, str, Reconciler]:
    world = World(ready_delay_s=60)
    group = grown(world, n)
    cloud = world.cloud.groups[group]
    cloud.spec = dataclasses.replace(cloud.spec, max_size=max_size)
    names = sorted(node["metadata"]["name"] for node in _members(world, group))
    world.kube.put(DATASETS, placed_dataset("reads", [[names[i], names[(i + 1) % n]] for i in range(n)]))
    reconciler = Reconciler(world.kube, lambda: world.now, group)
    reconciler.step()  # every node runs an agent from the start
    return world, group, reconciler


def run_roll(world: World, group: str, reconciler: Reconciler, roller: Callable[[], Roller], passes: int = 80) -> list[str]:
    """Passes of a roller (a new one after a kill: a restart) with invariants checked after each."""
    size = world.cloud.groups[group].desired
    gone: list[str] = []
    current = roller()
    for _ in range(passes):
        before = {n["metadata"]["name"]: n for n in _members(world, group)}
        try:
            current.run_once([("default/k", group)])
        except KilledError:
            current = roller()  # restarted: nothing but the cluster and the cloud remembers
        world.advance(30)
        reconciler.step()
        members = _members(world, group)
        names = {n["metadata"]["name"] for n in members}
        for name in set(before) - names:  # left the cluster: only once its data had left
            marks = before[name]["metadata"].get("annotations") or {}
            answered = parse_time(marks.get(labels.DATA_DRAINED))
            asked = reconciler.asked.get(name)
            assert answered is not None, f"{name} was terminated before its data left"
            assert asked is not None
            assert answered >= asked, f"{name} was terminated before its data left"
            assert all(name not in row for row in _rows(world, "reads")), f"{name} still held pieces"
            gone.append(name)
        available = [n for n in members if not n["spec"].get("unschedulable")]  # joined nodes of the fake are Ready
        assert size - len(available) <= 1, "two nodes of the group out at once"
        for row in _rows(world, "reads"):
            assert len(set(row)) == 2, f"a shard lost a holder: {row}"
            assert set(row) <= names, f"a shard lost a holder: {row}"
    return gone


def _roll_to_new_image(world: World, group: str) -> str:
    version = world.cloud.roll_group(group, "ami-new", "next-nodes", "tok")  # new nodes only: the controller rolls
    assert version == "2"
    return version


def test_a_roll_replaces_each_data_holding_node_only_after_its_data_left_one_at_a_time() -> None:
    world, group, reconciler = rolled_world()
    old = {n["metadata"]["name"] for n in _members(world, group)}
    _roll_to_new_image(world, group)
    gone = run_roll(world, group, reconciler, lambda: Roller(world.kube, world.cloud, lambda: world.now))
    assert set(gone) == old
    assert world.cloud.outdated_instances(group) == []
    assert {i.image for i in world.cloud.groups[group].instances} == {"ami-new"}
    assert world.cloud.groups[group].desired == 3  # surged by one each time, back after each termination
    assert len(_members(world, group)) == 3
    assert GroupLocks(world.kube).holder("default/k", group) is None
    sizes = [c.args["desired"] for c in world.cloud.calls_of("set_size")]
    assert sizes == [4, 4, 4]


def test_a_roll_at_the_groups_maximum_drains_terminates_then_replaces_one_at_a_time() -> None:
    world, group, reconciler = rolled_world(n=3, max_size=3)
    _roll_to_new_image(world, group)
    gone = run_roll(world, group, reconciler, lambda: Roller(world.kube, world.cloud, lambda: world.now))
    assert len(gone) == 3
    assert world.cloud.outdated_instances(group) == []
    assert world.cloud.groups[group].desired == 3
    assert [c.args["desired"] for c in world.cloud.calls_of("set_size")] == [3, 3, 3]  # back to size after each decrement


@pytest.mark.parametrize("max_size", [4, 3])  # with a surge node, and at the group's maximum
@pytest.mark.parametrize("kill_at", range(1, 22, 2))
def test_a_controller_killed_at_any_step_of_a_roll_continues_and_never_has_two_nodes_out(kill_at: int, max_size: int) -> None:
    world, group, reconciler = rolled_world(n=3, max_size=max_size)
    _roll_to_new_image(world, group)
    steps = {"n": 0}

    def guard(step: str) -> None:
        steps["n"] += 1
        if steps["n"] == kill_at:
            raise KilledError(step)

    gone = run_roll(world, group, reconciler, lambda: Roller(world.kube, world.cloud, lambda: world.now, guard=guard))
    assert steps["n"] >= kill_at, "the roll ended before the kill point: the case tests nothing"
    assert len(gone) == 3
    assert world.cloud.outdated_instances(group) == []
    assert world.cloud.groups[group].desired == 3
    assert GroupLocks(world.kube).holder("default/k", group) is None


def test_a_roll_waits_for_a_reboot_in_its_group_and_a_reboot_waits_for_the_roll() -> None:
    world, group, reconciler = rolled_world()
    first = sorted(n["metadata"]["name"] for n in _members(world, group))[0]
    node = world.kube.get(NODES, first)
    assert node is not None
    node["metadata"]["labels"][labels.REBOOT_REQUIRED] = "true"
    world.kube.put(NODES, node)
    rebooter = FakeRebooter(world.kube)
    patcher = Patcher(world.kube, rebooter, lambda: world.now)
    roller = Roller(world.kube, world.cloud, lambda: world.now)
    owners = {group: "default/k"}
    patcher.run_once([group], owners)  # the reboot takes the group first
    _roll_to_new_image(world, group)
    for _ in range(6):
        assert roller.run_once([("default/k", group)]) == {}  # the roll waits for the reboot
        world.advance(30)
        reconciler.step()
        patcher.run_once([group], owners)
        assert world.cloud.calls_of("set_size") == []
        assert world.cloud.calls_of("remove_instance") == []
    assert rebooter.rebooted == [first]
    rebooter.go_down(world.now)
    world.advance(30)
    rebooter.come_back(world.now)
    patcher.run_once([group], owners)  # back: the lock is released
    assert GroupLocks(world.kube).holder("default/k", group) is None
    roller.run_once([("default/k", group)])  # the roll takes the group
    assert GroupLocks(world.kube).holder("default/k", group) is not None
    # a node that needs a reboot now waits until the roll has replaced its node
    second = sorted(n["metadata"]["name"] for n in _members(world, group))[1]
    node = world.kube.get(NODES, second)
    assert node is not None
    node["metadata"]["labels"][labels.REBOOT_REQUIRED] = "true"
    world.kube.put(NODES, node)
    for _ in range(20):
        if GroupLocks(world.kube).holder("default/k", group) is None:
            break
        patcher.run_once([group], owners)
        out = [n for n in _members(world, group) if n["spec"].get("unschedulable")]
        assert len(out) <= 1
        assert not any(labels.REBOOTING in n["metadata"]["annotations"] for n in out)
        roller.run_once([("default/k", group)])
        world.advance(30)
        reconciler.step()
    assert GroupLocks(world.kube).holder("default/k", group) is None
    assert rebooter.rebooted == [first]


def test_a_bake_waits_while_a_roll_holds_its_group() -> None:
    world, group, _reconciler = rolled_world()
    _roll_to_new_image(world, group)
    roller = Roller(world.kube, world.cloud, lambda: world.now)
    roller.run_once([("default/k", group)])
    held = GroupLocks(world.kube).holder("default/k", group)
    assert held is not None
    assert held["by"] == "roll"
    result = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now, min_ready_s=0)
    assert result.skipped.startswith("waiting")
    assert "roll" in result.skipped
    assert not any(labels.PROTOTYPE in (n["metadata"].get("annotations") or {}) for n in _members(world, group))
    assert world.cloud.calls_of("create_image") == []


def test_the_controller_loop_rolls_a_group_whose_template_points_at_a_new_image() -> None:
    world, group, reconciler = rolled_world()
    world.kube.put(KBLS, kbl_object("k", min_size=3))  # keeps its three nodes without pods
    old = {n["metadata"]["name"] for n in _members(world, group)}
    _roll_to_new_image(world, group)
    controller = world.controller()
    for _ in range(60):
        controller.reconcile_once()
        world.advance(30)
        reconciler.step()
        if not world.cloud.outdated_instances(group) and GroupLocks(world.kube).holder("default/k", group) is None:
            break
    assert not old & {n["metadata"]["name"] for n in _members(world, group)}
    assert {i.image for i in world.cloud.groups[group].instances} == {"ami-new"}
    assert world.cloud.groups[group].desired == 3
    controller.reconcile_once()  # found rolled at this version: not asked again until it changes
    asked = len(world.cloud.calls_of("outdated_instances"))
    for _ in range(3):
        controller.reconcile_once()
    assert len(world.cloud.calls_of("outdated_instances")) == asked
    world.cloud.roll_group(group, "ami-newer", "next-nodes", "tok-2")
    controller.reconcile_once()
    assert len(world.cloud.calls_of("outdated_instances")) == asked + 1


def test_queue_mode_rolls_through_the_worker_one_node_at_a_time(aws: Aws, no_sleep: Backoff) -> None:
    """The controller side holds no cloud rights: outdated instances come back in the worker's
    report, the surge, the termination and the sizes go as requests (SQS on moto in server mode);
    the worker runs them on the stateful fake."""
    world, group, reconciler = rolled_world()
    main, reply, _ = queues(aws)
    controller_side = QueueProvider(aws.client("sqs"), main, reply, clock=lambda: world.now, backoff=no_sleep)
    worker = Worker(aws.client("sqs"), main, reply, world.cloud, max_nodes_total=10, visibility_timeout_s=0,
                    backoff=no_sleep, clock=lambda: world.now)  # fmt: skip
    old = {n["metadata"]["name"] for n in _members(world, group)}
    _roll_to_new_image(world, group)
    worker.report()
    assert len(controller_side.outdated_instances(group)) == 3
    roller = Roller(world.kube, controller_side, lambda: world.now)
    size = 3
    for _ in range(80):
        roller.run_once([("default/k", group)])
        worker.poll_once()
        worker.report()
        world.advance(30)
        reconciler.step()
        members = _members(world, group)
        available = [n for n in members if not n["spec"].get("unschedulable")]
        assert size - len(available) <= 1, "two nodes of the group out at once"
        if not world.cloud.outdated_instances(group) and GroupLocks(world.kube).holder("default/k", group) is None:
            break
    assert not old & {n["metadata"]["name"] for n in _members(world, group)}
    assert {i.image for i in world.cloud.groups[group].instances} == {"ami-new"}
    assert world.cloud.groups[group].desired == 3
    assert worker.stats.failed == 0
