"""The relay baton by progress (a Job's completion fraction starts the next stage's capacity and
data ahead of time), measured hydration throughput, and windowed activation, on the controller."""

from __future__ import annotations

from typing import Any

from controller.reconciling import HydrationMeter
from kube.api import DATASETS, JOBS, KBLS, NODES, PODS
from placement import capacity as cap
from tests.controller.test_reconciling import World
from tests.placement.scenarios import kbl_object, placed_dataset, pod_object
from topology import labels
from topology.examples import make_node
from topology.holdings import DataSetHoldings, NodeHoldings
from topology.nodes import Node
from topology.times import format_time

STAGES = [
    {"name": "align", "startAfterSeconds": 0, "durationSeconds": 86400, "job": "align"},
    {"name": "train", "after": {"stage": "align", "fraction": 0.8}, "durationSeconds": 3600, "needs": {"nodes": 4}},
]


def _job(world: World, succeeded: int, completions: int = 100) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "align", "namespace": "default"},
        "spec": {"completions": completions, "parallelism": 10},
        "status": {"startTime": format_time(world.now - 1000), "succeeded": succeeded, "active": 10},
    }  # fmt: skip


def _relay_world() -> World:
    world = World()
    world.kube.put(KBLS, kbl_object("relay", stages=STAGES, annotations={labels.KBL_DATASET: "reads"}))
    world.kube.put(DATASETS, placed_dataset("reads", [["gen-c0", "gen-c1"]]))
    return world


def test_a_job_nearing_its_fraction_makes_the_controller_ask_for_the_next_stage_ahead() -> None:
    world = _relay_world()
    world.kube.put(JOBS, _job(world, 10))  # 80 % is 7000 s away: nothing yet
    world.controller().reconcile_once()
    assert world.cloud.calls_of("create_group") == []
    world.kube.put(JOBS, _job(world, 70))  # 80 % in 143 s, within the node-ready + hydration lead
    plan = world.controller().reconcile_once()
    (create,) = plan.of(cap.CreateNodeGroup)
    assert isinstance(create, cap.CreateNodeGroup)
    assert (create.desired, create.zone) == (4, "us-east-1c")  # the data's zone
    assert len(world.cloud.calls_of("create_group")) == 1


def test_without_the_jobs_resource_the_controller_still_reconciles() -> None:
    world = _relay_world()  # no Job at all: the stage's start is unknown, nothing is asked
    plan = world.controller().reconcile_once()
    assert not plan.of(cap.CreateNodeGroup)


def _node(name: str, group: str) -> Node:
    return Node.from_object(make_node(name, extra_labels={labels.EKS_NODE_GROUP_LABEL: group}))


def _held(node: str, ready_bytes: int, hydrating: bool) -> NodeHoldings:
    pieces = {"replica": frozenset({3})} if hydrating else {}
    held = DataSetHoldings("default", "reads", hydrating=pieces, ready_bytes=ready_bytes)
    return NodeHoldings(node=node, datasets={"default/reads": held})


def test_hydration_throughput_is_measured_from_ready_bytes_growth_while_hydrating() -> None:
    meter = HydrationMeter()
    nodes = {n.name: n for n in (_node("a", "g1"), _node("b", "g1"), _node("c", "g2"))}
    assert meter.observe(0.0, nodes, [_held("a", 0, True), _held("b", 0, True), _held("c", 5, False)]) == {}
    rates = meter.observe(10.0, nodes, [_held("a", 2_000_000_000, True), _held("b", 3_000_000_000, False), _held("c", 9, False)])
    assert rates == {"g1": 250e6}  # median of 200 MB/s and 300 MB/s; c grew while never hydrating: no sample
    later = meter.observe(20.0, nodes, [_held("a", 2_000_000_000, False), _held("b", 3_000_000_000, False), _held("c", 9, False)])
    assert later == {"g1": 250e6}  # idle nodes add no sample


def test_observe_reads_job_progress_into_the_planner_state() -> None:
    world = _relay_world()
    world.kube.put(JOBS, _job(world, 70))
    state = world.controller().observe()
    assert state.jobs["default/align"].fraction == 0.7
    assert state.jobs["default/align"].start_s == world.now - 1000
    assert state.hydration_bps == {}  # nothing measured yet: the planner uses the settings' default


def _window(start: str, seconds: int, **kw: Any) -> dict[str, Any]:
    obj = kbl_object("nightly", **kw)
    obj["spec"]["window"] = {"start": start, "durationSeconds": seconds}
    return obj


def _hhmm(epoch_s: float) -> str:
    of_day = int(epoch_s) % 86400
    return f"{of_day // 3600:02d}:{of_day % 3600 // 60:02d}"


def test_a_closing_window_cordons_and_drains_the_group_busy_nodes_included() -> None:
    world = World(ready_delay_s=30)
    opens = world.now - 60  # open now for 10 minutes
    world.kube.put(KBLS, _window(_hhmm(opens), 600))
    for i in range(2):
        world.kube.put(PODS, pod_object(f"p{i}", kbl="nightly", cpu="3"))
    world.controller().reconcile_once()
    world.advance(60)
    assert world.schedule_pending() == 2
    group = [n for n in world.kube.list(NODES)[0] if labels.NODE_GROUP_LABEL in n["metadata"]["labels"]]
    assert len(group) == 2
    world.advance(600)  # the window closes
    for _ in range(2):
        world.controller().reconcile_once()
        world.advance(30)
    for obj in group:  # the safe path's first step, busy nodes included: cordon and move the data off
        node = world.kube.get(NODES, obj["metadata"]["name"])
        assert node is not None
        assert node["spec"]["unschedulable"] is True
        assert "window closed" in node["metadata"]["annotations"][labels.DRAIN]
    assert world.cloud.calls_of("remove_instance") == []  # no node left before its data and pods did
