"""Traces are seeded, skewed and placed by the placement engine."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from benchmarks.traces import TraceSettings, make_trace, pod_slots


def _settings(seed: int) -> TraceSettings:
    return replace(TraceSettings(seed=seed).quick(), pods=120)


def test_traces_are_deterministic_per_seed() -> None:
    a, b, c = make_trace(_settings(4)), make_trace(_settings(4)), make_trace(_settings(5))
    assert [x.obj for x in a.arrivals] == [x.obj for x in b.arrivals]
    assert [(x.arrival_s, x.duration_s) for x in a.arrivals] == [(x.arrival_s, x.duration_s) for x in b.arrivals]
    for d1, d2 in zip(a.datasets, b.datasets, strict=True):
        assert d1.placement is not None
        assert d2.placement is not None
        assert d1.placement.equals(d2.placement)
    assert [x.obj for x in a.arrivals] != [x.obj for x in c.arrivals]


def test_every_dataset_is_fully_placed_on_distinct_failure_domains() -> None:
    trace = make_trace(_settings(1))
    nodes = {n.name: n for n in trace.nodes}
    for ds in trace.datasets:
        placement = ds.placement
        assert placement is not None
        assert bool((placement.pieces >= 0).all())
        for shard in range(ds.spec.shards):
            holders = [nodes[n] for n in placement.holders(shard)]
            domains = {n.domain(ds.spec.failure_domain) for n in holders}
            assert len(domains) == len(holders) == ds.spec.redundancy.width


def test_reads_are_skewed_towards_hot_shards_and_within_range() -> None:
    trace = make_trace(replace(TraceSettings(seed=2), pods=600))
    reads: dict[str, Counter[int]] = {}
    for arrival in trace.arrivals:
        data = arrival.pod.data
        assert data is not None
        assert data.shards is not None
        spec = trace.cluster.datasets[f"{data.namespace}/{data.dataset}"].spec
        assert all(0 <= s < spec.shards for s in data.shards)
        reads.setdefault(data.dataset, Counter()).update(data.shards)
    for counts in reads.values():
        values = sorted(counts.values(), reverse=True)
        assert values[0] >= 4 * float(np.median(values))  # hot shards


def test_arrivals_come_in_bursts_and_fit_the_cluster_on_average() -> None:
    settings = TraceSettings(seed=3)
    trace = make_trace(settings)
    times = [a.arrival_s for a in trace.arrivals]
    assert times == sorted(times)
    gaps = np.diff(times)
    assert float(np.median(gaps)) < 1.0 < float(gaps.max())  # tight within bursts, wide between
    assert trace.slots == len(trace.nodes) * pod_slots(trace.nodes[0], settings) == 420
