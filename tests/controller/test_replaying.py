"""Offline planning from a snapshot: read typed, the controller plans what it plans from raw objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller import Controller, ControllerSettings
from controller.replaying import RecordedGroups
from kube.api import NODES
from kube.replaying import SnapshotApi
from placement.capacity import CapacityState, Plan
from placement.capacity.names import group_name
from tests.placement.scenarios import T0, base_nodes, kbl_object, placed_dataset, pod_object
from topology import labels
from topology.examples import as_list, make_node
from topology.nodes import Node
from topology.times import format_time

GROUP = group_name("default/genomics", "us-east-1b")


def group_node(i: int, *, ready_after_s: float | None) -> dict[str, Any]:
    """A node of the KBL's group in us-east-1b, created at T0 - 3600 + 60 i, Ready ``ready_after_s`` later."""
    node = make_node(
        f"grp-{i}",
        zone="us-east-1b",
        rack="rack-9",
        extra_labels={labels.NODE_GROUP_LABEL: GROUP, labels.EKS_NODE_GROUP_LABEL: GROUP, labels.KBL_LABEL: "genomics"},
    )
    born = T0 - 3600 + 60 * i
    node["metadata"]["creationTimestamp"] = format_time(born)
    ready = {"type": "Ready", "status": "True" if ready_after_s is not None else "False"}
    if ready_after_s is not None:
        ready["lastTransitionTime"] = format_time(born + ready_after_s)
    node["status"]["conditions"] = [{"type": "MemoryPressure", "status": "False", "lastTransitionTime": format_time(born)}, ready]
    return node


def write_snapshot(path: Path) -> Path:
    status = {
        "nodeGroups": [{"name": GROUP, "zone": "us-east-1b", "instanceType": "m6i.xlarge", "desired": 3, "maxSize": 10, "phase": "Active"}]
    }
    odd = make_node("odd")
    odd["metadata"]["labels"]["x"] = 5  # malformed: rejected with its reason, read typed or not
    objects = [
        *base_nodes(),
        odd,
        kbl_object("genomics", status=status),
        placed_dataset("reads", [["gen-b0", "gen-b1"], ["grp-0", "gen-a0"]]),
    ]
    objects += [group_node(i, ready_after_s=s) for i, s in enumerate([70.0, 95.0, None])]
    objects += [pod_object(f"p{i}", kbl="genomics", dataset="reads", cpu="3") for i in range(5)]
    path.write_text(json.dumps(as_list(objects)))
    return path


def plan_from(path: Path, *, typed: bool) -> tuple[CapacityState, Plan, list[str]]:
    api = SnapshotApi.from_file(str(path), typed=typed)
    controller = Controller(api, RecordedGroups(api), ControllerSettings(dry_run=True), clock=lambda: T0)
    state = controller.observe()
    return state, controller.plan(state), sorted(str(r) for r in controller.rejected)


def test_a_snapshot_read_typed_serves_nodes_typed_and_the_controller_plans_the_same(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path / "snap.json")
    nodes, _ = SnapshotApi.from_file(str(path), typed=True).list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={GROUP}")
    assert sorted(n.name for n in nodes if isinstance(n, Node)) == ["grp-0", "grp-1", "grp-2"]
    raw_state, raw_plan, raw_rejected = plan_from(path, typed=False)
    state, plan, rejected = plan_from(path, typed=True)
    assert plan.to_json_lines() == raw_plan.to_json_lines()
    assert plan.actions  # a plan with something in it: the five pending pods ask for nodes
    assert rejected == raw_rejected
    assert any("odd" in r for r in rejected)
    assert sorted(state.nodes, key=lambda n: n.name) == sorted(raw_state.nodes, key=lambda n: n.name)
    assert state.node_ready_s == raw_state.node_ready_s


def test_node_ready_time_is_the_p90_of_ready_minus_creation_over_the_groups_ready_nodes(tmp_path: Path) -> None:
    state, _, _ = plan_from(write_snapshot(tmp_path / "snap.json"), typed=True)
    assert state.node_ready_s[GROUP] == pytest.approx(95.0)  # two ready joins (70 s, 95 s); the NotReady node is not one
