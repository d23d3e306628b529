"""A data-holding EKS managed group rolls blue/green through the one safe path (controller/bluegreen.py).

The cloud is the stateful fake playing an EKS provider (``replaces_nodes_on_roll``: EKS would
replace the nodes itself on a version update; ``create_green_group`` as ``create_nodegroup`` from
the old group's description; instances join ``ready_delay_s`` after launch and keep their image; a
new group is ``CREATING`` for two minutes; a terminated instance's Node leaves at the next sync, a
deleted group at once, where EKS takes minutes in ``DELETING``). :class:`Mover` plays the placement
reconciler over the KBL's nodes of both groups: a node asked to drain gets its pieces copied to a
staying node ``drain_s`` later, then ``kbl.io/data-drained``; the annotation is cleared once the
node no longer drains, as the reconciler does. It leaves out the copies themselves and the node
agents' reports (every node of the KBL counts as running an agent). The IAM side runs against moto
in ``providers/test_iam_enforced.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.baking import ImageResult, prototype_image
from controller.bluegreen import BLUE_GREEN, green_name
from controller.locking import GroupLocks
from controller.providers import ProviderError
from controller.providers.queueing import QueueProvider, Worker
from controller.providers.retrying import Backoff
from controller.rolling import Roller
from kube.api import DATASETS, KBLS, NODE_HOLDINGS, NODES, KubeApi
from placement import capacity as cap
from tests.aws import Aws
from tests.controller.providers.test_queueing import queues
from tests.controller.test_baking import grown, last_image
from tests.controller.test_reconciling import World
from tests.controller.test_rolling import KilledError, members_of, rows_of
from tests.placement.scenarios import kbl_object, placed_dataset
from topology import labels
from topology.times import format_time, parse_time

KBL = "default/k"


def kbl_nodes(kube: KubeApi) -> list[dict[str, Any]]:
    return list(kube.list(NODES, label_selector=f"{labels.KBL_LABEL}=k")[0])


@dataclass
class Mover:
    """Plays the placement reconciler over the KBL's nodes (module docstring)."""

    kube: KubeApi
    clock: Callable[[], float]
    drain_s: float = 60.0
    asked: dict[str, float] = field(default_factory=dict)

    def step(self) -> None:
        kube, now = self.kube, self.clock()
        members = kbl_nodes(kube)
        for node in members:
            name = node["metadata"]["name"]
            kube.put(NODE_HOLDINGS, {"apiVersion": "kbl.io/v1alpha1", "kind": "NodeHoldings", "metadata": {"name": name}})  # type: ignore[attr-defined]
        staying = sorted(n["metadata"]["name"] for n in members if not n["spec"].get("unschedulable"))
        for node in members:
            name = node["metadata"]["name"]
            marks = node["metadata"].get("annotations") or {}
            if labels.DRAIN not in marks:
                self.asked.pop(name, None)
                if labels.DATA_DRAINED in marks:  # no longer draining: the reconciler clears its answer
                    node["metadata"]["annotations"] = {k: v for k, v in marks.items() if k not in (labels.DATA_DRAINED, labels.LAST_PIECES)}
                    kube.put(NODES, node)  # type: ignore[attr-defined]
                continue
            since = self.asked.setdefault(name, now)
            answered = parse_time(marks.get(labels.DATA_DRAINED))
            if now - since < self.drain_s or (answered is not None and answered >= since):
                continue
            if kube.get(DATASETS, "reads", namespace="default") is not None:
                rows = rows_of(kube, "reads")
                for row in rows:
                    if name in row:
                        row[row.index(name)] = next(s for s in staying if s not in row)  # a copy first (make before break)
                kube.put(DATASETS, placed_dataset("reads", rows))  # type: ignore[attr-defined]
            node["metadata"]["annotations"] = {**marks, labels.DATA_DRAINED: format_time(now), labels.LAST_PIECES: "0"}
            kube.put(NODES, node)  # type: ignore[attr-defined]


