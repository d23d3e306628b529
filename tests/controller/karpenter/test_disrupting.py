"""karpenter.sh/do-not-disrupt follows the placement: set while a kbl node holds needed pieces."""

from __future__ import annotations

from typing import Any

from controller.disrupting import KARPENTER_DO_NOT_DISRUPT, mark_nodes, needed_pieces
from kube.api import DATASETS, NODES
from kube.memory import MemoryApi
from tests.placement.scenarios import placed_dataset
from topology import labels
from topology.examples import make_node


def group_node(name: str) -> dict[str, Any]:
    return make_node(name, extra_labels={labels.NODE_GROUP_LABEL: "kbl-default-g-us-east-1a"})


def annotation(api: MemoryApi, node: str) -> str | None:
    found = api.get(NODES, node)
    assert found is not None
    value = (found["metadata"].get("annotations") or {}).get(KARPENTER_DO_NOT_DISRUPT)
    return str(value) if value is not None else None


def test_needed_pieces_count_target_slots_and_transfer_sources() -> None:
    dataset = placed_dataset("d", [["a", "b"], ["b", "c"]])
    dataset["status"]["transfers"] = [{"shard": 0, "piece": 0, "from": "old", "to": "a"}]
    assert needed_pieces([dataset]) == {"a": 1, "b": 2, "c": 1, "old": 1}


def test_scale_down_waits_for_data_nodes_then_clears_the_mark_once_moved() -> None:
    api = MemoryApi()
    for name in ("a", "b", "idle"):
        api.put(NODES, group_node(name))
    api.put(NODES, make_node("general"))  # not a kbl group node: never touched
    dataset = placed_dataset("d", [["a", "b"], ["b", "general"]])
    api.put(DATASETS, dataset)
    marks = mark_nodes(api)
    assert {(m.node, m.protect) for m in marks} == {("a", True), ("b", True)}
    assert (annotation(api, "a"), annotation(api, "b"), annotation(api, "idle"), annotation(api, "general")) == ("true", "true", None, None)
    assert mark_nodes(api) == []  # nothing to change
    # b drains: its pieces now live on a and idle; the transfer of shard 0 is done
    api.put(DATASETS, placed_dataset("d", [["a", "idle"], ["idle", "general"]]))
    assert {(m.node, m.protect) for m in mark_nodes(api)} == {("b", False), ("idle", True)}
    assert annotation(api, "b") is None


def test_a_source_of_an_unfinished_transfer_stays_protected() -> None:
    api = MemoryApi()
    api.put(NODES, group_node("leaving"))
    dataset = placed_dataset("d", [["x", "y"]])
    dataset["status"]["transfers"] = [{"shard": 0, "piece": 1, "from": "leaving", "to": "y"}]
    api.put(DATASETS, dataset)
    assert [(m.node, m.protect, m.pieces) for m in mark_nodes(api)] == [("leaving", True, 1)]
