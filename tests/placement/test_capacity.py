"""The pure capacity planner: reactive growth, budgets, pre-warm timing, utilization, safe scale-down."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from controller.providers import NodeGroupSpec
from controller.providers.fake import FAKE_INSTANCE_TYPES, FakeProvider
from placement import capacity as cap
from tests.placement.scenarios import T0, base_nodes, kbl_object, placed_dataset, pod_object
from topology import labels
from topology.datasets import DataSet, Erasure, Replicas, dataset_object
from topology.holdings import NodeHoldings
from topology.kbls import KBL
from topology.nodes import Taint
from topology.snapshots import load_snapshot
from topology.times import format_time


def state(
    objects: Sequence[Mapping[str, Any]],
    *,
    now: float = T0,
    groups: Sequence[cap.GroupState] = (),
    ready: Mapping[str, float] | None = None,
    util: Mapping[str, cap.Utilization] | None = None,
    holdings: Sequence[Mapping[str, Any]] = (),
    affinity: Mapping[str, Any] | None = None,
    jobs: Sequence[cap.JobProgress] = (),
    hydration: Mapping[str, float] | None = None,
) -> cap.CapacityState:
    snap = load_snapshot({"apiVersion": "v1", "kind": "List", "items": [dict(o) for o in objects]})
    assert not snap.rejected, snap.rejected
    return cap.CapacityState(
        now, snap.nodes, snap.pods, snap.kbls, snap.datasets, snap.cluster(), groups, ready or {}, util or {}, FAKE_INSTANCE_TYPES,
        tuple(NodeHoldings.from_object(h) for h in holdings), dict(affinity or {}), {j.key: j for j in jobs}, dict(hydration or {}),
    )


def test_unschedulable_pods_get_a_group_in_the_zone_holding_their_data() -> None:
    objs: list[dict[str, Any]] = [*base_nodes(), kbl_object("genomics")]
    objs.append(placed_dataset("reads", [["gen-b0", "gen-b1"], ["gen-b0", "gen-c0"]]))
    objs += [pod_object(f"p{i}", kbl="genomics", dataset="reads", cpu="1500m", memory="4Gi") for i in range(5)]
    plan = cap.plan_capacity(state(objs))
    creates = plan.of(cap.CreateNodeGroup)
    assert len(creates) == 1
    create = creates[0]
    assert isinstance(create, cap.CreateNodeGroup)
    assert create.zone == "us-east-1b"
    # m6i.xlarge offers 3920m: two 1500m pods per node, five pods -> three nodes.
    assert create.desired == 3
    assert create.labels["kbl.io/kbl"] == "genomics"
    assert Taint("kbl.io/dedicated", "genomics", "NoSchedule") in create.taints
    assert create.group == cap.group_name("default/genomics", "us-east-1b")


def test_pods_on_the_way_are_not_asked_for_twice() -> None:
    name = cap.group_name("default/genomics", "us-east-1a")
    objs = [*base_nodes(), kbl_object("genomics"), *[pod_object(f"p{i}", kbl="genomics", cpu="3") for i in range(3)]]
    group = cap.GroupState(name, "default/genomics", "us-east-1a", "m6i.xlarge", desired=3)
    plan = cap.plan_capacity(state(objs, groups=[group]))
    assert not plan.of(cap.ResizeNodeGroup)
    assert not plan.of(cap.CreateNodeGroup)


def test_first_wished_instance_type_that_fits_the_largest_pod_is_chosen() -> None:
    objs = [*base_nodes(), kbl_object("big", instance_types=("m6i.large", "m6i.4xlarge")), pod_object("p", kbl="big", cpu="6")]
    create = cap.plan_capacity(state(objs)).of(cap.CreateNodeGroup)[0]
    assert isinstance(create, cap.CreateNodeGroup)
    assert create.instance_type == "m6i.4xlarge"


def test_no_fitting_instance_type_is_reported_not_crashed() -> None:
    objs = [*base_nodes(), kbl_object("huge", instance_types=("m6i.large",)), pod_object("p", kbl="huge", cpu="64")]
    plan = cap.plan_capacity(state(objs))
    assert not plan.of(cap.CreateNodeGroup)
    notes = [a for a in plan.of(cap.Note) if isinstance(a, cap.Note)]
    assert any("no wished instance type fits" in n.message for n in notes)


@pytest.mark.parametrize(("pods", "kbl_max", "global_max", "expected"), [(40, 10, 200, 10), (40, 50, 7, 7), (3, 50, 200, 3)])
def test_growth_never_exceeds_kbl_or_global_budget(pods: int, kbl_max: int, global_max: int, expected: int) -> None:
    objs = [*base_nodes(), kbl_object("k", max_size=kbl_max), *[pod_object(f"p{i}", kbl="k", cpu="2") for i in range(pods)]]
    settings = cap.CapacitySettings(max_nodes_total=global_max)
    create = cap.plan_capacity(state(objs), settings).of(cap.CreateNodeGroup)[0]
    assert isinstance(create, cap.CreateNodeGroup)
    assert create.desired == expected


def test_global_budget_counts_every_kbl_and_existing_group() -> None:
    other = cap.GroupState("kbl-default-other-us-east-1a", "default/other", "us-east-1a", "m6i.xlarge", desired=6)
    objs = [*base_nodes(), kbl_object("other"), kbl_object("a"), kbl_object("b")]
    objs += [pod_object(f"a{i}", kbl="a", cpu="3") for i in range(5)] + [pod_object(f"b{i}", kbl="b", cpu="3") for i in range(5)]
    objs += [pod_object(f"o{i}", kbl="other", cpu="100m", node="gen-a0") for i in range(1)]
    plan = cap.plan_capacity(state(objs, groups=[other]), cap.CapacitySettings(max_nodes_total=10))
    granted = sum(a.desired for a in plan.of(cap.CreateNodeGroup) if isinstance(a, cap.CreateNodeGroup))
    assert granted == 4  # 10 - 6 already there


def test_prewarm_requests_a_stage_one_lead_time_before_it_starts() -> None:
    stages = [{"name": "align", "startAfterSeconds": 600, "durationSeconds": 900, "needs": {"nodes": 4}}]
    start = "2026-11-18T00:00:00Z"
    kbl = kbl_object("bp", stages=stages, status={"blueprintStart": start}, annotations={"kbl.io/dataset": "reads"})
    objs = [*base_nodes(), kbl, placed_dataset("reads", [["gen-c0", "gen-c1"]])]
    t_start = 1_794_960_000.0 + 600  # 2026-11-18T00:00:00Z + startAfterSeconds
    ready_s = 150.0
    hydrate_s = 2 * 10 * 2**30 / (200e6 * 4)  # 10Gi twice (2 replicas) by 4 agents at the default 200 MB/s
    lead = ready_s * 1.2 + 30.0 + hydrate_s
    group = cap.group_name("default/bp", "us-east-1c")
    early = cap.plan_capacity(state(objs, now=t_start - lead - 5, ready={group: ready_s}))
    assert not early.of(cap.CreateNodeGroup)
    on_time = cap.plan_capacity(state(objs, now=t_start - lead + 1, ready={group: ready_s}))
    create = on_time.of(cap.CreateNodeGroup)[0]
    assert isinstance(create, cap.CreateNodeGroup)
    assert (create.desired, create.zone) == (4, "us-east-1c")
    assert lead - 1 >= ready_s  # asked for early enough that nodes are Ready at the hand-off
    after = cap.plan_capacity(state(objs, now=t_start + 900 + 1, ready={group: ready_s}))
    assert not after.of(cap.CreateNodeGroup)  # the stage is over: nothing is asked


def test_blueprint_without_a_recorded_start_records_one() -> None:
    kbl = kbl_object("bp", stages=[{"name": "s", "startAfterSeconds": 10, "needs": {"nodes": 1}}])
    plan = cap.plan_capacity(state([*base_nodes(), kbl]))
    assert [a.kind for a in plan.actions][:1] == ["RecordBlueprintStart"]


BATON = [
    {"name": "align", "startAfterSeconds": 0, "durationSeconds": 86400, "job": "align"},
    {"name": "train", "after": {"stage": "align", "fraction": 0.8}, "datasets": ["reads"], "durationSeconds": 3600, "needs": {"nodes": 4}},
]
BATON_START = "2026-11-18T00:00:00Z"
JOB_START = T0 - 1000.0


def _baton(succeeded: int, *, now: float = T0, hydration: Mapping[str, float] | None = None, completed: float | None = None) -> cap.Plan:
    kbl = kbl_object("relay", stages=BATON, status={"blueprintStart": BATON_START}, annotations={labels.KBL_DATASET: "reads"})
    objs = [*base_nodes(), kbl, placed_dataset("reads", [["gen-c0", "gen-c1"]])]
    job = cap.JobProgress("default", "align", succeeded, 100, JOB_START, completed)
    ready = {cap.group_name("default/relay", "us-east-1c"): 150.0}
    return cap.plan_capacity(state(objs, now=now, ready=ready, jobs=[job], hydration=hydration))


def _asked(plan: cap.Plan) -> int:
    return sum(a.desired for a in plan.of(cap.CreateNodeGroup) if isinstance(a, cap.CreateNodeGroup))


def test_a_stage_after_progress_is_prewarmed_when_the_previous_job_reaches_its_fraction_within_the_lead() -> None:
    # lead = 150 s * 1.2 + 30 s + 26.8 s of hydration (2 x 10Gi by 4 agents at 200 MB/s) = 236.8 s.
    assert _asked(_baton(10)) == 0  # 10 % done in 1000 s: 80 % is 7000 s away
    assert _asked(_baton(60)) == 0  # 80 % in 333 s: beyond the lead
    create = _baton(70).of(cap.CreateNodeGroup)[0]  # 80 % in 143 s: within the lead
    assert isinstance(create, cap.CreateNodeGroup)
    assert (create.desired, create.zone) == (4, "us-east-1c")
    assert "stage train" in create.reason
    assert "data 27s" in create.reason


def test_a_stage_after_progress_runs_once_the_fraction_is_reached_and_ends_with_its_duration() -> None:
    assert _asked(_baton(85)) == 4
    # 80 % was reached at JOB_START + 800 s (linear rate); the stage ends 3600 s later.
    assert _asked(_baton(100, now=JOB_START + 4401, completed=JOB_START + 1000)) == 0


def test_a_stage_after_progress_waits_while_the_job_shows_no_progress() -> None:
    assert _asked(_baton(0)) == 0
    kbl = kbl_object("relay", stages=BATON, status={"blueprintStart": BATON_START}, annotations={labels.KBL_DATASET: "reads"})
    plan = cap.plan_capacity(state([*base_nodes(), kbl, placed_dataset("reads", [["gen-c0", "gen-c1"]])]))
    assert _asked(plan) == 0  # no Job seen yet: its start is unknown, nothing is asked


def test_a_stage_after_a_stage_without_a_job_is_noted() -> None:
    stages: list[dict[str, Any]] = [{"name": "a"}, {"name": "b", "after": {"stage": "a", "fraction": 0.5}, "needs": {"nodes": 1}}]
    plan = cap.plan_capacity(state([*base_nodes(), kbl_object("k", stages=stages, status={"blueprintStart": BATON_START})]))
    notes = [a.message for a in plan.of(cap.Note) if isinstance(a, cap.Note)]
    assert any("names no Job" in n for n in notes)


def test_a_slower_measured_hydration_asks_for_the_stage_earlier() -> None:
    group = cap.group_name("default/relay", "us-east-1c")
    assert _asked(_baton(60)) == 0  # default 200 MB/s: 80 % in 333 s is beyond the 236.8 s lead
    # Measured 20 MB/s per node: 268 s of hydration, lead 478 s: the same moment is within it.
    assert _asked(_baton(60, hydration={group: 20e6})) == 4


def test_the_lead_is_node_ready_time_plus_the_time_the_agents_need_to_hydrate_the_data() -> None:
    assert cap.hydrate_seconds(8e9, 4, 200e6) == 10.0
    assert cap.hydrate_seconds(0, 4, 200e6) == 0.0
    assert cap.hydrate_seconds(1.0, 0, 200e6) == float("inf")
    erasure = cap.stored_bytes(_dataset_of(dataset_object("e", shards=4, shard_size="1000", redundancy=Erasure(4, 2))))
    assert erasure == 6000.0  # 4000 bytes as 4 + 2 pieces of 250


def _dataset_of(obj: Mapping[str, Any]) -> DataSet:
    return DataSet.from_object(obj)


def _windowed(start: str, hours: int, **kw: Any) -> dict[str, Any]:
    obj = kbl_object("nightly", **kw)
    obj["spec"]["window"] = {"start": start, "durationSeconds": hours * 3600}
    return obj


def test_a_closed_window_takes_the_group_to_zero_through_the_safe_path_even_when_busy() -> None:
    # T0 is 2026-11-18T00:00:00Z + ...; a window 12:00-13:00 UTC is closed at T0's time of day.
    now = T0
    assert not KBL.from_object(_windowed(_hhmm(now + 3 * 3600), 1)).window.is_open(now)  # type: ignore[union-attr]
    group, nodes = _running_group("nightly", "us-east-1a", 2, now)
    objs = [*base_nodes(), *nodes, _windowed(_hhmm(now + 3 * 3600), 1, min_size=2)]
    objs += [pod_object(f"p{i}", kbl="nightly", node=nodes[i]["metadata"]["name"]) for i in range(2)]
    objs.append(pod_object("late", kbl="nightly"))
    plan = cap.plan_capacity(state(objs, now=now, groups=[group]))
    cordons = [a for a in plan.of(cap.CordonNode) if isinstance(a, cap.CordonNode)]
    assert {a.node for a in cordons} == {n["metadata"]["name"] for n in nodes}
    assert all("window closed" in a.reason for a in cordons)
    assert not plan.of(cap.CreateNodeGroup)
    assert not [a for a in plan.of(cap.ResizeNodeGroup) if isinstance(a, cap.ResizeNodeGroup) and a.desired > 2]
    assert [(v.reason, v.pods) for v in plan.verdicts] == [("window-closed", ("default/late",))]
    for obj in nodes:  # step 1 done, data moved off: the pods are evicted (a closing group takes busy nodes)
        _leaving(obj, "window closed")
        obj["metadata"]["annotations"][labels.DATA_DRAINED] = format_time(now + 1)
    later = cap.plan_capacity(state(objs, now=now + 2, groups=[group]))
    assert {a.node for a in later.of(cap.EvictPods) if isinstance(a, cap.EvictPods)} == {n["metadata"]["name"] for n in nodes}


def test_an_opening_window_grows_the_group_back_and_its_bound_data_follows_it() -> None:
    now = T0
    name = cap.group_name("default/nightly", "us-east-1a")
    empty = cap.GroupState(name, "default/nightly", "us-east-1a", "m6i.xlarge", desired=0)
    bound = dataset_object("night-data", shards=2, shard_size="1Gi", redundancy=Replicas(2), node_selector={labels.KBL_LABEL: "nightly"})
    objs = [*base_nodes(), _windowed(_hhmm(now - 60), 2, min_size=2), bound]
    plan = cap.plan_capacity(state(objs, now=now, groups=[empty]))
    resizes = [a for a in plan.of(cap.ResizeNodeGroup) if isinstance(a, cap.ResizeNodeGroup)]
    assert [(a.group, a.previous, a.desired) for a in resizes] == [(name, 0, 2)]
    kbl = KBL.from_object(objs[-2])
    new_labels = cap.new_node_labels(kbl, name, "us-east-1a", "m6i.xlarge")
    assert cap.follows_group(DataSet.from_object(bound), new_labels)  # the reconciler places it back on them


def _hhmm(epoch_s: float) -> str:
    of_day = int(epoch_s) % 86400
    return f"{of_day // 3600:02d}:{of_day % 3600 // 60:02d}"


def _group_nodes(fake: FakeProvider) -> list[dict[str, Any]]:
    return fake.node_objects()


def _running_group(kbl: str, zone: str, n: int, now: float) -> tuple[cap.GroupState, list[dict[str, Any]]]:
    clock = [now - 3600]
    fake = FakeProvider(lambda: clock[0], ready_delay_s=60)
    name = cap.group_name(f"default/{kbl}", zone)
    fake.create_group(NodeGroupSpec(name, f"default/{kbl}", zone, "m6i.xlarge", n, 10, labels={"kbl.io/kbl": kbl}), "t")
    clock[0] = now
    nodes = fake.node_objects()
    for obj in nodes:
        obj["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    return cap.GroupState(name, f"default/{kbl}", zone, "m6i.xlarge", n), nodes


def test_utilization_above_high_grows_and_the_cooldown_holds_it() -> None:
    group, nodes = _running_group("u", "us-east-1a", 4, T0)
    objs = [*base_nodes(), *nodes, kbl_object("u")]
    objs += [pod_object(f"p{i}", kbl="u", node=nodes[i]["metadata"]["name"]) for i in range(4)]
    util = {"default/u": cap.Utilization(cpu=0.95, memory=0.4)}
    resize = cap.plan_capacity(state(objs, groups=[group], util=util)).of(cap.ResizeNodeGroup)
    assert [(a.previous, a.desired) for a in resize if isinstance(a, cap.ResizeNodeGroup)] == [(4, 5)]
    cooled = kbl_object("u", status={"nodeGroups": [{"name": group.name, "lastUtilizationScale": T0 - 60}]})
    held = cap.plan_capacity(state([*objs[:-5], cooled, *objs[-4:]], groups=[group], util=util))
    assert not held.of(cap.ResizeNodeGroup)


def test_utilization_inside_the_band_changes_nothing() -> None:
    group, nodes = _running_group("u", "us-east-1a", 3, T0)
    objs = [*base_nodes(), *nodes, kbl_object("u")]
    objs += [pod_object(f"p{i}", kbl="u", node=nodes[i]["metadata"]["name"]) for i in range(3)]
    for value in (0.31, 0.5, 0.79):
        plan = cap.plan_capacity(state(objs, groups=[group], util={"default/u": cap.Utilization(cpu=value)}))
        assert not plan.of(cap.ResizeNodeGroup), value
        assert not plan.of(cap.CordonNode), value


def _leaving(obj: dict[str, Any], reason: str = "idle", since: float = T0) -> None:
    """Step 1 done: the controller cordoned the node and asked for its data to move."""
    obj["spec"]["unschedulable"] = True
    obj["metadata"]["annotations"][cap.SCALE_DOWN_ANNOTATION] = str(since)
    obj["metadata"]["annotations"][labels.DRAIN] = reason


def test_idle_nodes_are_cordoned_and_drained_then_removed_one_by_one() -> None:
    group, nodes = _running_group("idle", "us-east-1a", 2, T0)
    objs = [*base_nodes(), *nodes, kbl_object("idle")]
    plan = cap.plan_capacity(state(objs, groups=[group]))
    assert {a.node for a in plan.of(cap.CordonNode) if isinstance(a, cap.CordonNode)} == {n["metadata"]["name"] for n in nodes}
    for obj in nodes:
        _leaving(obj)
    plan = cap.plan_capacity(state(objs, groups=[group]))
    assert len(plan.of(cap.RemoveNode)) == 2


def test_a_leaving_node_that_holds_the_last_replica_waits_for_its_data_to_move() -> None:
    group, nodes = _running_group("data", "us-east-1a", 2, T0)
    holder = nodes[0]["metadata"]["name"]
    dataset = placed_dataset("reads", [[holder], ["gen-a0"]], replicas=1)
    objs = [*base_nodes(), *nodes, kbl_object("data"), dataset]
    plan = cap.plan_capacity(state(objs, groups=[group]))
    # Cordon and drain first: that is what asks the placement reconciler to move the piece.
    assert {a.node for a in plan.of(cap.CordonNode) if isinstance(a, cap.CordonNode)} == {holder, nodes[1]["metadata"]["name"]}
    for obj in nodes:
        _leaving(obj)
    plan = cap.plan_capacity(state(objs, groups=[group]))
    waits = [a for a in plan.of(cap.WaitForData) if isinstance(a, cap.WaitForData)]
    assert [w.node for w in waits] == [holder]
    assert "default/reads" in waits[0].reason
    assert [a.node for a in plan.of(cap.RemoveNode) if isinstance(a, cap.RemoveNode)] == [nodes[1]["metadata"]["name"]]


def test_scale_down_waits_for_re_replication_of_degraded_redundancy() -> None:
    group, nodes = _running_group("data", "us-east-1a", 1, T0)
    holder = nodes[0]["metadata"]["name"]
    _leaving(nodes[0])
    # The piece moved off (no target slot names the node), but only one replica of two is left.
    objs = [*base_nodes(), *nodes, kbl_object("data"), placed_dataset("reads", [["gen-b0"]], replicas=2)]
    checked: list[frozenset[str]] = []

    def short(cluster: Any, datasets: Any, remove: Any, keep_full: bool) -> cap.RemovalVerdict:
        checked.append(frozenset(remove))
        return cap.RemovalVerdict(not keep_full, {} if not keep_full else {"default/reads": 1})

    plan = cap.plan_capacity(state(objs, groups=[group]), removal_check=short)
    assert [a.node for a in plan.of(cap.WaitForData) if isinstance(a, cap.WaitForData)] == [holder]
    assert not plan.of(cap.RemoveNode)
    relaxed = cap.plan_capacity(state(objs, groups=[group]), cap.CapacitySettings(keep_full_redundancy=False), removal_check=short)
    assert relaxed.of(cap.RemoveNode)
    assert checked == [frozenset({holder})] * 2


def test_a_node_with_an_agent_waits_for_the_reconcilers_data_drained_signal() -> None:
    group, nodes = _running_group("data", "us-east-1a", 1, T0)
    name = nodes[0]["metadata"]["name"]
    _leaving(nodes[0], since=T0 - 100)
    agent = {"apiVersion": "kbl.io/v1alpha1", "kind": "NodeHoldings", "metadata": {"name": name}, "status": {"datasets": []}}
    objs = [*base_nodes(), *nodes, kbl_object("data")]
    with_agent = state(objs, groups=[group], holdings=[agent])
    assert [a.kind for a in cap.plan_capacity(with_agent).actions if a.kind != "AnnotateNode"] == ["WaitForData"]
    # Standing in for the placement reconciler's signal: an old one (before this drain) does not count.
    nodes[0]["metadata"]["annotations"][labels.DATA_DRAINED] = "2020-01-01T00:00:00Z"
    assert cap.plan_capacity(state(objs, groups=[group], holdings=[agent])).of(cap.WaitForData)
    nodes[0]["metadata"]["annotations"][labels.DATA_DRAINED] = format_time(T0)
    nodes[0]["metadata"]["annotations"][labels.LAST_PIECES] = "3"
    assert cap.plan_capacity(state(objs, groups=[group], holdings=[agent])).of(cap.WaitForData)
    nodes[0]["metadata"]["annotations"][labels.LAST_PIECES] = "0"
    assert [a.kind for a in cap.plan_capacity(state(objs, groups=[group], holdings=[agent])).actions if a.kind != "AnnotateNode"] == [
        "RemoveNode"
    ]


def test_do_not_disrupt_nodes_are_never_candidates() -> None:
    group, nodes = _running_group("keep", "us-east-1a", 2, T0)
    for obj in nodes:
        obj["metadata"]["annotations"]["kbl.io/do-not-disrupt"] = "true"
    plan = cap.plan_capacity(state([*base_nodes(), *nodes, kbl_object("keep")], groups=[group]))
    assert not plan.of(cap.CordonNode)
    assert not plan.of(cap.RemoveNode)


def test_groups_of_deleted_kbls_are_drained_then_deleted() -> None:
    ghost = cap.GroupState("kbl-default-gone-us-east-1a", "default/gone", "us-east-1a", "m6i.xlarge", desired=2)
    plan = cap.plan_capacity(state(base_nodes(), groups=[ghost]))
    assert [a.kind for a in plan.actions] == ["ResizeNodeGroup"]
    empty = cap.GroupState(ghost.name, ghost.kbl, ghost.zone, ghost.instance_type, desired=0)
    assert [a.kind for a in cap.plan_capacity(state(base_nodes(), groups=[empty])).actions] == ["DeleteNodeGroup"]


def test_group_names_are_deterministic_unique_and_short() -> None:
    a = cap.group_name("default/" + "x" * 80, "us-east-1a")
    b = cap.group_name("default/" + "x" * 79 + "y", "us-east-1a")
    assert a != b
    assert len(a) <= 63
    assert len(b) <= 63
    assert a == cap.group_name("default/" + "x" * 80, "us-east-1a")


def test_actions_serialise_to_one_json_object_each() -> None:
    objs = [*base_nodes(), kbl_object("k"), pod_object("p", kbl="k")]
    lines = cap.plan_capacity(state(objs)).to_json_lines().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert parsed[0]["action"] == "CreateNodeGroup"
    assert parsed[0]["kbl"] == "default/k"


def test_removal_verdict_counts_shards_short_of_pieces() -> None:
    ds = placed_dataset("d", [["gen-a0", "gen-b0"], ["gen-a0", "gen-a1"], ["gen-c0", "gen-c1"]])
    s = state([*base_nodes(), ds])
    assert cap.removal_verdict(s.cluster, s.datasets, {"gen-c0"}, False).safe
    both = cap.removal_verdict(s.cluster, s.datasets, {"gen-a0", "gen-a1"}, False)
    assert not both.safe
    assert dict(both.at_risk) == {"default/d": 1}
    strict = cap.removal_verdict(s.cluster, s.datasets, {"gen-a0"}, True)
    assert dict(strict.at_risk) == {"default/d": 2}


def _verdicts(objs: list[dict[str, Any]], affinity: Mapping[str, Any] | None = None) -> dict[str, str]:
    plan = cap.plan_capacity(state(objs, affinity=affinity))
    return {pod: v.reason for v in plan.verdicts for pod in v.pods}


def test_a_new_node_helps_only_pods_that_would_schedule_on_it() -> None:
    kbl = kbl_object("k")
    plain = pod_object("plain", kbl="k")
    untolerated = pod_object("untolerated", kbl="k")
    untolerated["spec"]["tolerations"] = []
    selector = pod_object("selector", kbl="k")
    selector["spec"]["nodeSelector"] = {"disktype": "nvme"}
    linux = pod_object("linux", kbl="k")
    linux["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux", labels.ZONE: "us-east-1a"}
    big = pod_object("big", kbl="k", cpu="64")
    objs = [*base_nodes(), kbl, plain, untolerated, selector, linux, big]
    other_zone = cap.Requirement(labels.ZONE, "In", ("us-east-1c",))
    affinity: dict[str, cap.Affinity] = {"default/plain": ((other_zone,), (cap.Requirement(labels.KBL_LABEL, "Exists"),))}
    verdicts = _verdicts(objs, affinity)
    assert verdicts == {
        "default/plain": "helps",  # the second term matches the group's nodes
        "default/linux": "helps",
        "default/untolerated": "taint",
        "default/selector": "node-selector",
        "default/big": "too-big",
    }
    affinity = {"default/plain": ((other_zone,),)}
    assert _verdicts(objs, affinity)["default/plain"] == "node-affinity"
    create = cap.plan_capacity(state(objs)).of(cap.CreateNodeGroup)[0]
    assert isinstance(create, cap.CreateNodeGroup)
    assert create.desired == 1  # plain and linux: 1 CPU each on one node; the others ask for nothing


def test_required_pods_are_helped_only_when_their_dataset_follows_the_group() -> None:
    required = {labels.POD_LOCALITY: "required"}
    pods = [
        pod_object("r", kbl="k", dataset="reads", annotations=required),
        pod_object("gone", kbl="k", dataset="nope", annotations=required),
    ]
    elsewhere = placed_dataset("reads", [["gen-b0"]])
    verdicts = _verdicts([*base_nodes(), kbl_object("k"), elsewhere, *pods])
    assert verdicts == {"default/r": "data-elsewhere", "default/gone": "no-dataset"}
    bound = placed_dataset("reads", [["gen-b0"]])
    bound["spec"]["nodeSelector"] = {labels.KBL_LABEL: "k"}
    assert _verdicts([*base_nodes(), kbl_object("k"), bound, *pods])["default/r"] == "helps"


def test_required_affinity_is_read_from_the_pod_spec() -> None:
    pod = pod_object("p", kbl="k")
    pod["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}, {"key": "b", "operator": "DoesNotExist"}]},
        {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]},
    ]}}}  # fmt: skip
    terms = cap.required_affinity(pod)
    assert cap.affinity_matches(terms, {"a": "2"})
    assert not cap.affinity_matches(terms, {"a": "2", "b": "x"})
    assert cap.affinity_matches(terms, {"cores": "16"})
    assert not cap.affinity_matches(terms, {"cores": "4"})


def test_instance_shapes_come_from_the_catalog_given_and_unknown_types_are_reported() -> None:
    objs = [*base_nodes(), kbl_object("k", instance_types=("x9.huge",)), pod_object("p", kbl="k")]
    plan = cap.plan_capacity(state(objs))
    assert not plan.of(cap.CreateNodeGroup)
    assert any("not in the provider's catalog" in a.message for a in plan.of(cap.Note) if isinstance(a, cap.Note))
    shape = cap.estimate_allocatable("m6i.xlarge", 4, 16384, cap.eni_max_pods(4, 15))
    assert (shape.cpu_m, shape.pods) == (3920, 58)
    assert shape.memory_b == (16384 - 255 - 11 * 58 - 100) * 2**20


# ---------------------------------------------------------------------------- launches (issue 22)
def test_the_cheapest_wished_type_that_fits_every_pending_pod_comes_first() -> None:
    wished = ("m6i.4xlarge", "m6i.large", "c6i.xlarge", "m6i.xlarge")
    objs = [*base_nodes(), kbl_object("k", instance_types=wished), pod_object("p", kbl="k", cpu="3")]
    prices = {("m6i.4xlarge", "ON_DEMAND"): 0.768, ("m6i.large", "ON_DEMAND"): 0.096, ("m6i.xlarge", "ON_DEMAND"): 0.192}
    create = cap.plan_capacity(dataclasses.replace(state(objs), prices=prices)).of(cap.CreateNodeGroup)[0]
    assert isinstance(create, cap.CreateNodeGroup)
    # m6i.large is cheapest but too small; c6i.xlarge has no price: after every priced type.
    assert create.instance_types == ("m6i.xlarge", "m6i.4xlarge", "c6i.xlarge")
    assert (create.instance_type, create.price_per_hour) == ("m6i.xlarge", 0.192)


def _short_group(failures: tuple[cap.LaunchFailure, ...], last_up: float) -> tuple[list[dict[str, Any]], cap.GroupState]:
    name = cap.group_name("default/k", "us-east-1a")
    kbl = kbl_object("k", status={"nodeGroups": [{"name": name, "lastScaleUp": last_up}]})
    group = cap.GroupState(name, "default/k", "us-east-1a", "m6i.xlarge", desired=2, max_size=10, failures=failures)
    pods = [pod_object(f"p{i}", kbl="k", cpu="3", dataset="reads") for i in range(2)]
    objs = [*base_nodes(), kbl, placed_dataset("reads", [["gen-a0"]]), *pods]
    return objs, group


def test_a_short_group_with_a_capacity_error_since_its_last_scale_up_is_given_up_and_the_next_zone_grows() -> None:
    ice = cap.LaunchFailure("InsufficientInstanceCapacity", "no m6i.xlarge capacity", T0 - 10, "m6i.xlarge")
    objs, group = _short_group((ice,), last_up=T0 - 20)
    plan = cap.plan_capacity(state(objs, groups=[group]))
    (back,) = plan.of(cap.BackOffNodeGroup)
    assert isinstance(back, cap.BackOffNodeGroup)
    assert (back.failures, back.until_s - T0, back.given_up) == (1, 300.0, 2)
    resize = [a for a in plan.of(cap.ResizeNodeGroup) if isinstance(a, cap.ResizeNodeGroup) and a.group == group.name]
    assert [(r.previous, r.desired) for r in resize] == [(2, 0)]
    (create,) = [a for a in plan.of(cap.CreateNodeGroup) if isinstance(a, cap.CreateNodeGroup)]
    assert create.zone != "us-east-1a"
    assert create.desired == 2
    assert create.cross_zone_bytes > 0
    # The instances the cloud did launch are on their way: only the rest is given up.
    objs, group = _short_group((ice,), last_up=T0 - 20)
    launched_one = cap.plan_capacity(state(objs, groups=[dataclasses.replace(group, launched=1)]))
    assert [(r.previous, r.desired) for r in launched_one.of(cap.ResizeNodeGroup) if isinstance(r, cap.ResizeNodeGroup)] == [(2, 1)]
    (other,) = [a for a in launched_one.of(cap.CreateNodeGroup) if isinstance(a, cap.CreateNodeGroup)]
    assert other.desired == 1  # one pod is served by the launched instance, one by the next zone
    # An ongoing issue without a time (EKS health) counts only once the request had its grace time.
    issue = cap.LaunchFailure("AsgInstanceLaunchFailures", "Could not launch On-Demand Instances")
    objs, group = _short_group((issue,), last_up=T0 - 60)
    assert not cap.plan_capacity(state(objs, groups=[group])).of(cap.BackOffNodeGroup)
    objs, group = _short_group((issue,), last_up=T0 - 180)
    assert cap.plan_capacity(state(objs, groups=[group])).of(cap.BackOffNodeGroup)
    # A failure from before the last scale-up is history: the group waits for its nodes.
    objs, group = _short_group((ice,), last_up=T0 - 5)
    quiet = cap.plan_capacity(state(objs, groups=[group]))
    assert not quiet.of(cap.BackOffNodeGroup)
    assert not quiet.of(cap.CreateNodeGroup)
    # And so does a group within the max provision time; past it, it is given up.
    objs, group = _short_group((), last_up=T0 - 899)
    assert not cap.plan_capacity(state(objs, groups=[group])).of(cap.BackOffNodeGroup)
    objs, group = _short_group((), last_up=T0 - 900)
    assert cap.plan_capacity(state(objs, groups=[group])).of(cap.BackOffNodeGroup)


def test_backoff_doubles_from_five_minutes_to_thirty_like_cluster_autoscaler() -> None:
    settings = cap.CapacitySettings()
    assert [cap.backoff_seconds(n, settings) for n in range(7)] == [0, 300, 600, 1200, 1800, 1800, 1800]
