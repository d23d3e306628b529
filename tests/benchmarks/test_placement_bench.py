"""The placement benchmark's code paths on a small case (figures are not asserted as timings)."""

from __future__ import annotations

from benchmarks.placement import cluster, durability_table, make_spec, scenario
from topology.datasets import Erasure, Replicas


def test_placement_benchmark_scenario_reports_sane_figures() -> None:
    nodes = cluster(3, 2, 2)
    extra = cluster(3, 2, 3)[2]
    result = scenario(nodes, make_spec(2000, Replicas(3)), extra, stateless=True)
    assert result["ours"]["violations"] == 0
    assert result["ours"]["cv"] < result["random_floor"]["cv"]
    assert 0.9 <= result["add"]["factor"] <= 1.05
    assert result["reweight_x2"]["between_unchanged"] == 0


def test_durability_table_shows_rack_unaware_placement_losing_to_a_rack_failure() -> None:
    nodes = cluster(3, 2, 4)  # 4 hosts per rack: a host-only rule can put 3 of 6 pieces in one rack
    table = durability_table(nodes, make_spec(3000, Erasure(4, 2)), f=3)
    assert table["kbl (rack)"]["rack_worst_lost"] == 0
    assert table["kbl (rack)"]["zone_worst_lost"] == 0
    assert table["rack-unaware (kbl, host)"]["rack_worst_lost"] > 0
