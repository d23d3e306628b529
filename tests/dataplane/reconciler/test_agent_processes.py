"""The reconciler (in-process, its informer loop, real clock) with node agents as real processes
(``python -m dataplane.agent``, the test harness of tests/dataplane/agent/test_processes.py), both
against kmock's API emulator over HTTP. Nobody writes a placement by hand: the reconciler places,
the agents hydrate from a path source, an agent is SIGKILLed and stays dead (its Node stays
Ready), and once it has been silent past ``agent_ttl_s`` its pieces are hydrated on other nodes;
the bytes there are the source's.

The agent heartbeats every 30 s (``AgentSettings.heartbeat_s``, not a flag of ``kbl agent``), so
the TTL here is 40 s: the test waits that long once. No periodic resync (600 s): the silence is
found by the reconciler's re-check at the earliest heartbeat expiry.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataplane.reconciler import Reconciler, ReconcilerSettings
from kube.api import DATASETS
from kube.client import KubeClient
from tests.dataplane.agent.cluster import NS, wait_for, write_source
from tests.dataplane.agent.test_processes import Processes, wait_started
from tests.kube.emulators import Emulator
from topology.datasets import DataSet
from topology.examples import make_node

#: Three nodes for two replicas: once one agent is dead, the two live ones must hold every shard.
NODES = {"n1": ("us-east-1a", "r1"), "n2": ("us-east-1a", "r2"), "n3": ("us-east-1b", "r3")}
SIZE = 64 * 1024 + 5
SHARDS = 6
TTL_S = 40.0  # the agents heartbeat every 30 s: 10 s of slack on a loaded machine


@pytest.fixture
def agents(emulator: Emulator, tmp_path: Path) -> Iterator[Processes]:
    emulator.kmock.resources["kbl.io/v1alpha1/nodeholdings"] = {}
    for name, (zone, rack) in NODES.items():
        emulator.post("/api/v1/nodes", make_node(name, zone=zone, rack=rack, storage_b=10**12))
    procs = Processes(emulator, tmp_path)
    yield procs
    procs.stop_all()


def conditions(obj: dict[str, Any] | None) -> dict[str, str]:
    return {c["type"]: c["status"] for c in ((obj or {}).get("status") or {}).get("conditions") or ()}


def holders(ds: DataSet) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    assert ds.placement is not None
    for s, row in enumerate(ds.placement.pieces):
        for i in row:
            if i >= 0:
                out.setdefault(ds.placement.nodes[i], set()).add(s)
    return out


@pytest.mark.timeout(600)
def test_an_agent_killed_and_kept_dead_on_a_ready_node_has_its_pieces_hydrated_elsewhere_byte_for_byte(
    agents: Processes, emulator: Emulator, tmp_path: Path
) -> None:
    api = KubeClient.from_url(emulator.url)
    source = write_source(tmp_path / "src", SHARDS, SIZE)
    emulator.post(
        f"/apis/kbl.io/v1alpha1/namespaces/{NS}/datasets",
        {
            "apiVersion": "kbl.io/v1alpha1",
            "kind": "DataSet",
            "metadata": {"name": "reads", "namespace": NS},
            "spec": {
                "shards": SHARDS, "shardSize": str(SIZE), "redundancy": {"replicas": 2}, "failureDomain": "host",
                "shardKey": "part-{index:03d}.bin", "source": {"path": str(tmp_path / "src")},
            },
        },
    )  # fmt: skip
    for name in NODES:
        agents.start(name, "--scrub-interval-s", "0")
    wait_started(api, list(NODES))
    reconciler = Reconciler(api, ReconcilerSettings(agent_ttl_s=TTL_S, resync_s=600.0))
    stop = threading.Event()
    loop = threading.Thread(target=reconciler.run, args=(stop,), daemon=True)
    loop.start()

    def dataset() -> dict[str, Any] | None:
        return api.get(DATASETS, "reads", namespace=NS)

    def whole_on(ds: DataSet, alive: set[str]) -> bool:
        """Every slot's holder is alive and has the source's bytes on disk."""
        for node, shards in holders(ds).items():
            if node not in alive:
                return False
            for s in shards:
                path = agents.root(node) / NS / "reads" / f"part-{s:03d}.bin"
                if not path.exists() or hashlib.sha256(path.read_bytes()).digest() != hashlib.sha256(source[s]).digest():
                    return False
        return True

    try:
        wait_for("the DataSet Ready", lambda: conditions(dataset()).get("Ready") == "True", 120)
        before = DataSet.from_object(dataset())
        assert whole_on(before, set(NODES))
        victim = max(holders(before), key=lambda n: len(holders(before)[n]))
        lost = holders(before)[victim]
        agents.kill(victim)  # SIGKILL; its Node object stays Ready, its disk keeps its files
        alive = set(NODES) - {victim}

        def repaired() -> bool:
            obj = dataset()
            ds = DataSet.from_object(obj)
            return victim not in holders(ds) and conditions(obj).get("Ready") == "True" and whole_on(ds, alive)

        wait_for("the victim's pieces hydrated on live agents", repaired, TTL_S + 90)
        after = DataSet.from_object(dataset())
        assert {s for n in alive for s in holders(after).get(n, set())} >= lost
        assert all(len({n for n in holders(after) if s in holders(after)[n]}) == 2 for s in range(SHARDS))
    finally:
        stop.set()
        loop.join(10)
        api.close()
