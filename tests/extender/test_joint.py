"""Joint placement of a burst: the plan is a cheapest assignment, and scores make kube-scheduler follow it."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from extender.app import create_app
from extender.joint import PLAN_LEAD, joint_prices, plan_jointly, planned_scores
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from kube.api import PODS, WatchEvent
from tests.extender import scenarios as sc
from topology.snapshots import load_snapshot

ALL = [f"node-{z}-{r}-{h}" for z in range(2) for r in range(2) for h in range(3)]


def brute_plans(costs: np.ndarray, slots: np.ndarray) -> tuple[int, float]:
    """(most pods placed, least cost among such assignments) by enumeration: -1 = not placed."""
    pods, nodes = costs.shape
    best = (0, 0.0)
    for choice in itertools.product(range(-1, nodes), repeat=pods):
        used = np.bincount([c for c in choice if c >= 0], minlength=nodes)
        if (used > np.maximum(slots, 0)).any() or any(c >= 0 and not np.isfinite(costs[q, c]) for q, c in enumerate(choice)):
            continue
        placed = sum(1 for c in choice if c >= 0)
        total = float(sum(costs[q, c] for q, c in enumerate(choice) if c >= 0))
        if placed > best[0] or (placed == best[0] and total < best[1]):
            best = (placed, total)
    return best


def flow_optimum(costs: np.ndarray, slots: np.ndarray) -> float:
    """The cheapest assignment of every pod by networkx's min-cost flow (every pod must fit)."""
    pods, nodes = costs.shape
    graph = nx.DiGraph()
    graph.add_node("s", demand=-pods)
    graph.add_node("t", demand=pods)
    for q in range(pods):
        graph.add_edge("s", ("p", q), capacity=1, weight=0)
        for n in range(nodes):
            if np.isfinite(costs[q, n]) and slots[n] > 0:
                graph.add_edge(("p", q), ("n", n), capacity=1, weight=int(costs[q, n]))
    for n in range(nodes):
        graph.add_edge(("n", n), "t", capacity=max(int(slots[n]), 0), weight=0)
    return float(nx.min_cost_flow_cost(graph))


def _valid(plan_nodes: np.ndarray, costs: np.ndarray, slots: np.ndarray) -> None:
    placed = plan_nodes[plan_nodes >= 0]
    assert (np.bincount(placed, minlength=slots.shape[0]) <= np.maximum(slots, 0)).all()
    for q, n in enumerate(plan_nodes.tolist()):
        assert n < 0 or np.isfinite(costs[q, n])


costs_and_slots = st.tuples(st.integers(1, 4), st.integers(1, 4)).flatmap(
    lambda shape: st.tuples(
        st.lists(
            st.lists(st.one_of(st.integers(0, 40), st.just(-1)), min_size=shape[1], max_size=shape[1]),
            min_size=shape[0],
            max_size=shape[0],
        ),
        st.lists(st.integers(0, 2), min_size=shape[1], max_size=shape[1]),
    )
)


def _arrays(case: tuple[list[list[int]], list[int]]) -> tuple[np.ndarray, np.ndarray]:
    costs = np.array(case[0], dtype=np.float64)
    costs[costs < 0] = np.inf  # -1 draws "cannot run there"
    return costs, np.array(case[1], dtype=np.int64)


@settings(max_examples=150, deadline=None)
@given(costs_and_slots)
def test_the_joint_plan_places_the_most_pods_at_the_least_cost(case: tuple[list[list[int]], list[int]]) -> None:
    costs, slots = _arrays(case)
    plan = plan_jointly(costs, slots)
    _valid(plan.nodes, costs, slots)
    placed, best = brute_plans(costs, slots)
    assert int((plan.nodes >= 0).sum()) == placed
    assert abs(plan.cost - best) < 1e-6, (plan.nodes.tolist(), best)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 12).flatmap(
        lambda pods: st.tuples(
            st.lists(st.lists(st.integers(0, 1000), min_size=8, max_size=8), min_size=pods, max_size=pods),
            st.lists(st.integers(0, 3), min_size=8, max_size=8).filter(lambda s: sum(s) >= 12),
        )
    )
)
def test_the_joint_plan_costs_what_networkx_min_cost_flow_finds_on_larger_bursts(case: tuple[list[list[int]], list[int]]) -> None:
    costs = np.array(case[0], dtype=np.float64)
    slots = np.array(case[1], dtype=np.int64)
    plan = plan_jointly(costs, slots)
    _valid(plan.nodes, costs, slots)
    assert (plan.nodes >= 0).all()
    assert plan.cost == flow_optimum(costs, slots)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 3).flatmap(
        lambda pods: st.tuples(
            st.lists(st.lists(st.integers(0, 40), min_size=pods + 1, max_size=pods + 1), min_size=pods, max_size=pods),
            st.lists(st.integers(1, 2), min_size=pods + 1, max_size=pods + 1),
        )
    )
)
def test_a_pods_cheapest_joint_price_is_its_node_in_a_cheapest_plan(case: tuple[list[list[int]], list[int]]) -> None:
    # The extender scores one pod by joint_prices (its cost plus what each slot costs the others).
    # When every pod can go to any of more nodes than there are pods (the extender's case: it looks
    # at the whole cluster), the pod on its cheapest-priced node plus the others at their best is a
    # cheapest plan. (With fewer open nodes than pods, the others' "elsewhere" is a stand-in and the
    # price a bound only.)
    costs = np.array(case[0], dtype=np.float64)
    slots = np.array(case[1], dtype=np.int64)
    _placed, best = brute_plans(costs, slots)
    for q in range(costs.shape[0]):
        prices = joint_prices(costs, slots, q)
        n = int(np.argmin(prices))
        fewer = slots.copy()
        fewer[n] -= 1
        _rest_placed, rest = brute_plans(np.delete(costs, q, axis=0), fewer)
        assert abs(costs[q, n] + rest - best) < 1e-6, (q, n, prices.tolist())


