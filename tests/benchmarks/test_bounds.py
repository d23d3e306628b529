"""The min-cost-flow bound is a lower bound: no schedule, random or by any policy, beats it."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.bounds import interval_bound, lower_bound, node_capacity, pod_costs
from benchmarks.policies import PolicySettings, run_policy
from benchmarks.traces import DATASETS, Trace, TraceSettings, make_trace
from topology.localities import LocalityCosts


def _small(seed: int, pods: int = 40) -> TraceSettings:
    return TraceSettings(
        zones=2, racks_per_zone=2, hosts_per_rack=2, datasets=DATASETS[:1] + DATASETS[2:3], pods=pods, burst_pods=8, load=0.9, seed=seed
    )


def _random_schedule_cost(trace: Trace, rng: random.Random) -> float | None:
    """Cost of a random schedule that starts every pod on arrival, or None if one did not fit."""
    caps = node_capacity(trace.nodes, [a.pod for a in trace.arrivals])
    running: list[tuple[float, int]] = []
    total = 0.0
    costs = LocalityCosts()
    for a in trace.arrivals:
        running = [(end, n) for end, n in running if end > a.arrival_s]
        used = [sum(1 for _, n in running if n == i) for i in range(len(trace.nodes))]
        free = [i for i in range(len(trace.nodes)) if used[i] < caps[i]]
        if not free:
            return None
        pick = rng.choice(free)
        running.append((a.arrival_s + a.duration_s, pick))
        total += float(pod_costs(trace.cluster, a, trace.nodes, costs)[pick])
    return total


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), schedule_seed=st.integers(0, 10_000))
def test_bound_is_below_random_on_arrival_schedules(seed: int, schedule_seed: int) -> None:
    trace = make_trace(_small(seed))
    bound = lower_bound(trace.cluster, trace.nodes, trace.arrivals)
    cost = _random_schedule_cost(trace, random.Random(schedule_seed))
    if cost is not None:
        assert bound.cost <= cost * (1 + 1e-9)
    per_pod_min = sum(float(np.min(pod_costs(trace.cluster, a, trace.nodes, LocalityCosts()))) for a in trace.arrivals)
    # The flow costs are rounded down to 1 MiB-cost per pod and instant: allow that much below.
    rounding = sum(1 for a in trace.arrivals for _ in range(bound.instants)) * 2.0**20
    assert per_pod_min - rounding <= bound.cost
    assert bound.uncapacitated_cost == pytest.approx(per_pod_min)


@pytest.mark.parametrize("seed", [1, 2])
def test_bound_is_below_every_policy(seed: int) -> None:
    trace = make_trace(_small(seed, pods=30))
    bound = lower_bound(trace.cluster, trace.nodes, trace.arrivals)
    tighter = interval_bound(trace.cluster, trace.nodes, trace.arrivals)
    for policy in ("default", "stork-like", "kbl", "oracle"):
        run = run_policy(policy, trace, PolicySettings(weight=5))
        assert run.pending == 0, policy
        assert run.delayed == 0, policy
        assert bound.cost <= run.cost * (1 + 1e-9), policy
        assert tighter.cost <= run.cost * (1 + 1e-9), policy


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), schedule_seed=st.integers(0, 10_000))
def test_whole_run_bound_is_tighter_and_still_below_random_schedules(seed: int, schedule_seed: int) -> None:
    trace = make_trace(replace(_small(seed), load=1.0, zipf_s=3.0))  # crowded: capacity binds
    per_instant = lower_bound(trace.cluster, trace.nodes, trace.arrivals)
    tighter = interval_bound(trace.cluster, trace.nodes, trace.arrivals)
    assert tighter.cost >= per_instant.cost * (1 - 1e-6)
    assert tighter.cost <= tighter.lp_cost * (1 + 1e-6)
    assert tighter.cost >= tighter.uncapacitated_cost * (1 - 1e-6)
    cost = _random_schedule_cost(trace, random.Random(schedule_seed))
    if cost is not None:
        assert tighter.cost <= cost * (1 + 1e-9)


def test_whole_run_bound_equals_the_optimum_found_by_enumeration() -> None:
    # 4 nodes of 2 slots each, 6 pods in one burst reading hot shards: capacity binds
    small = replace(_small(5, pods=6), datasets=DATASETS[:1], racks_per_zone=1, zipf_s=4.0, load=1.0, burst_pods=6, pod_cpu_m=30000)
    trace = make_trace(small)
    caps = node_capacity(trace.nodes, [a.pod for a in trace.arrivals])
    rows = [pod_costs(trace.cluster, a, trace.nodes, LocalityCosts()) for a in trace.arrivals]
    best = np.inf
    for choice in itertools.product(range(len(trace.nodes)), repeat=len(trace.arrivals)):
        ok = True
        for a in trace.arrivals:  # capacity at every arrival time
            t = a.arrival_s
            load = [0] * len(trace.nodes)
            for b, n in zip(trace.arrivals, choice, strict=True):
                if b.arrival_s <= t < b.arrival_s + b.duration_s:
                    load[n] += 1
            ok &= all(load[i] <= caps[i] for i in range(len(caps)))
        if ok:
            best = min(best, sum(float(rows[p][n]) for p, n in enumerate(choice)))
    tighter = interval_bound(trace.cluster, trace.nodes, trace.arrivals)
    assert tighter.cost <= best * (1 + 1e-9)
    assert tighter.cost > tighter.uncapacitated_cost  # the case is not trivial
    if tighter.fractional_pods == 0:
        assert tighter.cost == pytest.approx(best, rel=1e-6)


def test_bound_binds_when_everyone_wants_the_same_node() -> None:
    """Pods reading one hot shard cannot all sit on its holders: the bound rises above the
    uncapacitated sum, and the optimum's bytes still add up to what the pods read."""
    trace = make_trace(replace(_small(3, pods=60), zipf_s=6.0, load=1.0))
    bound = lower_bound(trace.cluster, trace.nodes, trace.arrivals)
    assert bound.cost > bound.uncapacitated_cost
    needed = 0.0
    for a in trace.arrivals:
        data = a.pod.data
        assert data is not None
        key = f"{data.namespace}/{data.dataset}"
        needed += trace.cluster.level_bytes(key, data.shard_indexes(trace.cluster.datasets[key].spec.shards)).needed_bytes
    assert sum(bound.level_bytes) == pytest.approx(needed, rel=1e-6)
