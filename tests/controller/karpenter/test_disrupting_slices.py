"""Sliced targets in what keeps nodes from disruption: Karpenter's do-not-disrupt marks and the
interruption notices read a DataSet written as PlacementSlices as the same DataSet inline, and
while its target is unknown (a slice not read) they protect and drain every node it may be on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.disrupting import KARPENTER_DO_NOT_DISRUPT, mark_nodes
from controller.interruptions import InterruptionHandler, Notice
from kube.api import DATASETS, NODES, PLACEMENT_SLICES, WatchEvent
from kube.memory import MemoryApi
from kube.watching import InformerSettings
from tests.controller.test_sliced_targets import WithoutSlices, as_sliced
from tests.placement.scenarios import placed_dataset
from topology import labels
from topology.examples import make_node

GROUP = ("a", "b", "idle")


def group_node(name: str, instance: str = "") -> dict[str, Any]:
    obj = make_node(name, extra_labels={labels.NODE_GROUP_LABEL: "kbl-default-g-us-east-1a"})
    if instance:
        obj["spec"]["providerID"] = f"aws:///us-east-1a/{instance}"
    return obj


def marked(api: MemoryApi) -> dict[str, bool]:
    out = {}
    for obj in api.list(NODES)[0]:
        out[obj["metadata"]["name"]] = (obj["metadata"].get("annotations") or {}).get(KARPENTER_DO_NOT_DISRUPT) == "true"
    return out


def cluster() -> MemoryApi:
    api = MemoryApi()
    for name in GROUP:
        api.put(NODES, group_node(name))
    api.put(NODES, make_node("general"))  # not a kbl group node: never touched
    return api


def twins(make: Callable[[], MemoryApi], inline: dict[str, Any]) -> tuple[MemoryApi, MemoryApi]:
    """Two clusters made by ``make``: one holding the DataSet ``inline``, the other the same
    DataSet written sliced, with its PlacementSlices."""
    sliced, slices = as_sliced(inline)
    want, got = make(), make()
    want.put(DATASETS, inline)
    got.put(DATASETS, sliced)
    for obj in slices:
        got.put(PLACEMENT_SLICES, obj)
    return want, got


def test_marks_over_a_sliced_dataset_are_the_marks_over_the_same_dataset_inline() -> None:
    want, got = twins(cluster, placed_dataset("d", [["a", "b"], ["b", "general"]]))
    assert [(m.node, m.protect, m.pieces) for m in mark_nodes(got)] == [(m.node, m.protect, m.pieces) for m in mark_nodes(want)]
    assert marked(got) == marked(want) == {"a": True, "b": True, "idle": False, "general": False}


def test_every_kbl_node_stays_marked_while_a_sliced_target_is_unknown() -> None:
    api = cluster()
    api.put(DATASETS, placed_dataset("d", [["a", "b"]]))
    mark_nodes(api)
    assert marked(api) == {"a": True, "b": True, "idle": False, "general": False}
    # the target moved off a and b onto idle: the new index is read, its slice is not
    sliced, slices = as_sliced(placed_dataset("d", [["idle", "general"]]))
    api.put(DATASETS, sliced)
    mark_nodes(api)
    assert marked(api) == {"a": True, "b": True, "idle": True, "general": False}  # none cleared, idle protected
    api.put(PLACEMENT_SLICES, slices[0])
    assert {(m.node, m.protect) for m in mark_nodes(api)} == {("a", False), ("b", False)}
    assert marked(api) == {"a": False, "b": False, "idle": True, "general": False}


def handler(api: MemoryApi) -> InterruptionHandler:
    """A handler whose index is fed here, event by event (no informer, no queue)."""
    made = InterruptionHandler(api, None, "queue")
    made.index.relist(NODES, api.list(NODES)[0])
    made.index.relist(DATASETS, api.list(DATASETS)[0])
    made.index.relist(PLACEMENT_SLICES, api.list(PLACEMENT_SLICES)[0])
    return made


def notice_cluster() -> MemoryApi:
    api = MemoryApi()
    api.put(NODES, group_node("spot-1", "i-0a1b2c3d4e5f60001"))
    api.put(NODES, group_node("empty", "i-0a1b2c3d4e5f60003"))
    return api


def spot(instance: str) -> Notice:
    return Notice("spot-interruption", (instance,), 1_800_000_000.0, 1_800_000_120.0)


def test_a_notice_counts_the_pieces_of_a_sliced_target_as_of_the_same_target_inline() -> None:
    want, got = twins(notice_cluster, placed_dataset("d", [["spot-1", "other"], ["spot-1", "third"], ["other", "third"]]))
    theirs, ours = handler(want), handler(got)
    for instance in ("i-0a1b2c3d4e5f60001", "i-0a1b2c3d4e5f60003"):
        assert [(o.node, o.pieces, o.drained, o.unknown) for o in ours.handle(spot(instance))] == [
            (o.node, o.pieces, o.drained, o.unknown) for o in theirs.handle(spot(instance))
        ]
    assert ours.index.pieces_on("spot-1") == (2, ())


def test_a_notice_drains_a_node_while_a_sliced_target_is_unknown_and_counts_it_once_its_slices_are_read() -> None:
    api = notice_cluster()
    sliced, slices = as_sliced(placed_dataset("d", [["other", "third"]]))  # names neither node
    api.put(DATASETS, sliced)
    index = handler(api).index
    assert index.pieces_on("empty") == (0, ("default/d",))
    made = handler(api)
    (outcome,) = made.handle(spot("i-0a1b2c3d4e5f60003"))
    assert outcome.drained
    assert outcome.unknown == ("default/d",)
    assert "not known" in outcome.message
    node = api.get(NODES, "empty")
    assert node is not None
    assert node["metadata"]["annotations"][labels.DRAIN] == "spot-interruption"
    gone = Notice("state-change", ("i-0a1b2c3d4e5f60003",), 1_800_000_200.0, state="terminated")
    (verdict,) = made.handle(gone)
    assert verdict.saved is False  # unknown is not "held nothing": not counted saved without data-drained
    for obj in slices:
        made.index.event(PLACEMENT_SLICES, WatchEvent("ADDED", obj))
    assert made.index.pieces_on("empty") == (0, ())
    (verdict,) = made.handle(gone)
    assert verdict.saved is True
    counted = made.index.needed[("default", "d")]
    _, next_slices = as_sliced(placed_dataset("d", [["empty", "third"]]))  # the next target's slice, before its index
    made.index.event(PLACEMENT_SLICES, WatchEvent("ADDED", next_slices[0]))
    assert made.index.needed[("default", "d")] is counted  # the target counted is still the index's: not counted again
    assert made.index.pieces_on("empty") == (0, ())


def test_without_the_placement_slice_kind_notices_are_still_handled_and_sliced_targets_stay_unknown() -> None:
    api = WithoutSlices()
    api.put(NODES, group_node("spot-1", "i-0a1b2c3d4e5f60001"))
    sliced, _ = as_sliced(placed_dataset("d", [["other", "third"]]))
    api.put(DATASETS, sliced)
    made = InterruptionHandler(api, None, "queue", informer=InformerSettings(backoff_s=0.05, max_backoff_s=0.1))
    try:
        assert made.start(timeout_s=5.0)  # the Nodes and DataSets listed: notices are not held back
        (outcome,) = made.handle(spot("i-0a1b2c3d4e5f60001"))
        assert outcome.drained
        assert outcome.unknown == ("default/d",)
    finally:
        made.stop()
    mark_nodes(api)
    assert marked(api) == {"spot-1": True}