def eks_world(n: int = 3, min_size: int = 0) -> tuple[World, str, Mover]:
    world = World(ready_delay_s=60)
    blue = grown(world, n)
    if min_size:
        world.kube.put(KBLS, kbl_object("k", min_size=min_size))
    world.cloud.replaces_nodes_on_roll = True  # EKS: a version update replaces the nodes without their data
    world.cloud.create_delay_s = 120.0  # a new managed group is CREATING a while (EKS refuses sizes meanwhile)
    names = sorted(node["metadata"]["name"] for node in members_of(world.kube, blue))
    world.kube.put(DATASETS, placed_dataset("reads", [[names[i], names[(i + 1) % n]] for i in range(n)]))
    mover = Mover(world.kube, lambda: world.now)
    mover.step()  # every node runs an agent from the start
    return world, blue, mover


def bake(world: World, blue: str, mover: Mover, kube: KubeApi | None = None) -> ImageResult:
    """``kbl bake`` of an EKS group (strategy ``rolling``, its default there), run again while it
    waits for the prototype's data: the prototype drains through the safe path, is imaged and
    returned."""
    for _ in range(20):
        result = prototype_image(kube or world.kube, world.cloud, kbl_key=KBL, group=blue, strategy="rolling", clock=lambda: world.now)
        if not result.skipped:
            return result
        world.advance(30)
        mover.step()
    raise AssertionError(result)


def bake_blue_green(world: World, blue: str, mover: Mover) -> str:
    """:func:`bake` of a data-holding EKS group: it goes to a blue/green roll. Returns the image."""
    result = bake(world, blue, mover)
    assert result.image, result
    assert not result.skipped, result
    assert world.cloud.calls_of("roll_group") == [], "EKS would have replaced the nodes itself"
    held = GroupLocks(world.kube).holder(KBL, blue)
    assert held is not None
    assert held["mode"] == BLUE_GREEN
    return result.image


def run_blue_green(
    world: World,
    blue: str,
    mover: Mover,
    step: Callable[[], Any],
    *,
    restart: Callable[[], Any] | None = None,
    passes: int = 120,
    floor: int | None = None,
) -> list[str]:
    """Passes of ``step`` (``restart`` after a kill) with the invariants checked after each; the
    blue nodes that left, in order. ``floor``: the fewest schedulable nodes of the KBL allowed
    (default: as many as the blue group has at the start)."""
    green = green_name(blue)
    original = len(members_of(world.kube, blue)) if floor is None else floor
    gone: list[str] = []
    for _ in range(passes):
        before = {n["metadata"]["name"]: n for n in kbl_nodes(world.kube)}
        try:
            step()
        except KilledError:
            assert restart is not None
            step = restart()  # a new process: nothing but the cluster and the cloud remembers
        world.advance(30)
        mover.step()
        nodes = kbl_nodes(world.kube)
        names = {n["metadata"]["name"] for n in nodes}
        for name in set(before) - names:  # left the cluster: only once its data had left
            marks = before[name]["metadata"].get("annotations") or {}
            answered, asked = parse_time(marks.get(labels.DATA_DRAINED)), mover.asked.get(name)
            assert answered is not None, f"{name} was terminated before its data left"
            assert asked is not None
            assert answered >= asked, f"{name} was terminated before its data left"
            assert all(name not in row for row in rows_of(world.kube, "reads")), f"{name} still held pieces"
            assert before[name]["metadata"]["labels"][labels.NODE_GROUP_LABEL] == blue, "a green node left"
            gone.append(name)
        blues = members_of(world.kube, blue)
        assert sum(1 for n in blues if n["spec"].get("unschedulable")) <= 1, "two blue nodes out at once"
        available = [n for n in nodes if not n["spec"].get("unschedulable")]  # joined nodes of the fake are Ready
        assert len(available) >= original, "a blue node went out before its green replacement was Ready"
        for row in rows_of(world.kube, "reads"):
            assert len(set(row)) == 2, f"a shard lost a holder: {row}"
            assert set(row) <= names, f"a shard lost a holder: {row}"
        kbl_groups = {name for name, g in world.cloud.groups.items() if g.spec.kbl == KBL}
        assert kbl_groups <= {blue, green}, f"a third group: {kbl_groups}"
        if blue not in world.cloud.groups and GroupLocks(world.kube).holder(KBL, blue) is None:
            break
    return gone


