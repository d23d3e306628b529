"""Pending-batch pricing: the slot a pod takes is charged what the other pending pods lose."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from extender.app import create_app
from extender.batching import displacement_costs
from extender.costs import CostTables
from extender.pricing import BatchPricing
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from kube.api import PODS, WatchEvent
from tests.extender import scenarios as sc
from topology.snapshots import load_snapshot

ALL = [f"node-{z}-{r}-{h}" for z in range(2) for r in range(2) for h in range(3)]


def brute_optimum(costs: np.ndarray, slots: np.ndarray, elsewhere: list[float]) -> float:
    """Cheapest assignment by enumeration: each pod on a node with a slot, or elsewhere."""
    pods, nodes = costs.shape
    best = np.inf
    for choice in itertools.product(range(-1, nodes), repeat=pods):
        used = np.bincount([c for c in choice if c >= 0], minlength=nodes)
        if (used > slots).any():
            continue
        total = sum(elsewhere[q] if c < 0 else costs[q, c] for q, c in enumerate(choice))
        best = min(best, total)
    return float(best)


def test_a_slot_is_charged_what_the_pending_pod_that_needs_it_would_lose() -> None:
    # q reads its data on node 0 (cost 0) and pays 100 on node 1; both nodes have one slot.
    assert displacement_costs(np.array([[0.0, 100.0]]), np.array([1, 1])).tolist() == [100.0, 0.0]
    # with two slots on node 0, taking one costs q nothing
    assert displacement_costs(np.array([[0.0, 100.0]]), np.array([2, 1])).tolist() == [0.0, 0.0]
    # a chain: q1 wants A (0) over B (10); q2 wants B (0) over C (30); C is free for everyone.
    # Taking A moves q1 to B, which moves q2 to C: 10 + 30.
    delta = displacement_costs(np.array([[0.0, 10.0, 50.0], [90.0, 0.0, 30.0]]), np.array([1, 1, 1]))
    assert delta.tolist() == [40.0, 30.0, 0.0]


def test_no_pending_pods_and_full_nodes_cost_nothing() -> None:
    assert displacement_costs(np.zeros((0, 3)), np.array([1, 1, 1])).tolist() == [0.0, 0.0, 0.0]
    assert displacement_costs(np.array([[0.0, 5.0]]), np.array([0, 0])).tolist() == [0.0, 0.0]
    assert displacement_costs(np.array([[np.inf, np.inf]]), np.array([1, 1])).tolist() == [0.0, 0.0]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda pods: st.tuples(
            st.lists(st.lists(st.integers(0, 50), min_size=pods + 1, max_size=pods + 1), min_size=pods, max_size=pods),
            st.lists(st.integers(0, 2), min_size=pods + 1, max_size=pods + 1),
        )
    )
)
def test_displacement_is_the_exact_marginal_cost_of_one_slot(case: tuple[list[list[int]], list[int]]) -> None:
    costs = np.array(case[0], dtype=np.float64)
    slots = np.array(case[1], dtype=np.int64)
    delta = displacement_costs(costs, slots)
    assert (delta >= 0).all()
    open_nodes = slots > 0
    if not open_nodes.any():
        assert (delta == 0).all()
        return
    # every pod sees every open node (nodes <= pods + 1): "elsewhere" is its dearest open node
    elsewhere = [float(costs[q, open_nodes].max()) for q in range(costs.shape[0])]
    base = brute_optimum(costs, slots, elsewhere)
    for n in np.flatnonzero(open_nodes).tolist():
        fewer = slots.copy()
        fewer[n] -= 1
        assert abs(delta[n] - (brute_optimum(costs, fewer, elsewhere) - base)) < 1e-6, (n, delta.tolist())


def _state(batch_limit: int = 32) -> ClusterState:
    # cpu 40 of 63.77: one such pod per node. node-1-0-0 (the other holder of shards 0-1) is full.
    busy = sc.pod("busy", dataset_name=None, shards=None, cpu="40", node_name="node-1-0-0")
    return ClusterState.from_snapshot(load_snapshot(sc.snapshot(pods=[busy])), ExtenderSettings(batch_limit=batch_limit))


def _pending(state: ClusterState, name: str, shards: str) -> None:
    state.apply(WatchEvent("ADDED", sc.pod(name, shards=shards, cpu="40")), PODS)


def test_batch_aware_choice_leaves_the_only_free_holder_to_the_pod_that_needs_it() -> None:
    # p reads shards 0-3: node-0-0-0 (holds 0-1) and node-0-1-0 (holds 2-3) cost it the same.
    # q, pending, reads shards 0-1: node-0-0-0 is its only free node-local choice.
    p = sc.pod("p", shards="0-3", cpu="40")
    plain = _state(batch_limit=0)
    _pending(plain, "q", "0-1")
    alone = sc.scores(sc.call(create_app(plain), "/prioritize", sc.names_args(p, ALL)))
    assert alone["node-0-0-0"] == alone["node-0-1-0"] == 10
    state = _state()
    _pending(state, "q", "0-1")
    aware = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(p, ALL)))
    assert aware["node-0-1-0"] == 10
    assert aware["node-0-0-0"] < 10
    # once q is bound elsewhere, nobody waits for node-0-0-0 any more
    state.apply(WatchEvent("MODIFIED", sc.pod("q", shards="0-1", cpu="40", node_name="node-0-0-1")), PODS)
    again = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(p, ALL)))
    assert again["node-0-0-0"] == again["node-0-1-0"] == 10
    assert again["node-0-0-1"] == 0  # full now: its locality is gone


def test_past_the_batch_limit_pods_are_scored_on_their_own() -> None:
    p = sc.pod("p", shards="0-3", cpu="40")
    state = _state(batch_limit=1)
    _pending(state, "q1", "0-1")
    _pending(state, "q2", "0-1")
    q1 = state.pod("uid-q1")
    assert q1 is not None
    assert BatchPricing(state, CostTables(state)).displacement(q1) is not None  # q1 sees one other pending pod: within the limit
    limited = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(p, ALL)))  # p sees two: over the limit
    assert limited["node-0-0-0"] == limited["node-0-1-0"] == 10



def test_pending_pods_that_cannot_use_the_node_or_are_stuck_do_not_price_it() -> None:
    p = sc.pod("p", shards="0-3", cpu="40")
    elsewhere = sc.pod("q", shards="0-1", cpu="40")
    elsewhere["spec"]["nodeSelector"] = {"topology.kubernetes.io/zone": "us-east-1c"}  # no such zone here
    state = _state()
    state.apply(WatchEvent("ADDED", elsewhere), PODS)
    got = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(p, ALL)))
    assert got["node-0-0-0"] == got["node-0-1-0"] == 10
    stuck = sc.pod("s", shards="0-1", cpu="40")
    stuck["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
    state.apply(WatchEvent("ADDED", stuck), PODS)
    got = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(p, ALL)))
    assert got["node-0-0-0"] == got["node-0-1-0"] == 10


def test_pods_routed_to_the_exhaustive_profile_compete_for_the_same_slots() -> None:
    # kbl's two profiles run in one kube-scheduler: a pending pod routed to the exhaustive one
    # still needs node-0-0-0, so p is priced against it; a pod of another scheduler is not.
    p = sc.pod("p", shards="0-3", cpu="40")
    busy = sc.pod("busy", dataset_name=None, shards=None, cpu="40", node_name="node-1-0-0")
    settings = ExtenderSettings(scheduler_name=p["spec"]["schedulerName"], exhaustive_scheduler_name="kbl-exhaustive")
    for other, priced in (("kbl-exhaustive", True), ("someone-else", False)):
        state = ClusterState.from_snapshot(load_snapshot(sc.snapshot(pods=[busy])), settings)
        q = sc.pod("q", shards="0-1", cpu="40")
        q["spec"]["schedulerName"] = other
        state.apply(WatchEvent("ADDED", q), PODS)
        got = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(p, ALL)))
        assert got["node-0-1-0"] == 10
        assert (got["node-0-0-0"] < 10) is priced, other


def test_a_pod_the_gate_controller_narrowed_is_scored_on_its_own_and_prices_nobody_elses_slots() -> None:
    # The gate controller chose a narrowed pod's candidates with the others' room reserved
    # (extender.narrowing): pricing it again against the batch, or charging others for it, is
    # work the narrowing already did (and its cost rows over every node would misprice it).
    from topology import labels

    p = sc.pod("p", shards="0-3", cpu="40")
    state = _state()
    _pending(state, "q", "0-1")
    priced = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(p, ALL)))
    assert priced["node-0-0-0"] < 10  # q needs node-0-0-0 more: p is steered away from it

    narrowed_q = sc.pod("q", shards="0-1", cpu="40")
    narrowed_q["metadata"].setdefault("annotations", {})[labels.NARROWED] = "16"
    state.apply(WatchEvent("MODIFIED", narrowed_q), PODS)
    alone = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(p, ALL)))
    assert alone["node-0-0-0"] == alone["node-0-1-0"] == 10

    p["metadata"].setdefault("annotations", {})[labels.NARROWED] = "16"
    state = _state()
    _pending(state, "q", "0-1")
    pod = ClusterState.from_snapshot(load_snapshot(sc.snapshot(pods=[p])), ExtenderSettings()).pod(p["metadata"]["uid"])
    assert pod is not None
    assert BatchPricing(state, CostTables(state)).displacement(pod) is None
