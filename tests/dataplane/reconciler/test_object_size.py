"""DataSets whose placement does not fit in one API object.

A custom resource is stored in etcd as its JSON, and etcd refuses requests over
``--max-request-bytes`` (1.5 MiB by default; EKS does not let it be raised); the API server
refuses request bodies over 3 MiB before that. A DataSet's ``status.placement`` lists every node
it uses and one index per piece, so a DataSet of ~80,000 3x shards on 5,000 nodes is about the
most one object holds. The reconciler counts a new target's bytes before writing it and reports
``Placed=False`` reason ``PlacementTooLarge`` instead of a write the API server refuses on every
pass. The API here is the in-memory emulator with the real server's limits on
(``MemoryApi(max_object_bytes=...)``); what it leaves out: the limit applies to the protobuf of
built-in kinds, which are not written here.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.reconciler import Reconciler, ReconcilerSettings
from dataplane.reconciler.planning import placement_json_bytes, placement_status
from kube.api import DATASETS, ApiError
from kube.memory import MemoryApi
from tests.dataplane.reconciler.worlds import World, cluster_nodes, dataset
from topology.datasets import ShardPlacement


@settings(max_examples=200, deadline=None)
@given(
    nodes=st.integers(1, 1500),
    shards=st.integers(0, 300),
    width=st.integers(1, 9),
    missing=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_counted_size_of_a_placement_is_the_size_of_its_json(nodes: int, shards: int, width: int, missing: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = tuple(f"ip-10-{i}-{'x' * int(rng.integers(0, 30))}.ec2.internal" for i in range(nodes))
    pieces = rng.integers(-1 if missing else 0, nodes, size=(shards, width)).astype(np.int32)
    placement = ShardPlacement(names, pieces)
    assert placement_json_bytes(placement) == len(orjson.dumps(placement_status(placement)))


def test_the_emulated_api_server_refuses_an_object_over_etcds_limit_and_stores_nothing() -> None:
    api = MemoryApi(max_object_bytes=2_000)
    api.create(DATASETS, dataset(shards=4), namespace="default")
    big = {"status": {"placement": {"nodes": [f"n-{i}" for i in range(400)], "shards": []}}}
    with pytest.raises(ApiError) as refused:
        api.patch_status(DATASETS, "d", big, namespace="default")
    assert refused.value.status == 500
    stored = api.get(DATASETS, "d", namespace="default")
    assert stored is not None
    assert "placement" not in (stored.get("status") or {})
    with pytest.raises(ApiError) as too_long:
        api.patch_status(DATASETS, "d", {"status": {"blob": "x" * (3 * 2**20 + 1)}}, namespace="default")
    assert too_long.value.status == 413


def _placed(world: World) -> dict:  # type: ignore[type-arg]
    return next(c for c in world.get()["status"]["conditions"] if c["type"] == "Placed")


def test_a_dataset_whose_target_does_not_fit_in_one_object_is_reported_not_written() -> None:
    """The emulator enforces a 20 KB object (as etcd enforces 1.5 MiB): a 3,000-shard DataSet's
    target needs more. The reconciler says so in ``Placed`` and an Event, writes no placement,
    raises nothing, and does not write again on the next pass; a smaller DataSet beside it is
    placed."""
    world = World(MemoryApi(max_object_bytes=20_000), nodes=cluster_nodes(zones=3, racks=2, hosts=3))
    world.add_dataset(dataset("d", shards=3000))
    world.add_dataset(dataset("small", shards=20))
    rec = world.reconciler(max_object_bytes=20_000)
    report = rec.reconcile_once()
    status = world.get()["status"]
    assert "placement" not in status
    placed = _placed(world)
    assert (placed["status"], placed["reason"]) == ("False", "PlacementTooLarge")
    assert "20,000 bytes" in placed["message"]
    assert "default/d" in report.written
    assert any(e.get("reason") == "PlacementTooLarge" for e in world.memory.events)
    assert world.get("small")["status"]["placement"]["shards"]
    version = world.get()["metadata"]["resourceVersion"]
    rec.reconcile_once()
    assert world.get()["metadata"]["resourceVersion"] == version  # reported once, not rewritten every pass


def test_a_placed_dataset_whose_next_target_outgrows_the_object_keeps_its_placement() -> None:
    """Nodes join and the re-plan would list more nodes than one object holds: the previous
    target stays (agents keep serving it), ``Placed=False`` says why."""
    world = World(MemoryApi(max_object_bytes=40_000), nodes=cluster_nodes(zones=3, racks=2, hosts=2))
    world.add_dataset(dataset("d", shards=700))
    rec = world.reconciler(max_object_bytes=40_000)
    rec.reconcile_once()
    world.agent_step(per_step=10_000)  # every piece hydrated: a re-plan's moves are not held back behind repairs
    rec.reconcile_once()
    before = world.get()["status"]["placement"]
    size = len(orjson.dumps(world.get()))
    assert size <= 40_000
    for o in cluster_nodes(zones=3, racks=6, hosts=4):
        if o["metadata"]["name"] not in set(world.node_names()):
            o["metadata"]["name"] = o["metadata"]["name"] + "-with-a-much-longer-name-than-before-" + "x" * 40
            o["metadata"]["labels"]["kubernetes.io/hostname"] = o["metadata"]["name"]
            world.add_node(o)
    rec.reconcile_once()
    assert world.get()["status"]["placement"] == before
    placed = _placed(world)
    assert (placed["status"], placed["reason"]) == ("False", "PlacementTooLarge")
    assert "the previous placement is kept" in placed["message"]


def test_a_progress_write_does_not_send_the_unchanged_target_again() -> None:
    """While agents hydrate, the reconciler writes progress (pieces ready, conditions) every
    pass; its merge patch leaves the unchanged placement out (the stored one stays), so a write
    is not the size of the whole object. A changed target is sent."""
    world = World(nodes=cluster_nodes(zones=3, racks=2, hosts=2))
    world.add_dataset(dataset("d", shards=200))
    rec = world.reconciler()
    sent: list[dict] = []  # type: ignore[type-arg]
    patch_status = world.memory.patch_status

    def recording(resource, name, patch, *, namespace=None):  # type: ignore[no-untyped-def]
        sent.append(patch)
        return patch_status(resource, name, patch, namespace=namespace)

    world.memory.patch_status = recording  # type: ignore[method-assign]
    rec.reconcile_once()
    target = world.get()["status"]["placement"]
    assert "placement" in sent[-1]["status"]  # the first target is sent
    for _ in range(3):
        world.now += 11  # past the progress-write interval (10 s)
        world.agent_step(per_step=5)
        before = len(sent)
        rec.reconcile_once()
        assert len(sent) > before  # progress was written
        assert all("placement" not in p["status"] for p in sent[before:])
        assert world.get()["status"]["placement"] == target
    assert world.get()["status"]["pieces"]["ready"] > 0


def test_progress_alone_is_written_at_most_every_interval_and_anything_else_at_once() -> None:
    """Every watcher of DataSets gets the whole object with each write, so while agents hydrate
    the reconciler writes progress alone (pieces and bytes ready, ETA, a condition's message) at
    most every ``progress_write_s``; a deferred write is made once due; a change of a condition's
    status (Ready) is written at once."""
    world = World(nodes=cluster_nodes(zones=3, racks=2, hosts=2))
    world.add_dataset(dataset("d", shards=60))
    rec = world.reconciler(progress_write_s=10.0)
    rec.reconcile_once()
    ready = [world.get()["status"]["pieces"]["ready"]]
    for _ in range(3):  # within 10 s of the last write: progress waits
        world.agent_step(per_step=3)
        rec.reconcile_once()
        ready.append(world.get()["status"]["pieces"]["ready"])
    assert ready == [0, 0, 0, 0]
    world.now += 10  # due
    rec.reconcile_once()
    due = world.get()["status"]["pieces"]["ready"]
    assert due == sum(len(p) for p in world.held.values()) > 0
    world.agent_step(per_step=1000)  # every piece: Ready turns True
    rec.reconcile_once()
    status = world.get()["status"]
    assert status["pieces"]["ready"] == status["pieces"]["total"]
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_the_run_loop_writes_a_deferred_progress_write_when_it_is_due() -> None:
    """The informer loop wakes for a deferred write: progress reported while the interval runs
    reaches the status once it is due, with no further event."""
    import threading
    import time

    world = World(nodes=cluster_nodes(zones=3, racks=2, hosts=2))
    world.add_dataset(dataset("d", shards=60))
    start = time.monotonic()
    settings = ReconcilerSettings(progress_write_s=0.5, resync_s=3600.0)
    rec = Reconciler(world.api, settings, clock=lambda: world.now + time.monotonic() - start)
    stop = threading.Event()
    loop = threading.Thread(target=rec.run, args=(stop,), daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while "placement" not in (world.get().get("status") or {}) and time.monotonic() < deadline:
            time.sleep(0.02)
        world.agent_step(per_step=2)  # NodeHoldings events: progress within the interval of the first write
        want = sum(len(p) for p in world.held.values())
        while world.get()["status"]["pieces"]["ready"] != want and time.monotonic() < deadline:
            time.sleep(0.02)
        assert world.get()["status"]["pieces"]["ready"] == want > 0
    finally:
        stop.set()
        loop.join(5)


def test_the_sizes_the_readme_states_hold_at_the_real_limit() -> None:
    """README: one object holds about 80,000 3x shards on 5,000 nodes; at 100,000 nodes the node
    names of a DataSet spread over all of them do not fit at all (EKS-style names, etcd's 1.5 MiB)."""
    from dataplane.reconciler.settings import MAX_OBJECT_BYTES

    def placement(nodes: int, shards: int) -> ShardPlacement:
        names = tuple(f"ip-10-{i // 65536}-{(i // 256) % 256}-{i % 256}.ec2.internal" for i in range(nodes))
        return ShardPlacement(names, np.random.default_rng(0).integers(0, nodes, size=(shards, 3)).astype(np.int32))

    assert placement_json_bytes(placement(5_000, 75_000)) < MAX_OBJECT_BYTES < placement_json_bytes(placement(5_000, 90_000))
    assert placement_json_bytes(placement(100_000, 1)) > MAX_OBJECT_BYTES
