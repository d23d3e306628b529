"""The locality benchmark's joint placement of bursts, through the simulated kube-scheduler, and its target."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from benchmarks.bounds import IntervalBound, interval_bound, node_capacity, pod_costs
from benchmarks.locality import BURST_GAP_CLOSED, Comparison, Variant, burst_target, burst_variants
from benchmarks.oracles import burst_plan_cost
from benchmarks.policies import PolicyRun, PolicySettings, run_policy
from benchmarks.traces import DATASETS, TraceSettings, make_trace
from extender.joint import plan_jointly
from topology.localities import LocalityCosts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_burst_scheduled_pod_by_pod_through_kube_scheduler_costs_the_joint_optimum(seed: int) -> None:
    # One Job burst of 30 pods created at one instant on 6 nodes of 7 slots, reading hot shards:
    # the holders cannot take every pod that wants them. The driver plays kube-scheduler (one pod
    # at a time, LeastAllocated + BalancedAllocation + extender score x weight, random ties) and
    # kbl sees the whole burst pending through its watch; every pod lands where the cheapest joint
    # plan of what is still pending puts it, so the total is the min-cost assignment of the burst.
    # Left out: other schedulers' pods, failed binds, nodes joining (none in this trace).
    trace = make_trace(
        TraceSettings(
            zones=2, racks_per_zone=1, hosts_per_rack=3, datasets=DATASETS[:2], pods=30, burst_pods=30, burst_spread_s=0.0, seed=seed
        )
    )
    assert len({a.arrival_s for a in trace.arrivals}) == 1
    rows = np.array([pod_costs(trace.cluster, a, trace.nodes, LocalityCosts()) for a in trace.arrivals])
    slots = np.array(node_capacity(trace.nodes, [a.pod for a in trace.arrivals]), dtype=np.int64)
    optimum = plan_jointly(rows, slots).cost
    joint = run_policy("kbl", trace, PolicySettings(weight=5))
    alone = run_policy("kbl", trace, PolicySettings(weight=5, batch_limit=0))
    priced = run_policy("kbl", trace, PolicySettings(weight=5, slot_prices=True))
    assert joint.pending == alone.pending == priced.pending == 0
    assert joint.cost == pytest.approx(optimum, rel=1e-9)
    # slot prices learned from this burst alone do not move it off a cheapest plan
    assert priced.cost == pytest.approx(optimum, rel=1e-9)
    assert alone.cost > optimum  # one pod at a time is greedy here: the scenario has contention
    assert burst_plan_cost(trace).cost == pytest.approx(optimum, rel=1e-9)  # the offline ceiling plans it the same way


def test_the_per_burst_ceiling_places_every_pod_and_never_beats_the_optimum() -> None:
    trace = make_trace(replace(TraceSettings().quick(), burst_spread_s=0.0))
    bound = interval_bound(trace.cluster, trace.nodes, trace.arrivals)
    ceiling = burst_plan_cost(trace)
    assert ceiling.unplaced == 0
    assert ceiling.cost >= bound.cost * (1 - 1e-9)
    assert burst_plan_cost(trace, seed=1).cost >= bound.cost * (1 - 1e-9)


def _run(name: str, cost: float) -> PolicyRun:
    return PolicyRun(name, [cost, 0.0, 0.0, 0.0, 0.0], cost, 1, 0, 0, 1, 1, 0.0, 0.0, 0.0)


def _bound(cost: float) -> IntervalBound:
    return IntervalBound(cost, cost, 0, 1, [cost, 0.0, 0.0, 0.0, 0.0], cost)


def _comparison(kbl: float, greedy: float) -> Comparison:
    trace = make_trace(TraceSettings().quick())
    bound = _bound(100.0)
    rows = [(v, _run(v.policy, {"kbl": 100.0 * kbl, "oracle": 100.0 * greedy}.get(v.policy, 150.0))) for v in burst_variants(5)]
    return Comparison(trace, bound, 0.0, rows)


def test_the_burst_target_asks_kbls_defaults_to_close_half_the_gap_between_greedy_and_the_optimum() -> None:
    # burst_variants has two kbl rows: one pod at a time (batchLimit 0) and the defaults; only the
    # defaults are judged (the batchLimit 0 row is given the kbl cost too, and must not be picked).
    assert BURST_GAP_CLOSED == 0.5
    met = burst_target(_comparison(kbl=1.009, greedy=1.020))
    assert met.met
    assert met.limit == pytest.approx(1.010)
    assert (met.kbl, met.greedy) == pytest.approx((1.009, 1.020))
    missed = burst_target(_comparison(kbl=1.013, greedy=1.020))
    assert not missed.met
    assert "MISSED" in missed.describe()
    with pytest.raises(ValueError, match="greedy oracle"):
        burst_target(
            Comparison(
                make_trace(TraceSettings().quick()), _bound(1.0), 0.0, [(Variant("kbl", "kbl", PolicySettings(weight=5)), _run("kbl", 1.0))]
            )
        )


def test_another_draw_of_the_workload_keeps_the_cluster_placement_and_popularity_and_changes_the_bursts() -> None:
    settings = replace(TraceSettings().quick(), burst_spread_s=0.0)
    trace = make_trace(settings)
    again = make_trace(settings, arrivals_seed=None)
    other = make_trace(settings, arrivals_seed=7)
    assert [a.pod.name for a in again.arrivals] == [a.pod.name for a in trace.arrivals]
    assert [a.arrival_s for a in again.arrivals] == [a.arrival_s for a in trace.arrivals]
    assert other.node_objects == trace.node_objects
    assert [d.to_object() for d in other.datasets] == [d.to_object() for d in trace.datasets]
    assert [a.arrival_s for a in other.arrivals] != [a.arrival_s for a in trace.arrivals]
    assert len(other.arrivals) == len(trace.arrivals)


def test_the_optimums_own_slot_prices_never_let_per_burst_planning_beat_the_optimum() -> None:
    trace = make_trace(replace(TraceSettings().quick(), burst_spread_s=0.0))
    bound = interval_bound(trace.cluster, trace.nodes, trace.arrivals)
    prices = np.array(bound.slot_prices)
    assert prices.shape == (len(trace.nodes),)
    assert (prices >= 0).all()
    assert prices.any()  # the quick trace's hot data nodes do run short
    priced = burst_plan_cost(trace, slot_prices=bound.slot_prices)
    assert priced.unplaced == 0
    assert priced.cost >= bound.cost * (1 - 1e-9)


def test_no_slot_prices_leave_the_per_burst_plan_as_it_was() -> None:
    trace = make_trace(replace(TraceSettings().quick(), burst_spread_s=0.0))
    zero = [0.0] * len(trace.nodes)
    assert burst_plan_cost(trace, slot_prices=zero).cost == burst_plan_cost(trace).cost
