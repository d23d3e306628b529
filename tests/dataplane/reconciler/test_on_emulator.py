"""The placement reconciler through the real KubeClient against kmock's API emulator over HTTP."""

from __future__ import annotations

import threading
from typing import Any

from dataplane.reconciler import Reconciler, ReconcilerSettings
from kube.api import DATASETS, NODES
from kube.client import KubeClient
from tests.dataplane.reconciler.worlds import World, cluster_nodes, dataset, drain
from tests.kube.emulators import Emulator
from topology import labels
from topology.datasets import DataSet


def http_world(emulator: Emulator) -> tuple[World, KubeClient]:
    emulator.kmock.resources["kbl.io/v1alpha1/nodeholdings"] = {}
    for node in cluster_nodes():
        emulator.post("/api/v1/nodes", node)
    client = KubeClient.from_url(emulator.url)
    world = World(client, seed_nodes=False)
    world.held = {n: set() for n in world.node_names()}
    return world, client


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj["status"]["conditions"]}


def settle(world: World, reconciler: Reconciler, rounds: int = 40) -> None:
    for _ in range(rounds):
        report = reconciler.reconcile_once()
        if not world.agent_step(per_step=1000) and not report.written and not report.nodes_patched:
            return
    raise AssertionError("did not settle")


def test_over_http_a_dataset_goes_from_created_to_placed_to_ready_with_no_hand_written_status(emulator: Emulator) -> None:
    world, client = http_world(emulator)
    try:
        emulator.post("/apis/kbl.io/v1alpha1/namespaces/default/datasets", dataset(shards=30))
        reconciler = Reconciler(client, ReconcilerSettings(), clock=lambda: world.now)
        reconciler.reconcile_once()
        obj = world.get()
        assert conditions(obj) == {"Placed": "True", "Ready": "False", "Degraded": "False"}
        assert DataSet.from_object(obj).placement is not None
        settle(world, reconciler)
        obj = world.get()
        assert conditions(obj)["Ready"] == "True"
        assert obj["status"]["pieces"] == {"ready": 90, "total": 90}
    finally:
        client.close()


def test_over_http_a_drained_node_is_released_after_its_pieces_moved_and_marked_data_drained(emulator: Emulator) -> None:
    world, client = http_world(emulator)
    try:
        emulator.post("/apis/kbl.io/v1alpha1/namespaces/default/datasets", dataset(shards=30))
        reconciler = Reconciler(client, ReconcilerSettings(), clock=lambda: world.now)
        settle(world, reconciler)
        ds = world.typed()
        assert ds.placement is not None
        leaving = ds.placement.nodes[0]
        floor = world.copies(ds)
        drain(world, leaving)
        reconciler.reconcile_once()
        assert world.typed().transfers, "moves off a draining node go through status.transfers"
        settle(world, reconciler)
        after = world.typed()
        assert after.placement is not None
        assert leaving not in after.placement.nodes
        assert all(c >= f for c, f in zip(world.copies(after), floor, strict=True))
        node = client.get(NODES, leaving)
        assert node is not None
        assert labels.DATA_DRAINED in node["metadata"]["annotations"]
    finally:
        client.close()


def test_over_http_the_informer_loop_places_a_dataset_created_after_it_started(emulator: Emulator) -> None:
    world, client = http_world(emulator)
    reconciler = Reconciler(client, ReconcilerSettings(resync_s=60.0), clock=lambda: world.now)
    stop = threading.Event()
    thread = threading.Thread(target=reconciler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        emulator.post("/apis/kbl.io/v1alpha1/namespaces/default/datasets", dataset(shards=10))
        for _ in range(250):
            obj = client.get(DATASETS, "d", namespace="default")
            if obj and (obj.get("status") or {}).get("placement"):
                break
            stop.wait(0.02)
        obj = world.get()
        assert conditions(obj)["Placed"] == "True"
    finally:
        stop.set()
        thread.join(10)
        client.close()


def test_over_http_a_removed_node_is_repaired_back_to_full_redundancy_with_nothing_lost(emulator: Emulator) -> None:
    world, client = http_world(emulator)
    try:
        emulator.post("/apis/kbl.io/v1alpha1/namespaces/default/datasets", dataset(shards=30))
        reconciler = Reconciler(client, ReconcilerSettings(), clock=lambda: world.now)
        settle(world, reconciler)
        ds = world.typed()
        assert ds.placement is not None
        victim = ds.placement.nodes[0]
        emulator.delete(f"/api/v1/nodes/{victim}")
        emulator.delete(f"/apis/kbl.io/v1alpha1/nodeholdings/{victim}")
        world.held.pop(victim)
        settle(world, reconciler)
        after = world.typed()
        assert after.placement is not None
        assert victim not in after.placement.nodes
        assert world.copies(after) == [3] * 30
        obj = world.get()
        assert conditions(obj) == {"Placed": "True", "Ready": "True", "Degraded": "False"}
        assert obj["status"]["lostShards"] == ""
    finally:
        client.close()
