"""The controller benchmark's simulation on a small case: pre-warming leaves pods less time pending."""

from __future__ import annotations

from benchmarks.controller import Simulation, capacity_errors, relay_baton


def test_prewarmed_blueprint_pends_less_than_reactive_capacity() -> None:
    reactive = Simulation(False, kbls=1, stages=2, pods=2, seed=3).run()
    warmed = Simulation(True, kbls=1, stages=2, pods=2, seed=3).run()
    assert reactive.created == warmed.created == 4
    assert reactive.pending_pod_s >= 4 * 60  # every pod waits at least one node-ready time
    assert warmed.pending_pod_s <= 0.1 * reactive.pending_pod_s
    assert warmed.max_nodes <= 2


def test_relay_baton_prewarmed_with_hydration_starts_the_stage_on_ready_local_data() -> None:
    reactive, nodes_only, with_data = (relay_baton(m) for m in ("reactive", "prewarm-nodes", "prewarm-data"))
    assert reactive["pending_pod_s"] >= 4 * 120  # every train pod waits for its node
    assert reactive["first_read_locality"] == 0.0  # bound as its node joins: nothing hydrated yet
    assert nodes_only["pending_pod_s"] == with_data["pending_pod_s"] == 0.0
    assert nodes_only["first_read_locality"] < 0.9  # nodes on time, data not yet
    assert with_data["first_read_locality"] == 1.0  # the lead included the hydration time
    assert with_data["requested_at_s"] < nodes_only["requested_at_s"] < 800


def test_under_capacity_errors_kbl_runs_every_pod_where_yesterdays_choice_waits_for_ever() -> None:
    old = capacity_errors("yesterday", "capacity errors", pods=4, horizon_s=1800.0)
    new = capacity_errors("kbl", "capacity errors", pods=4, horizon_s=1800.0)
    assert old["running"] == 0  # its one type has no capacity in the data's zone
    assert new["running"] == 4
    assert new["all_running_s"] is not None
    assert new["all_running_s"] <= 300


def test_with_no_errors_kbl_chooses_capacity_no_dearer_than_yesterday() -> None:
    old = capacity_errors("yesterday", "no errors", pods=4, horizon_s=600.0)
    new = capacity_errors("kbl", "no errors", pods=4, horizon_s=600.0)
    assert old["running"] == new["running"] == 4
    assert new["usd_per_hour"] <= old["usd_per_hour"]
    assert new["all_running_s"] == old["all_running_s"]
