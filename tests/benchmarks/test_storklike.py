"""The Stork-like tier scores: node 100 / rack 50 / zone 25 / region 10, summed, then clamped to 0..10."""

from __future__ import annotations

from dataclasses import replace

from benchmarks.storklike import pod_shards, raw_scores, scaled_scores
from benchmarks.traces import DATASETS, TraceSettings, make_trace


def test_tiers_sum_per_shard_and_scale_into_the_protocol_range() -> None:
    trace = make_trace(replace(TraceSettings(seed=0).quick(), datasets=DATASETS[:1], pods=10))
    cluster = trace.cluster
    key = "bench/images"
    placement = cluster.datasets[key].placement
    assert placement is not None
    holder = placement.holders(0)[0]
    node = cluster.nodes[holder]
    rack_mate = next(n for n in cluster.nodes.values() if n.rack == node.rack and n.name != holder and n.name not in placement.holders(0))
    names = [holder, rack_mate.name]
    raw = raw_scores(cluster, key, [0], names)
    assert raw == [100, 50]
    assert scaled_scores(raw, 1) == [10, 5]
    assert scaled_scores([800], 1) == [10]  # Stork's overflow, clamped deliberately
    assert scaled_scores([0], 4) == [0]  # Stork's default 10 of a possible 400
    pod = trace.arrivals[0].obj
    wanted = pod_shards(cluster, pod)
    assert wanted is not None
    assert wanted[0] == key
