"""The timed loss simulation runs the real reconciler with copies that take time (benchmarks.losses)."""

from __future__ import annotations

import math
from collections import Counter

from benchmarks.losses import GIB, MIB, TimedSettings, repair_time, simulate_timed
from dataplane.reconciler.settings import RECONCILER_PLACEMENT
from placement import place
from topology.datasets import DataSet, Replicas, dataset_object
from topology.examples import make_cluster_nodes
from topology.nodes import Node


def test_one_node_loss_is_repaired_in_no_less_than_the_lower_bound_and_copies_only_what_was_lost() -> None:
    point = repair_time(piece_bytes=1 * GIB, copy_rate_bps=100 * MIB, shards=60)
    assert point.lost_gib > 0
    assert point.copied_gib == point.lost_gib  # repairs first: no rebalance copy rides along
    assert point.seconds >= point.lower_bound_s
    assert point.seconds <= 4 * max(point.lower_bound_s, 1024 / 100) + point.step_s  # a few piece-times at most


def test_timed_run_the_reconciler_reports_exactly_the_shards_truly_lost_and_recovers_after_failures() -> None:
    cfg = TimedSettings(hours=3, shards=24, node_mtbf_h=6, rack_share=0.3, piece_bytes=2 * GIB, copy_rate_bps=50 * MIB, seed=3)
    result = simulate_timed(cfg)
    kbl, rnd = result["kbl"], result["random"]
    assert kbl.failures == rnd.failures > 0
    assert kbl.reported_lost == kbl.lost
    assert kbl.recoveries_s
    assert all(r > 0 for r in kbl.recoveries_s)


def test_a_repair_spreads_its_copies_over_every_receiver_the_rule_allows() -> None:
    """``fill_spread`` (set by the reconciler): 20 lost pieces, 11 survivors in the zone that may take
    them back (3x spread over 3 zones): at most 2 each, where the plain fill puts 3 on some."""
    nodes = [Node.from_object(o) for o in make_cluster_nodes(zones=3, racks_per_zone=4, hosts_per_rack=3, storage_b=10**13)]
    spec = DataSet.from_object(dataset_object("d", shards=240, shard_size="1Gi", redundancy=Replicas(3), failure_domain="rack")).spec
    first = place(nodes, spec).placement
    victim = first.nodes[0]
    lost = int((first.pieces == 0).sum())
    survivors = [n for n in nodes if n.name != victim]
    in_zone = sum(1 for n in survivors if n.zone == nodes[[n.name for n in nodes].index(victim)].zone)
    spread = place(survivors, spec, previous=first, settings=RECONCILER_PLACEMENT)
    plain = place(survivors, spec, previous=first)
    assert len(spread.moves) == lost  # only the lost pieces move
    assert max(Counter(m.to_node for m in spread.moves).values()) <= math.ceil(lost / in_zone)
    assert max(Counter(m.to_node for m in plain.moves).values()) > math.ceil(lost / in_zone)
    assert spread.report.violations == 0
