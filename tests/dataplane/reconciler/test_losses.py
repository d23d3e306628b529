"""The timed loss simulation runs the real reconciler with copies that take time (benchmarks.losses)."""

from __future__ import annotations

from benchmarks.losses import GIB, MIB, TimedSettings, repair_time, simulate_timed


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
