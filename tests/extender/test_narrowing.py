"""Narrowing preferred data pods before kube-scheduler samples (extender/narrowing.py).

Two kinds of tests: the pure rules (the webhook's gate, the controller's release patch and the
API server's pod update rules it must pass), and whole runs through the faithful kube-scheduler
driver (benchmarks/driving.py), which plays the API server (admission at creation, gated pods
held out of the queue, patches validated by the update rules, deletes) and the Job controller
(a deleted pod's replacement, created from its template and admitted again), with the real
extender over HTTP and the real gate controller acting only through that API.

What the driver leaves out of the real API server: the strategic-merge patch type (the
controller sends a JSON merge patch, which the driver applies as RFC 7386 says), field
validation beyond the scheduling directives, and the latency of watch events (it delivers
every event before the next scheduling cycle).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from benchmarks.driving import NodeAffinity, PodArrival, SchedulerSettings
from benchmarks.policies import PolicySettings, run_policy
from benchmarks.scale import EXHAUSTIVE_SCHEDULER, KBL_SCHEDULER, api_side, with_locality
from benchmarks.traces import Trace, TraceSettings, make_trace
from extender.admission import AdmissionSettings, apply_patch, review
from extender.costs import CostTables
from extender.narrowing import (
    GATE,
    PREFERRED,
    GateController,
    candidate_weights,
    choose,
    gate_patch,
    is_gated,
    mutation_error,
    release_patch,
    tightened_terms,
)
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from extender.wishes import resolve
from kube.memory import merge_patch
from tests.extender import scenarios as sc
from tests.extender.fakes import PodWriter
from topology.examples import as_list
from topology.pods import Pod
from topology.snapshots import load_snapshot

ROUTING = AdmissionSettings(scheduler_name=KBL_SCHEDULER, exhaustive_scheduler_name=EXHAUSTIVE_SCHEDULER)
OWNER = [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}]


def owned(pod: dict[str, Any]) -> dict[str, Any]:
    pod["metadata"]["ownerReferences"] = OWNER
    pod["spec"]["schedulerName"] = KBL_SCHEDULER
    return pod


def admitted(pod: dict[str, Any], gate: Any) -> dict[str, Any]:
    body = {"request": {"uid": "u", "operation": "CREATE", "object": pod}}
    response = review(body, load_snapshot(sc.snapshot()).cluster(), ROUTING, gate=gate)["response"]
    assert response["allowed"] is True
    return apply_patch(pod, json.loads(base64.b64decode(response["patch"]))) if "patch" in response else pod


# --------------------------------------------------------------------------- the webhook
def test_a_preferred_data_pod_with_an_owner_is_gated_instead_of_routed_while_the_controller_is_alive() -> None:
    pod = admitted(owned(sc.pod(shards="2")), gate=lambda obj: True)
    assert is_gated(pod)
    assert pod["spec"]["schedulerName"] == KBL_SCHEDULER  # not routed: it will be narrowed by name


def test_with_the_controller_not_alive_the_webhook_routes_as_before() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    controller = GateController(state, writer=None, leading=lambda: False)  # type: ignore[arg-type]
    pod = admitted(owned(sc.pod(shards="2")), gate=controller.should_gate)
    assert not is_gated(pod)
    assert pod["spec"]["schedulerName"] == EXHAUSTIVE_SCHEDULER


def test_a_bare_pod_is_never_gated_since_nothing_would_recreate_it() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    controller = GateController(state, writer=None)  # type: ignore[arg-type]
    bare = sc.pod(shards="2")
    bare["spec"]["schedulerName"] = KBL_SCHEDULER
    pod = admitted(bare, gate=controller.should_gate)
    assert not is_gated(pod)
    assert pod["spec"]["schedulerName"] == EXHAUSTIVE_SCHEDULER


@pytest.mark.parametrize(
    "pod",
    [
        sc.pod(dataset_name=None, shards=None),  # no data wish: keeps the default profile's speed
        sc.pod(locality="required", shards="0-1"),  # narrowed by name at creation already
    ],
)
def test_pods_with_no_preferred_data_wish_are_not_gated(pod: dict[str, Any]) -> None:
    out = admitted(owned(pod), gate=lambda obj: True)
    assert not is_gated(out)
    assert out["spec"]["schedulerName"] == KBL_SCHEDULER


# --------------------------------------------------------------------------- the update rules
def gated_pod(**changes: Any) -> dict[str, Any]:
    pod = owned(sc.pod(shards="2"))
    pod["metadata"]["resourceVersion"] = "7"
    pod = apply_patch(pod, gate_patch(pod))
    pod["spec"].update(changes)
    return pod


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"schedulingGates": [{"name": "other.io/gate"}, {"name": GATE}]},
        {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]},
                            {
                                "matchExpressions": [{"key": "b", "operator": "Exists"}],
                                "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["x"]}],
                            },
                        ]
                    }
                }
            }
        },
    ],
)
def test_the_release_patch_is_accepted_by_the_pod_update_rules_and_only_tightens(spec: dict[str, Any]) -> None:
    old = gated_pod(**spec)
    new = merge_patch(old, {k: v for k, v in release_patch(old, ["n1", "n2"]).items() if k != "metadata"})
    assert mutation_error(old, new) is None
    assert not is_gated(new)
    assert [g["name"] for g in new["spec"].get("schedulingGates") or []] == [g for g in ["other.io/gate"] if spec.get("schedulingGates")]
    names = NodeAffinity.of(new).names
    assert names == frozenset({"n1", "n2"})  # every term now also requires the names: PreFilter narrows to them
    assert len(tightened_terms(old, ["n1"])) == max(1, len(NodeAffinity.of(old).required or ()))


def test_the_release_patch_ranks_the_candidates_with_preferred_terms_the_gated_pod_rules_accept() -> None:
    own = {"weight": 7, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}
    old = gated_pod(affinity={"nodeAffinity": {PREFERRED: [own]}})
    weights = candidate_weights([0.0, 10.0, 10.0, 40.0])
    assert weights == [100, 75, 75, 1]  # cheapest 100, dearest 1, linear between
    new = merge_patch(old, {k: v for k, v in release_patch(old, ["a", "b", "c", "d"], weights).items() if k != "metadata"})
    # KEP-3838: while gated, preferred terms may change in any way (they are not authoritative)
    assert mutation_error(old, new) is None
    terms = new["spec"]["affinity"]["nodeAffinity"][PREFERRED]
    assert terms[0] == own  # the pod's own terms are kept (a merge patch replaces the whole list)
    ranked = {v: t["weight"] for t in terms[1:] for f in t["preference"]["matchFields"] for v in f["values"]}
    assert ranked == {"a": 100, "b": 75, "c": 75, "d": 1}
    assert len(terms) == 4  # one term per distinct weight
    assert candidate_weights([5.0, 5.0]) == [100, 100]
    # once ungated, the preferred terms are as immutable as the rest
    changed = merge_patch(new, {"spec": {"affinity": {"nodeAffinity": {PREFERRED: [own]}}}})
    assert mutation_error(new, changed) is not None


def test_the_update_rules_reject_loosening_adding_gates_and_changing_an_ungated_pod() -> None:
    old = gated_pod(
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}]
                }
            }
        }
    )
    loosened = merge_patch(
        old,
        {
            "spec": {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
                        }
                    }
                }
            }
        },
    )
    assert mutation_error(old, loosened) is not None  # the existing requirement was dropped
    more_terms = merge_patch(
        old,
        {
            "spec": {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                *tightened_terms(old, ["n1"]),
                                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]},
                            ]
                        }
                    }
                }
            }
        },
    )
    assert mutation_error(old, more_terms) is not None  # an ORed term widens
    new_gate = merge_patch(old, {"spec": {"schedulingGates": [{"name": GATE}, {"name": "x"}]}})
    assert mutation_error(old, new_gate) is not None
    ungated = merge_patch(old, {"spec": {"schedulingGates": None}})
    assert mutation_error(old, ungated) is None
    assert (
        mutation_error(ungated, merge_patch(ungated, release_patch(old, ["n1"])["spec"] and {"spec": {"nodeSelector": {"k": "v"}}}))
        is not None
    )
    other_field = merge_patch(old, {"spec": {"schedulerName": "x"}})
    assert mutation_error(old, other_field) is not None


# --------------------------------------------------------------------------- whole runs
def small_trace(pods: int = 40) -> Trace:
    trace = make_trace(TraceSettings(racks_per_zone=2, hosts_per_rack=4, pods=pods, burst_pods=10))
    return with_locality(trace, "preferred", False)


def state_of(trace: Trace) -> ClusterState:
    return ClusterState.from_snapshot(load_snapshot(as_list([*trace.node_objects, *trace.dataset_objects()])))


def drive(trace: Trace, setup: Any, percentage: int = 0) -> Any:
    horizon = max(a.arrival_s + a.duration_s for a in trace.arrivals) + 3600.0
    sched = SchedulerSettings(horizon_s=horizon, percentage_of_nodes_to_score=percentage, profiles={EXHAUSTIVE_SCHEDULER: 100})
    return run_policy("kbl", trace, PolicySettings(weight=5), sched, setup=setup)


def test_narrowed_pods_are_offered_only_their_candidates_and_all_schedule() -> None:
    trace = small_trace()
    run = drive(trace, api_side(True, candidates=4))
    assert run.pending == 0
    assert run.gated == 0
    assert run.scheduled == len(trace.arrivals)
    assert run.routed.get(EXHAUSTIVE_SCHEDULER, 0) == run.deleted  # only replacements are routed
    assert run.offered_per_data_pod <= 4 * run.attempts / run.data_pods  # at most K names per attempt
    assert run.offered_per_data_pod < len(trace.nodes)


def test_a_pod_whose_narrowed_nodes_fill_still_schedules_within_the_bound() -> None:
    trace = small_trace(10)
    first = trace.arrivals[0]
    state = state_of(trace)
    with state.lock:  # the set the controller will narrow the pod to (nothing is bound yet)
        chosen = choose(state, CostTables(state), first.pod, state.used_all()[0] * 0, 2)
    assert chosen is not None
    # Pods of another team, pinned to those nodes and as large as a node, created in the same
    # instant: kube-scheduler binds them before the narrowed pod's ungated cycle.
    fillers = []
    for i, name in enumerate(chosen.names):
        node = next(n for n in trace.nodes if n.name == name)
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"filler-{i}", "namespace": "bench", "uid": f"filler-{i}"},
            "spec": {
                "schedulerName": KBL_SCHEDULER,
                "nodeSelector": {"kubernetes.io/hostname": name},
                "containers": [{"name": "c", "resources": {"requests": {"cpu": f"{node.allocatable.cpu_m}m"}}}],
            },
        }
        assert node.labels.get("kubernetes.io/hostname") == name
        fillers.append(PodArrival(obj, Pod.from_object(obj), first.arrival_s, 7200.0))
    trace = dataclasses.replace(trace, arrivals=[first, *fillers])
    timeout = 30.0
    run = drive(trace, api_side(True, candidates=2, timeout_s=timeout))
    assert run.result is not None
    outcomes = run.result.outcomes
    assert outcomes[first.pod.key].deleted  # stuck on its full candidates, then deleted
    replacement = next(o for o in outcomes.values() if o.origin == first.pod.key)
    assert replacement.node is not None
    assert replacement.node not in chosen.names
    assert replacement.start_s is not None
    assert replacement.start_s - first.arrival_s <= timeout + 2.0
    assert run.routed.get(EXHAUSTIVE_SCHEDULER) == 1  # the replacement was routed, not narrowed again
    assert run.pending == 0
    assert run.gated == 0


def test_with_the_controller_down_no_pod_is_gated_and_all_schedule_routed() -> None:
    trace = small_trace(20)
    run = drive(trace, api_side(True, leading=lambda: False))
    assert run.gated == 0
    assert run.pending == 0
    assert run.deleted == 0
    assert run.routed.get(EXHAUSTIVE_SCHEDULER) == len(trace.arrivals)  # every preferred data pod, as before


def test_with_the_webhook_down_pods_schedule_unnarrowed() -> None:
    # failurePolicy Ignore: pods are created as submitted, with neither the gate nor the
    # extender's resource, so with managedResources they skip the extender too and schedule on
    # kube-scheduler's own plugins alone (no locality): the failure mode manifests/README.md names
    trace = small_trace(20)
    run = drive(trace, api_side(True, webhook=False))
    assert run.gated == 0
    assert run.pending == 0
    assert run.deleted == 0
    assert run.routed == {}
    assert run.scheduled == len(trace.arrivals)
    assert run.extender_calls == 0


def test_a_narrowed_pod_never_reaches_the_extender_and_lands_on_its_cheapest_candidate_through_the_preferred_terms() -> None:
    trace = small_trace(40)
    cycles: list[tuple[dict[str, Any], Any]] = []

    def setup(scheduler: Any, state: Any) -> None:
        api_side(True, candidates=4)(scheduler, state)
        schedule_one = scheduler.schedule_one

        def recorded(pod: Pod, obj: dict[str, Any]) -> Any:
            attempt = schedule_one(pod, obj)
            cycles.append((obj, attempt))
            return attempt

        scheduler.schedule_one = recorded

    run = drive(trace, setup)
    assert run.pending == 0
    assert run.deleted == 0
    assert run.extender_calls == 0  # every pod was narrowed: not one filter, prioritize or bind
    assert run.offered_per_data_pod == 0
    assert len(cycles) == len(trace.arrivals)
    for obj, attempt in cycles:
        affinity = NodeAffinity.of(obj)
        weight = {v: w for w, term in affinity.preferred for f in term.get("matchFields") or () for v in f["values"]}
        assert set(attempt.offered) <= set(weight)  # only its candidates were feasible
        # the node it got is a cheapest one among the candidates that could take it then
        assert weight[attempt.node] == max(weight[n] for n in attempt.offered)
    full = drive(trace, None, percentage=100)
    assert run.cost <= full.cost * 1.02  # and the locality of scoring every node with the extender


def test_pods_gated_while_the_controller_stops_are_released_when_one_leads_again() -> None:
    trace = small_trace(10)
    leads = {"now": True}
    stopped_at = trace.arrivals[0].arrival_s

    def setup(scheduler: Any, state: Any) -> None:
        api_side(True, leading=lambda: leads["now"])(scheduler, state)
        original = scheduler.controllers[0]

        def control() -> bool:
            # the leader dies right after the first burst was gated (alive until then, so the
            # webhook gated it) and a standby takes over 20 s later
            if scheduler.now >= stopped_at and scheduler.now < stopped_at + 20.0 and scheduler._held:
                leads["now"] = False
            elif scheduler.now >= stopped_at + 20.0:
                leads["now"] = True
            busy: bool = original()
            return busy or not leads["now"]

        scheduler.controllers[0] = control

    run = drive(trace, setup)
    assert run.pending == 0
    assert run.gated == 0
    assert run.result is not None
    late = [o for o in run.result.outcomes.values() if o.start_s is not None and o.start_s >= stopped_at + 20.0]
    assert late  # the gated burst waited for the new leader, then scheduled


# --------------------------------------------------------------------------- the choice
def test_candidates_are_the_cheapest_nodes_with_room_holders_first_and_reservations_count() -> None:
    trace = small_trace(10)
    state = state_of(trace)
    pod = trace.arrivals[0].pod
    tables = CostTables(state)
    with state.lock:
        free = state.used_all()[0] * 0
        first = choose(state, tables, pod, free, 3)
        assert first is not None
        assert first.tier == "holders"  # the nodes holding its bytes come first
        wish = resolve(state.cluster, pod)
        cost = tables.node_costs(wish)
        ids = list(first.ids)
        assert [float(cost[i]) for i in ids] == sorted(float(cost[i]) for i in ids)
        assert float(cost[ids[-1]]) <= float(np.sort(cost)[len(ids) - 1]) + 1e-6  # none cheaper was left out
        # a node whose room is reserved by a released pod is skipped
        reserved = np.zeros((state.id_count, 3))
        reserved[ids[0]] = state.load(np.array([ids[0]]))[1][0]  # its whole allocatable
        second = choose(state, tables, pod, reserved, 3)
        assert second is not None
        assert ids[0] not in second.ids
        # nothing has room: no narrowing (the pod is released unchanged)
        assert choose(state, tables, pod, np.full((state.id_count, 3), 1e18), 3) is None


def test_a_gated_pod_the_controller_cannot_narrow_is_released_unchanged_at_once() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    writer = PodWriter(deletes=False)
    controller = GateController(state, writer)
    unplaced = owned(sc.pod("u", dataset_name="missing", shards="0"))
    controller.observe("ADDED", apply_patch(unplaced, gate_patch(unplaced)))
    report = controller.step()
    assert report.released_unchanged == 1
    assert writer.patches == [{"spec": {"schedulingGates": None}}]  # ungated, nothing required
    assert controller.waiting == 0


def test_the_timeout_of_a_narrowed_pod_starts_only_when_its_other_gates_are_gone() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    now = [0.0]
    writer = PodWriter()
    controller = GateController(state, writer, ExtenderSettings(narrow_release_timeout_s=30.0), clock=lambda: now[0])
    pod = gated_pod(schedulingGates=[{"name": "other.io/quota"}, {"name": GATE}])
    controller.observe("ADDED", pod)
    assert controller.step().narrowed == 1
    now[0] = 100.0  # another controller's gate still holds it: not stuck, not deleted
    controller.step()
    assert writer.deleted == []
    released = merge_patch(pod, {"spec": {"schedulingGates": None}})
    controller.observe("MODIFIED", released)  # the other gate removed at t = 100
    now[0] = 129.0
    controller.step()
    assert writer.deleted == []
    now[0] = 131.0  # unbound 31 s after it became schedulable
    controller.step()
    assert writer.deleted == [pod["metadata"]["name"]]
    assert controller.remembers("job-uid")