def assert_rolled(world: World, blue: str, image: str, old: set[str]) -> None:
    green = green_name(blue)
    assert blue not in world.cloud.groups, "the blue group was not deleted"
    assert {i.image for i in world.cloud.groups[green].instances} == {image}
    nodes = {n["metadata"]["name"] for n in kbl_nodes(world.kube)}
    assert not nodes & old, "a blue node is still there"
    assert {n["metadata"]["labels"][labels.NODE_GROUP_LABEL] for n in kbl_nodes(world.kube)} == {green}
    kbl = world.kube.get(KBLS, "k", namespace="default")
    assert kbl is not None
    entries = {e["name"]: e for e in kbl["status"]["nodeGroups"]}
    assert blue not in entries, "the blue group's status entry stayed"
    assert entries[green]["lastImage"] == image, "the green group did not inherit the image (a rebake would start over)"
    assert not entries[green].get("disruption")
    assert {holder for row in rows_of(world.kube, "reads") for holder in row} <= nodes


def test_a_data_holding_eks_group_rolls_blue_green_each_blue_node_drained_before_it_goes_one_at_a_time() -> None:
    world, blue, mover = eks_world()
    old = {n["metadata"]["name"] for n in members_of(world.kube, blue)}
    image = bake_blue_green(world, blue, mover)
    roller = Roller(world.kube, world.cloud, lambda: world.now)
    gone = run_blue_green(world, blue, mover, lambda: roller.run_once([(KBL, blue)]))
    assert set(gone) == old
    assert_rolled(world, blue, image, old)
    green = green_name(blue)
    assert len(world.cloud.groups[green].instances) == 3
    assert [c.args["desired"] for c in world.cloud.calls_of("set_size") if c.args["name"] == green] == [1, 2, 3]
    removed = world.cloud.calls_of("remove_instance")
    assert len(removed) == 3
    assert {c.args["name"] for c in removed} == {blue}
    assert [c.args["name"] for c in world.cloud.calls_of("delete_group")] == [blue]
    assert len(world.cloud.calls_of("create_green_group")) == 1


@pytest.mark.parametrize("kill_at", range(1, 31))  # every guarded write of a three-node roll
def test_a_controller_killed_at_any_step_of_a_blue_green_roll_continues_and_never_has_two_blue_nodes_out(kill_at: int) -> None:
    world, blue, mover = eks_world()
    old = {n["metadata"]["name"] for n in members_of(world.kube, blue)}
    image = bake_blue_green(world, blue, mover)
    steps = {"n": 0}

    def guard(step: str) -> None:
        steps["n"] += 1
        if steps["n"] == kill_at:
            raise KilledError(step)

    def start() -> Callable[[], Any]:
        roller = Roller(world.kube, world.cloud, lambda: world.now, guard=guard)
        return lambda: roller.run_once([(KBL, blue)])

    gone = run_blue_green(world, blue, mover, start(), restart=start)
    assert steps["n"] >= kill_at, "the roll ended before the kill point: the case tests nothing"
    assert set(gone) == old
    assert_rolled(world, blue, image, old)
    assert len(world.cloud.groups[green_name(blue)].instances) == 3


def test_the_controller_loop_rolls_blue_green_and_its_planner_never_creates_a_third_group() -> None:
    """The whole loop: the planner keeps the KBL at three nodes (``minSize``) and sees the green
    group as the KBL's group while the blue one empties; nothing it plans touches the blue group."""
    world, blue, mover = eks_world(min_size=3)
    controller = world.controller()
    controller.reconcile_once()  # the group as it was: protected, detached, recorded
    old = {n["metadata"]["name"] for n in members_of(world.kube, blue)}
    image = bake_blue_green(world, blue, mover)
    plans: list[cap.Plan] = []
    gone = run_blue_green(world, blue, mover, lambda: plans.append(controller.reconcile_once()))
    assert set(gone) == old
    assert_rolled(world, blue, image, old)
    assert [c.args["spec"].name for c in world.cloud.calls_of("create_group")] == [blue], "the planner created a group of its own"
    touched = [a for p in plans for a in p.actions if getattr(a, "group", None) == blue]
    assert touched == [], touched
    green = green_name(blue)
    assert world.cloud.groups[green].desired >= 3
    for _ in range(3):  # after the roll the planner keeps the green group as the KBL's group
        plan = controller.reconcile_once()
        world.advance(30)
        mover.step()
        assert not [a for a in plan.actions if isinstance(a, cap.CreateNodeGroup)]
    assert {g for g, s in world.cloud.groups.items() if s.spec.kbl == KBL} == {green}


