"""The min-cost-flow bound is a lower bound: no schedule, random or by any policy, beats it."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.bounds import lower_bound, node_capacity, pod_costs
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
    for policy in ("default", "stork-like", "kbl", "oracle"):
        run = run_policy(policy, trace, PolicySettings(weight=5))
        assert run.pending == 0, policy
        assert run.delayed == 0, policy
        assert bound.cost <= run.cost * (1 + 1e-9), policy


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
