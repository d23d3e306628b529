"""The controller benchmark's simulation on a small case: pre-warming leaves pods less time pending."""

from __future__ import annotations

from benchmarks.controller import Simulation, relay_baton


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
