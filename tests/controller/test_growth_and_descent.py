"""Regression tests of issue 14: grow only what helps; one safe path down (a deleted KBL too)."""

from __future__ import annotations

from typing import Any

from controller.providers.fake import FakeProvider
from kube.api import DATASETS, KBLS, NODE_HOLDINGS, NODES, PODS
from placement import capacity as cap
from tests.controller.test_reconciling import World
from tests.placement.scenarios import kbl_object, placed_dataset, pod_object
from topology import labels
from topology.times import format_time

GROUP = cap.group_name("default/k", "us-east-1a")


def _required_pods(world: World, n: int = 2) -> None:
    for i in range(n):
        world.kube.put(PODS, pod_object(f"p{i}", kbl="k", cpu="3", dataset="reads", annotations={labels.POD_LOCALITY: "required"}))


def _desired(cloud: FakeProvider) -> int:
    return sum(g.desired for g in cloud.list_groups())


def test_runaway_required_pods_whose_data_never_comes_to_the_group_ask_for_no_node() -> None:
    """The issue's runaway: 2 -> 4 -> 6 -> 8 -> 10 on the old main; now no node at all (none helps)."""
    world = World(ready_delay_s=60)
    world.kube.put(KBLS, kbl_object("k", max_size=10))
    world.kube.put(DATASETS, placed_dataset("reads", [["gen-a0"], ["gen-a1"]]))  # no nodeSelector: never on the group
    _required_pods(world)
    sizes = []
    for _ in range(6):
        world.controller().reconcile_once()
        world.advance(120)  # nodes requested join; the pods stay pending (their data is elsewhere)
        sizes.append(_desired(world.cloud))
    assert sizes == [0] * 6
    assert any(e["reason"] == "NoNodeHelps" and "data-elsewhere" in e["message"] for e in world.kube.events)


def test_runaway_pods_still_pending_after_their_nodes_joined_are_not_counted_again() -> None:
    """A DataSet bound to the group follows it: 2 nodes help, and stay 2 while the data hydrates."""
    world = World(ready_delay_s=60)
    world.kube.put(KBLS, kbl_object("k", max_size=10))
    bound = placed_dataset("reads", [["gen-a0"], ["gen-a1"]])
    bound["spec"]["nodeSelector"] = {labels.KBL_LABEL: "k"}
    world.kube.put(DATASETS, bound)
    _required_pods(world)
    sizes = []
    for _ in range(6):
        world.controller().reconcile_once()
        world.advance(120)
        sizes.append(_desired(world.cloud))
    assert sizes == [2] * 6
    joined = [n for n in world.kube.list(NODES)[0] if n["metadata"]["labels"].get(labels.NODE_GROUP_LABEL) == GROUP]
    assert len(joined) == 2


def _holdings(node: str) -> dict[str, Any]:
    return {"apiVersion": labels.API_VERSION, "kind": "NodeHoldings", "metadata": {"name": node}, "spec": {"nodeName": node},
            "status": {"datasets": [{"namespace": "default", "name": "reads", "uid": "u", "ready": {"replica": "0-1"}}]}}  # fmt: skip


def test_deleting_a_kbl_whose_nodes_hold_data_drains_them_safely_before_the_group_goes() -> None:
    world = World(ready_delay_s=30)
    world.kube.put(KBLS, kbl_object("k"))
    for i in range(2):
        world.kube.put(PODS, pod_object(f"p{i}", kbl="k", cpu="3"))
    world.controller().reconcile_once()
    world.advance(60)
    assert world.schedule_pending() == 2
    nodes = sorted(n["metadata"]["name"] for n in world.kube.list(NODES)[0] if labels.NODE_GROUP_LABEL in n["metadata"]["labels"])
    assert len(nodes) == 2
    world.kube.put(DATASETS, placed_dataset("reads", [[nodes[0], "gen-a0"], [nodes[1], "gen-b0"]]))
    for node in nodes:  # standing in for the node agents' reports
        world.kube.put(NODE_HOLDINGS, _holdings(node))
    world.kube.delete(KBLS, "k")

    def settle(rounds: int) -> None:
        for _ in range(rounds):
            world.advance(60)
            world.controller().reconcile_once()

    settle(3)
    for node in nodes:  # cordoned, asked to move its data, waiting: nothing removed, the group stays
        obj = world.kube.get(NODES, node)
        assert obj is not None
        assert obj["spec"]["unschedulable"] is True
        assert obj["metadata"]["annotations"][labels.DRAIN] == "its KBL is gone"
    assert world.cloud.calls_of("remove_instance") == []
    assert world.cloud.calls_of("set_size") == []
    assert world.cloud.calls_of("delete_group") == []
    assert world.kube.evictions == []
    assert any(e["reason"] == "ScaleDownWaitsForData" for e in world.kube.events)
    # Standing in for the placement reconciler: the pieces moved off, then it signals data-drained.
    world.kube.put(DATASETS, placed_dataset("reads", [["gen-c0", "gen-a0"], ["gen-c1", "gen-b0"]]))
    settle(2)
    assert world.cloud.calls_of("remove_instance") == []  # still waiting for the signal
    for node in nodes:
        world.kube.patch(NODES, node, {"metadata": {"annotations": {labels.DATA_DRAINED: format_time(world.now)}}})
    settle(6)
    assert sorted(world.kube.evictions) == ["default/p0", "default/p1"]
    removed = [c.args["provider_id"].rsplit("/", 1)[-1] for c in world.cloud.calls_of("remove_instance")]
    assert len(removed) == 2
    ops = [c.op for c in world.cloud.calls if c.op in ("remove_instance", "set_size", "delete_group")]
    assert ops == ["remove_instance", "remove_instance", "delete_group"]
    assert world.cloud.list_groups() == []
