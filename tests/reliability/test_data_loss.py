"""No shard is lost to failures the redundancy promises to survive, over long random runs.

The simulation (:mod:`benchmarks.losses`) runs kbl's placement, repair plans and the
``removal_is_safe`` scale-down check against a random-placement baseline on the same seeded
sequence of node, rack and zone failures and scale-downs. kbl must lose nothing within the
promise; the baseline losing shards on the same events shows the run can see a loss.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.losses import BEYOND, WITHIN, SimulationSettings, simulate
from placement import removal_is_safe
from topology.datasets import DataSet, Replicas, ShardPlacement, dataset_object
from topology.examples import make_cluster_nodes
from topology.nodes import Node


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kbl_loses_no_shard_to_failures_within_the_promise(seed: int) -> None:
    result = simulate(SimulationSettings(rounds=60, shards=48, beyond_share=0.0, seed=seed))
    for name in result.shards:
        kbl = result.tallies[(name, "kbl")]
        assert sum(kbl.rounds.values()) == 60
        assert kbl.total(WITHIN) == 0, (name, kbl.lost)


def test_the_same_events_lose_shards_under_random_placement_and_the_safety_check_acts() -> None:
    result = simulate(SimulationSettings(rounds=60, shards=48, beyond_share=0.0, seed=0))
    assert sum(result.tallies[(n, "random")].total(WITHIN) for n in result.shards) > 0
    assert sum(result.tallies[(n, "random")].unsafe_removals for n in result.shards) > 0
    assert sum(result.tallies[(n, "kbl")].drained for n in result.shards) > 0  # unsafe scale-downs were drained first
    assert sum(result.tallies[(n, "kbl")].unsafe_removals for n in result.shards) == 0


@pytest.mark.slow
def test_a_long_run_with_failures_beyond_the_promise_loses_nothing_within_it() -> None:
    result = simulate(SimulationSettings(rounds=400, shards=128, beyond_share=0.25, seed=11))
    for name in result.shards:
        assert result.tallies[(name, "kbl")].total(WITHIN) == 0
        assert sum(result.tallies[(name, "kbl")].rounds.get(k, 0) for k in BEYOND) > 0


def test_scale_down_of_a_node_holding_the_last_spare_is_refused() -> None:
    # Guard on the loop's safety gate itself: 3 replicas, one already gone, removing a holder leaves one.
    nodes = [Node.from_object(o) for o in make_cluster_nodes(zones=1, racks_per_zone=3, hosts_per_rack=1)]
    spec = DataSet.from_object(dataset_object("d", shards=1, shard_size="1Gi", redundancy=Replicas(3), failure_domain="rack")).spec
    placement = ShardPlacement(tuple(n.name for n in nodes), np.array([[0, 1, -1]], dtype=np.int32))
    assert not removal_is_safe(nodes, spec, placement, [nodes[0].name], min_spare=1)
    assert removal_is_safe(nodes, spec, placement, [nodes[2].name], min_spare=1)