@settings(max_examples=40, deadline=None)
@given(costs_and_slots)
def test_alternates_are_ranked_by_the_cost_of_the_plan_through_them(case: tuple[list[list[int]], list[int]]) -> None:
    costs, slots = _arrays(case)
    plan = plan_jointly(costs, slots, alternates=2)
    assert plan.alternates.shape == (costs.shape[0], 2)
    for q in range(costs.shape[0]):
        row = [n for n in plan.alternates[q].tolist() if n >= 0]
        assert plan.nodes[q] not in row
        prices = joint_prices(costs, slots, q)
        assert all(np.isfinite(prices[n]) for n in row)
        assert [prices[n] for n in row] == sorted(prices[n] for n in row)
        rest = [n for n in range(costs.shape[1]) if n not in row and n != plan.nodes[q] and np.isfinite(prices[n])]
        if len(row) < 2:
            assert not rest  # padded only when no other node is left
        elif rest:
            assert min(prices[n] for n in rest) >= prices[row[-1]]


def test_an_early_pod_leaves_the_only_local_node_to_the_pod_that_needs_it() -> None:
    # pod 0 reads as well on nodes 0 and 1; pod 1 reads locally only on node 0; one slot each.
    costs = np.array([[0.0, 0.0, 30.0], [0.0, 50.0, 50.0]])
    plan = plan_jointly(costs, np.array([1, 1, 1]), alternates=1)
    assert plan.nodes.tolist() == [1, 0]
    assert plan.cost == 0.0
    # pod 0's next best is node 2 (30; node 0 would push pod 1 to 50); pod 1's is node 1 (50, tied with 2: id order)
    assert plan.alternates.tolist() == [[2], [1]]
    # pods that fit nowhere are not placed; the others still are
    nowhere = plan_jointly(np.array([[np.inf, np.inf], [3.0, 1.0]]), np.array([1, 1]))
    assert nowhere.nodes.tolist() == [-1, 1]


def test_the_planned_nodes_lead_every_other_node_by_plan_lead_levels() -> None:
    scores = planned_scores(np.array([5.0, 5.0, 5.1, 60.0, 200.0]))
    assert scores.tolist()[:2] == [10, 10]
    assert (scores[2:] <= 10 - PLAN_LEAD).all()
    assert scores[2] >= scores[3] >= scores[4] == 0  # the order below the plan is kept
    assert planned_scores(np.array([7.0, 7.0])).tolist() == [0, 0]  # no preference: adds nothing
    assert planned_scores(np.zeros(0)).tolist() == []


def test_the_pending_burst_steers_a_pod_to_its_planned_node_by_a_lead_the_plugins_cannot_undo() -> None:
    # p reads shards 0-3: node-0-0-0 (holds 0-1) and node-0-1-0 (holds 2-3) cost it the same. q,
    # pending, reads shards 0-1: node-0-0-0 is its only free node-local choice (node-1-0-0 is full).
    # One pod fits per node. p's cheapest joint plans put it on node-0-1-0 or node-1-1-0 (the other
    # holder of 2-3, same cost); every other node, node-0-0-0 first, trails them by PLAN_LEAD levels.
    busy = sc.pod("busy", dataset_name=None, shards=None, cpu="40", node_name="node-1-0-0")
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot(pods=[busy])), ExtenderSettings())
    state.apply(WatchEvent("ADDED", sc.pod("q", shards="0-1", cpu="40")), PODS)
    p = sc.pod("p", shards="0-3", cpu="40")
    got = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(p, ALL)))
    planned = {"node-0-1-0", "node-1-1-0"}
    assert all(got[name] == 10 for name in planned)
    assert max(v for k, v in got.items() if k not in planned) <= 10 - PLAN_LEAD
    assert got["node-0-0-0"] > 0  # still ranked: the cheapest fallback if kube-scheduler filters the plan out
