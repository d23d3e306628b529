"""O(change) passes (issue 24, item 3): what a pass re-plans and re-reads after one change.

A DataSet event (its reports changed) decides that DataSet alone, and reads only its reports
again; a node joining or leaving re-plans every DataSet by :func:`placement.shifts.shift`
(``place()`` is never called), and the targets written keep the rule and the balance band. The
counters are the reconciler's own (``decide`` calls, :class:`ReadyCache` reads,
:class:`PlanMemo` misses), not timings. The worlds are the in-memory API with simulated agents
(``worlds.py``: every copy succeeds at once, no network). Six hosts per rack: with three
hosts per zone and a zone spread, a lost host's pieces all go to its two zone-mates, which the
stable band cannot take; the shift then says so and ``place()`` re-plans (not tested here).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from dataplane.reconciler import planning, reconciling
from dataplane.reconciler.reconciling import Reconciler
from dataplane.reconciler.settings import ReconcilerSettings
from kube.api import NODES
from placement.shifts import shift
from placement.stability import keeps
from tests.dataplane.reconciler.worlds import World, cluster_nodes, dataset, make_node
from topology.datasets import Erasure
from topology.nodes import Node

KEYS = ("default/a", "default/b", "default/c")


def _world() -> tuple[World, Reconciler]:
    world = World(nodes=cluster_nodes(zones=3, racks=2, hosts=6))
    world.add_dataset(dataset("a", shards=90, failure_domain="host"))
    world.add_dataset(dataset("b", shards=90, failure_domain="host"))
    world.add_dataset(dataset("c", shards=40, redundancy=Erasure(4, 2), failure_domain="host"))
    rec = Reconciler(world.api, ReconcilerSettings(resync_s=3600.0), clock=lambda: world.now)
    world.settle(rec)
    return world, rec


def _counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls: Counter[str] = Counter()
    real = planning.decide

    def counted(dataset: Any, *args: Any, **kwargs: Any) -> Any:
        calls[dataset.spec.key] += 1
        return real(dataset, *args, **kwargs)

    monkeypatch.setattr(reconciling, "decide", counted)
    return calls


def test_a_holdings_event_of_one_dataset_decides_that_dataset_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    world, rec = _world()
    stop = threading.Event()
    thread = threading.Thread(target=rec.run, args=(stop,), daemon=True)
    calls = _counted(monkeypatch)
    thread.start()
    try:
        for _ in range(500):  # the first pass after the informers synced decides everything
            if all(calls[k] for k in KEYS) and not rec._dirty and not rec._all_dirty:
                break
            stop.wait(0.02)
        assert all(calls[k] for k in KEYS)
        stop.wait(0.3)  # let the first pass end
        calls.clear()
        reads, patched, passes = rec.ready.computed, rec.ready.patched, rec.passes
        # One agent loses a ready piece of "a": its NodeHoldings changes (for "a" only).
        node = next(n for n, held in sorted(world.held.items()) if any(p[0] == "default/a" for p in held))
        piece = min(p for p in world.held[node] if p[0] == "default/a")
        world.held[node].discard(piece)
        world.agent_step(0)  # publish the reports (no copies)
        for _ in range(500):
            if rec.passes > passes and calls["default/a"] and not rec._dirty:
                break
            stop.wait(0.02)
        stop.wait(0.3)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert calls == Counter({"default/a": calls["default/a"]})
    assert calls["default/a"] >= 1
    # Only that node's slots of "a" are looked up again (issue 24: a node's report changing
    # costs O(its slots), not every report of the DataSet read again), and the loss is seen.
    assert rec.ready.computed == reads
    assert rec.ready.patched > patched
    pieces = rec.datasets["default/a"]["status"]["pieces"]
    assert pieces["ready"] == pieces["total"] - 1


@pytest.mark.parametrize("change", ["join", "leave"])
def test_a_node_that_joins_or_leaves_is_replanned_by_shifts_without_place(monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    world, rec = _world()
    before = {k: world.typed(k.split("/")[1]) for k in KEYS}

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("place() called for a join or a leave")

    monkeypatch.setattr(planning, "place", refuse)
    shifts: list[str] = []
    real = shift

    def counted(table: Any, spec: Any, *args: Any, **kwargs: Any) -> Any:
        shifts.append(spec.key)
        return real(table, spec, *args, **kwargs)

    monkeypatch.setattr(planning, "shift", counted)
    if change == "join":
        world.add_node(make_node("node-new", region="r", zone="zone-0", rack="rack-new", storage_b=10**12))
    else:
        gone = before["default/a"].placement.nodes[0]  # type: ignore[union-attr]
        world.remove_node(gone)
    report = rec.reconcile_once()
    assert sorted(shifts) == sorted(KEYS)  # every DataSet re-planned once, by a shift
    nodes = [Node.from_object(o) for o in world.api.list(NODES)[0]]
    for key in KEYS:
        ds = world.typed(key.split("/")[1])
        assert ds.placement is not None
        decision = report.decisions[key]
        if decision.deferred_shards == 0:  # every move applied: the target itself, which place would keep
            assert keeps(nodes, ds.spec, ds.placement, settings=rec.settings.placement)
        if change == "join":
            assert "node-new" in ds.placement.nodes
            assert decision.repairs == 0
        else:
            assert gone not in ds.placement.nodes
            old = before[key].placement
            assert old is not None
            held = int((old.pieces == old.nodes.index(gone)).sum()) if gone in old.nodes else 0
            assert decision.moves == decision.repairs == held  # only the lost node's pieces moved