def test_an_eks_group_holding_no_data_still_rolls_as_eks_does() -> None:
    world, blue, mover = eks_world()
    world.kube.delete(DATASETS, "reads", namespace="default")
    result = bake(world, blue, mover)
    assert result.image
    assert result.version
    assert world.cloud.calls_of("roll_group"), "EKS's own roll"
    assert world.cloud.calls_of("create_green_group") == []
    assert GroupLocks(world.kube).holder(KBL, blue) is None


def test_green_names_stay_within_eks_limits_and_count_generations() -> None:
    assert green_name("kbl-default-k-us-east-1a") == "kbl-default-k-us-east-1a-g2"
    assert green_name("kbl-default-k-us-east-1a-g2") == "kbl-default-k-us-east-1a-g3"
    long = cap.group_name("default/" + "x" * 80, "us-east-1a")
    first = green_name(long)
    assert len(first) <= 63
    assert first.endswith("-g2")
    assert len(green_name(first)) <= 63
    assert green_name(first).endswith("-g3")
    other = cap.group_name("default/" + "x" * 79 + "y", "us-east-1a")
    assert green_name(other) != first


def test_queue_mode_rolls_blue_green_through_the_worker(aws: Aws, no_sleep: Backoff) -> None:
    """The controller side holds no cloud rights: the green group, its growth, the termination
    with a decrement and the deletion go as requests (SQS on moto in server mode); the worker
    runs them on the stateful fake playing EKS, and its reports carry the groups back."""
    world, blue, mover = eks_world()
    main, reply, _ = queues(aws)
    controller_side = QueueProvider(aws.client("sqs"), main, reply, clock=lambda: world.now, backoff=no_sleep)
    worker = Worker(aws.client("sqs"), main, reply, world.cloud, max_nodes_total=10, visibility_timeout_s=0,
                    backoff=no_sleep, clock=lambda: world.now)  # fmt: skip
    old = {n["metadata"]["name"] for n in members_of(world.kube, blue)}
    image = bake_blue_green(world, blue, mover)  # kbl bake runs out of the cluster, with credentials
    worker.report()
    roller = Roller(world.kube, controller_side, lambda: world.now)

    def step() -> None:
        roller.run_once([(KBL, blue)])
        worker.poll_once()
        worker.report()

    gone = run_blue_green(world, blue, mover, step)
    assert set(gone) == old
    assert_rolled(world, blue, image, old)
    assert worker.stats.failed == 0
    assert {c.op for c in world.cloud.calls if c.op in ("create_green_group", "remove_instance", "delete_group")} == {
        "create_green_group",
        "remove_instance",
        "delete_group",
    }


def test_a_blue_node_already_out_for_an_interruption_is_taken_over_first_and_no_second_one_goes_out() -> None:
    world, blue, mover = eks_world()
    old = {n["metadata"]["name"] for n in members_of(world.kube, blue)}
    image = bake_blue_green(world, blue, mover)
    warned = sorted(old)[-1]  # the last by name: the roll would take it last on its own
    world.kube.patch(NODES, warned, {"spec": {"unschedulable": True}, "metadata": {"annotations": {labels.DRAIN: "spot-interruption"}}})
    roller = Roller(world.kube, world.cloud, lambda: world.now)
    gone = run_blue_green(world, blue, mover, lambda: roller.run_once([(KBL, blue)]), floor=len(old) - 1)
    assert gone[0] == warned, gone
    assert set(gone) == old
    assert_rolled(world, blue, image, old)


class KillingKube:
    """The cluster as the controller sees it, killed at the first write that matches ``when``."""

    def __init__(self, kube: KubeApi, when: Callable[[str, Any], bool]) -> None:
        self.kube, self.when, self.killed = kube, when, False

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.kube, name)
        if name not in ("patch", "patch_status"):
            return real

        def write(*args: Any, **kwargs: Any) -> Any:
            if not self.killed and self.when(name, args):
                self.killed = True
                raise KilledError(name)
            return real(*args, **kwargs)

        return write


