"""The controller benchmark's simulation on a small case: pre-warming leaves pods less time pending."""

from __future__ import annotations

from benchmarks.controller import Simulation


def test_prewarmed_blueprint_pends_less_than_reactive_capacity() -> None:
    reactive = Simulation(False, kbls=1, stages=2, pods=2, seed=3).run()
    warmed = Simulation(True, kbls=1, stages=2, pods=2, seed=3).run()
    assert reactive.created == warmed.created == 4
    assert reactive.pending_pod_s >= 4 * 60  # every pod waits at least one node-ready time
    assert warmed.pending_pod_s <= 0.1 * reactive.pending_pod_s
    assert warmed.max_nodes <= 2
