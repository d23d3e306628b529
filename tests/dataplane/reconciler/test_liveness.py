"""Agent liveness: a node whose agent is silent past ``agent_ttl_s`` is a lost holder (in-memory
API, simulated agents that heartbeat as the clock moves; see worlds.py). The same with agents as
real processes is in ``test_agent_processes.py``."""

from __future__ import annotations

import threading

import pytest

from dataplane.reconciler import Reconciler, ReconcilerSettings
from tests.dataplane.reconciler.worlds import T0, World, dataset
from topology.datasets import DataSet, Erasure, Replicas


def slots(ds: DataSet) -> dict[tuple[int, int], str]:
    assert ds.placement is not None
    return {(s, p): ds.placement.nodes[i] for s, row in enumerate(ds.placement.pieces) for p, i in enumerate(row) if i >= 0}


def conditions(obj: dict[str, object]) -> dict[str, str]:
    status = obj.get("status") or {}
    assert isinstance(status, dict)
    return {c["type"]: c["status"] for c in status.get("conditions") or ()}


@pytest.mark.parametrize(
    ("redundancy", "source"), [(Replicas(3), True), (Replicas(3), False), (Erasure(4, 2), False)], ids=["3x-source", "3x", "4+2"]
)
def test_an_agent_silent_past_its_ttl_is_a_lost_holder_and_its_pieces_get_new_holders_while_its_node_stays_ready(
    redundancy: Replicas | Erasure, source: bool
) -> None:
    world = World()
    world.add_dataset(dataset(redundancy=redundancy, source=source, shards=40, failure_domain="host"))
    reconciler = world.reconciler(agent_ttl_s=120.0)
    if not source:
        reconciler.reconcile_once()
        world.write_pieces()
    world.settle(reconciler)
    victim = world.typed().placement.nodes[0]  # type: ignore[union-attr]
    held = sum(1 for n in slots(world.typed()).values() if n == victim)
    world.kill_agent(victim)
    world.now = T0 + 119  # the others heartbeat; the victim's last report is 119 s old
    assert not reconciler.reconcile_once().written
    assert sum(1 for n in slots(world.typed()).values() if n == victim) == held
    world.now = T0 + 120
    world.settle(reconciler)
    after = world.typed()
    assert victim not in slots(after).values()
    assert min(world.copies(after)) == redundancy.width  # every piece ready again on live agents
    assert world.get()["status"]["lostShards"] == ""
    lost = [e["message"] for e in world.memory.events if e["reason"] == "NodeLost"]
    assert lost
    assert victim in lost[0]
    assert "agent silent" in lost[0]


def test_heartbeats_that_cross_no_ttl_plan_nothing_again_and_write_nothing_and_only_a_crossing_replans() -> None:
    world = World()
    world.add_dataset(dataset(shards=40))
    reconciler = Reconciler(world.api, ReconcilerSettings(resync_s=0.05, agent_ttl_s=120.0), clock=lambda: world.now)
    stop = threading.Event()
    thread = threading.Thread(target=reconciler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for _ in range(500):
            world.agent_step(1000)
            if conditions(world.get()).get("Ready") == "True":
                break
            stop.wait(0.02)
        assert conditions(world.get())["Ready"] == "True"
        version, misses, passes = world.get()["metadata"]["resourceVersion"], reconciler.memo.misses, reconciler.passes
        for step in range(1, 11):
            world.now = T0 + 30 * step  # every agent heartbeats every 30 s: 300 s go by, nobody is silent
            stop.wait(0.06)
        assert reconciler.passes > passes  # resyncs ran over the heartbeats...
        assert reconciler.memo.misses == misses  # ...and planned nothing again
        assert world.get()["metadata"]["resourceVersion"] == version  # nor wrote a status
        for _ in range(250):  # the last heartbeats reach the reconciler's next pass
            if reconciler.next_expiry == world.now + 120.0:
                break
            stop.wait(0.02)
        assert reconciler.next_expiry == world.now + 120.0  # the next re-check: the oldest heartbeat's expiry
        assert reconciler.memo.misses == misses
        world.kill_agent(world.typed().placement.nodes[0])  # type: ignore[union-attr]
        world.now += 120.0  # crossing the TTL is a change: the DataSet is planned again
        for _ in range(200):
            if reconciler.memo.misses > misses:
                break
            stop.wait(0.02)
        assert reconciler.memo.misses > misses
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_a_new_cluster_places_before_agents_report_and_a_node_whose_agent_never_reports_gets_nothing_after_the_grace() -> None:
    world = World()
    never = world.node_names()[0]
    world.kill_agent(never)  # its agent never starts (a taint it does not tolerate)
    world.add_dataset(dataset(shards=40))
    reconciler = world.reconciler(agent_ttl_s=120.0)
    reconciler.reconcile_once()  # no agent has reported yet: the grace lets the DataSet be placed at once
    assert world.typed().placement is not None
    world.settle(reconciler)
    assert conditions(world.get())["Ready"] == "False"  # the pieces given to `never` cannot hydrate
    world.now = T0 + 120
    world.settle(reconciler)
    after = world.typed()
    assert never not in slots(after).values()
    assert conditions(world.get())["Ready"] == "True"
    assert min(world.copies(after)) == 3


def test_an_agent_back_from_silence_makes_its_node_a_holder_again() -> None:
    world = World()
    world.add_dataset(dataset(shards=60))
    reconciler = world.reconciler(agent_ttl_s=120.0)
    world.settle(reconciler)
    victim = world.typed().placement.nodes[0]  # type: ignore[union-attr]
    world.kill_agent(victim)
    world.now = T0 + 200
    world.settle(reconciler)
    assert victim not in slots(world.typed()).values()
    world.dead.discard(victim)  # restarted: it reports (and heartbeats) again
    world.now = T0 + 201
    world.settle(reconciler)
    after = world.typed()
    assert victim in slots(after).values()  # eligible again: it gets its share back, as a join does
    assert conditions(world.get())["Ready"] == "True"
    assert min(world.copies(after)) == 3