def test_a_bake_killed_right_after_handing_its_group_to_the_roll_returns_the_node_when_run_again() -> None:
    world, blue, mover = eks_world()

    def returning_the_prototype(verb: str, args: Any) -> bool:
        return verb == "patch" and args[0] is NODES and args[2].get("spec") == {"unschedulable": False}

    with pytest.raises(KilledError):
        bake(world, blue, mover, KillingKube(world.kube, returning_the_prototype))
    held = GroupLocks(world.kube).holder(KBL, blue)
    assert held is not None
    assert held["mode"] == BLUE_GREEN
    node = world.kube.get(NODES, held["prototype"])
    assert node is not None
    assert node["spec"]["unschedulable"], "the kill left the prototype out"
    again = prototype_image(world.kube, world.cloud, kbl_key=KBL, group=blue, node=held["prototype"], strategy="rolling",
                            clock=lambda: world.now)  # fmt: skip
    assert again.image == held["image"]
    assert again.green == green_name(blue)
    node = world.kube.get(NODES, held["prototype"])
    assert node is not None
    assert not node["spec"].get("unschedulable")
    assert labels.PROTOTYPE not in node["metadata"]["annotations"]
    assert len(world.cloud.calls_of("create_image")) == 1
    assert GroupLocks(world.kube).holder(KBL, blue) == held, "the roll's record stays"


def test_a_blue_green_roll_whose_green_group_can_never_be_created_gives_the_group_back_untouched() -> None:
    """A group created on EKS's own AMI cannot join nodes from a baked image (``NoCustomImage``):
    the roll ends before any node goes out, the failure is reported, a throttle is retried."""
    world, blue, mover = eks_world()
    bake_blue_green(world, blue, mover)
    roller = Roller(world.kube, world.cloud, lambda: world.now)
    world.cloud.inject("create_green_group", ProviderError("Throttling", "slow down", retryable=True))
    roller.run_once([(KBL, blue)])
    assert GroupLocks(world.kube).holder(KBL, blue) is not None, "a throttle is retried"
    world.cloud.inject("create_green_group", ProviderError("NoCustomImage", "node group runs EKS's own AMI"))
    roller.run_once([(KBL, blue)])
    assert GroupLocks(world.kube).holder(KBL, blue) is None
    assert [why for _, why in roller.failures][-1].startswith("NoCustomImage")
    assert green_name(blue) not in world.cloud.groups
    assert not any(n["spec"].get("unschedulable") for n in members_of(world.kube, blue))
    assert world.cloud.calls_of("remove_instance") == []


def test_the_controller_loops_rebake_of_a_data_holding_eks_group_rolls_it_blue_green() -> None:
    world, blue, mover = eks_world(min_size=3)
    members = members_of(world.kube, blue)
    old = {n["metadata"]["name"] for n in members}
    entry = last_image(members[0], age_s=10 * 86400.0) | {"name": blue}
    world.kube.patch_status(KBLS, "k", {"status": {"nodeGroups": [entry]}}, namespace="default")
    patched = world.kube.get(NODES, members[1]["metadata"]["name"])
    assert patched is not None
    patched["status"]["nodeInfo"]["kernelVersion"] = "6.1.200-300.amzn2023.x86_64"
    world.kube.put(NODES, patched)
    controller = world.controller(rebake_after_s=7 * 86400.0)
    gone = run_blue_green(world, blue, mover, controller.reconcile_once, floor=len(old) - 1)  # the prototype is out while baked
    (made,) = world.cloud.calls_of("create_image")
    assert world.cloud.calls_of("roll_group") == [], "EKS would have replaced the nodes itself"
    assert set(gone) == old
    assert_rolled(world, blue, world.cloud.images[made.args["image_name"]], old)
    for _ in range(3):  # the green group inherited the image: not re-baked
        controller.reconcile_once()
        world.advance(30)
    assert len(world.cloud.calls_of("create_image")) == 1
