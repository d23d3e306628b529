"""The agent reads a target written as PlacementSlices (:mod:`topology.slices`).

The first test runs the real placement reconciler with ``inline_placement_bytes=0`` (every target
sliced) and agents in threads over MemoryApi: nobody writes a placement or a slice by hand. The
others drive one agent that is not started (no informers, no loop): the test feeds its watch
handlers directly, in the orders two unordered watch streams may deliver, and runs its passes;
their slices are rendered with the writer's own functions (:func:`topology.slices.split`).
``SLICE_PIECES`` is lowered so that a few shards make several slices.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from dataplane.agent.running import Agent, Security, start_agents
from dataplane.agent.settings import AgentSettings
from dataplane.reconciler import Reconciler, ReconcilerSettings
from kube.api import DATASETS, NODES, PLACEMENT_SLICES, WatchEvent
from kube.memory import MemoryApi
from tests.dataplane.agent.cluster import NS, TOKEN, dataset, node, wait_for, write_source
from topology import slices as slices_module
from topology.datasets import DataSet
from topology.examples import make_node
from topology.slices import sliced_form

SIZE = 32 * 1024 + 11
KEY = f"{NS}/s"


def held(agent: Agent, name: str) -> dict[int, bytes]:
    """The replicas on the agent's disk, by shard (``part-003.bin`` is shard 3)."""
    folder = Path(agent.settings.root) / NS / name
    if not folder.is_dir():
        return {}
    return {int(f.stem.split("-")[1]): f.read_bytes() for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")}


def conditions(obj: dict[str, Any] | None) -> dict[str, str]:
    return {c["type"]: c["status"] for c in ((obj or {}).get("status") or {}).get("conditions") or ()}


def assembled(obj: dict[str, Any], slice_objs: Sequence[dict[str, Any]]) -> dict[str, set[int]]:
    """The shards each node holds in the target the index names, read from the slices as they are
    stored (independently of the SliceStore the agent uses)."""
    index = obj["status"]["placement"]["slices"]
    per, versions = index["shardsPerSlice"], index["versions"]
    name = obj["metadata"]["name"]
    by = {(o["spec"]["index"], o["spec"]["version"]): o["spec"] for o in slice_objs if o["spec"]["dataSet"] == name}
    out: dict[str, set[int]] = {}
    for i, version in enumerate(versions):
        spec = by[(i, version)]
        assert spec["firstShard"] == i * per
        for s, row in enumerate(spec["shards"]):
            for at in row:
                out.setdefault(spec["nodes"][at], set()).add(i * per + s)
    return out


# --------------------------------------------------------- the reconciler writes, agents read
RECONCILED_NODES = {"n1": ("us-east-1a", "r1"), "n2": ("us-east-1a", "r2"), "n3": ("us-east-1b", "r3"), "n4": ("us-east-1b", "r4")}
SHARDS = 6


@pytest.mark.timeout(300)
def test_agents_hydrate_byte_for_byte_exactly_their_pieces_of_a_target_the_reconciler_writes_as_slices(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(slices_module, "SLICE_PIECES", 4)  # 2 shards of 2 replicas per slice: 6 shards make 3 slices
    api = MemoryApi()
    for name, (zone, rack) in RECONCILED_NODES.items():
        api.put(NODES, make_node(name, zone=zone, rack=rack, storage_b=10**12))
    source = write_source(tmp_path / "src", SHARDS, SIZE)
    api.create(
        DATASETS,
        {
            "apiVersion": "kbl.io/v1alpha1",
            "kind": "DataSet",
            "metadata": {"name": "s", "namespace": NS, "uid": "uid-s"},
            "spec": {
                "shards": SHARDS, "shardSize": str(SIZE), "redundancy": {"replicas": 2}, "failureDomain": "host",
                "shardKey": "part-{index:03d}.bin", "source": {"path": str(tmp_path / "src")},
            },
        },
        namespace=NS,
    )  # fmt: skip
    agents = {
        a.settings.node: a
        for a in start_agents(
            api,
            list(RECONCILED_NODES),
            tmp_path / "nodes",
            token=TOKEN,
            settings={"report_min_interval_s": 0.1, "resync_s": 0.2, "scrub_interval_s": 0},
        )
    }
    reconciler = Reconciler(api, ReconcilerSettings(inline_placement_bytes=0))
    stop = threading.Event()
    loop = threading.Thread(target=reconciler.run, args=(stop,), daemon=True)
    loop.start()
    try:

        def obj() -> dict[str, Any]:
            found = api.get(DATASETS, "s", namespace=NS)
            assert found is not None
            return found

        wait_for("the DataSet Ready", lambda: conditions(obj()).get("Ready") == "True", 120)
        placement = obj()["status"]["placement"]
        assert set(placement) == {"slices"}  # the target is not inline
        assert len(placement["slices"]["versions"]) == 3
        target = assembled(obj(), api.list(PLACEMENT_SLICES)[0])
        assert sum(len(shards) for shards in target.values()) == SHARDS * 2
        assert all(sum(s in shards for shards in target.values()) == 2 for s in range(SHARDS))

        def exact() -> bool:
            return all(held(agent, "s") == {s: source[s] for s in target.get(name, set())} for name, agent in agents.items())

        wait_for("every agent holding exactly its pieces", exact, 30)
        assert DataSet.from_object(obj()).placement is None  # read alone, the object has no target: the agents assembled it
    finally:
        stop.set()
        loop.join(10)
        for agent in agents.values():
            agent.stop()


# ------------------------------------------------- one agent, its handlers fed by the test
def idle_agent(api: MemoryApi, root: Path, name: str = "n1") -> Agent:
    """An agent that is not started: the test feeds its handlers and runs its passes (synced, as
    after its informers' first lists)."""
    settings = AgentSettings(node=name, root=str(root), host="127.0.0.1", port=0, scrub_interval_s=0)
    agent = Agent(api, settings, Security(token=lambda: TOKEN, token_review=False, access_review=False))
    agent.view.synced = True
    return agent


def settle(agent: Agent, timeout_s: float = 30.0) -> None:
    """Passes of the agent's reconcile until one starts no copy and none is in flight."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        started = agent.hydrator.reconcile()
        while agent.hydrator.inflight and time.monotonic() < deadline:
            time.sleep(0.02)
        if not started and not agent.hydrator.inflight:
            return
    raise AssertionError(f"the agent did not settle in {timeout_s} s")


def inline(rows: Sequence[Sequence[int]], src: Path, *, uid: str = "uid-1", nodes: Sequence[str] = ("n1", "n2")) -> dict[str, Any]:
    """DataSet ``s`` (3 shards, 1 replica) with its target inline: ``rows`` index ``nodes``."""
    return dataset("s", shards=3, size=SIZE, redundancy={"replicas": 1}, nodes=nodes, rows=rows, source={"path": str(src)}, uid=uid)


def sliced(
    rows: Sequence[Sequence[int]], src: Path, *, uid: str = "uid-1", nodes: Sequence[str] = ("n1", "n2")
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """DataSet ``s`` with that target written as the reconciler writes it: the index in the
    object, and the PlacementSlice objects (one shard per slice: ``SLICE_PIECES`` is 1)."""
    obj = inline(rows, src, uid=uid, nodes=nodes)
    placement = DataSet.from_object(obj).placement
    assert placement is not None
    index, parts = sliced_form(NS, "s", placement)
    obj["status"]["placement"] = index.to_status()
    return obj, [p.to_object(uid) for p in parts]


@pytest.fixture
def one_shard_per_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slices_module, "SLICE_PIECES", 1)


@pytest.fixture
def api() -> MemoryApi:
    api = MemoryApi()
    for name in ("n1", "n2"):
        api.put(NODES, node(name, "a"))
    return api


@pytest.mark.usefixtures("one_shard_per_slice")
def test_an_agent_keeps_its_pieces_while_a_new_targets_slices_have_not_arrived_and_converges_once_they_all_have(
    api: MemoryApi, tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", 3, SIZE)
    agent = idle_agent(api, tmp_path / "n1")
    try:
        agent._dataset_event(WatchEvent("ADDED", inline([[0], [0], [1]], tmp_path / "src")))
        settle(agent)
        assert held(agent, "s") == {0: src[0], 1: src[1]}
        first = agent.view.datasets[KEY].placement
        # The reconciler moves shard 1 to n2 and shard 2 to n1, as slices: the index comes first.
        obj, parts = sliced([[0], [1], [0]], tmp_path / "src")
        agent._dataset_event(WatchEvent("MODIFIED", obj))
        for part in [None, *parts[:-1]]:
            if part is not None:
                agent._slice_event(WatchEvent("ADDED", part))
            settle(agent)
            assert KEY in agent.view.waiting
            assert agent.view.datasets[KEY].placement is first  # still acting on the last target it had
            assert held(agent, "s") == {0: src[0], 1: src[1]}  # nothing deleted, nothing of the new target started
        agent.hydrator.changed.clear()
        agent._slice_event(WatchEvent("ADDED", parts[-1]))
        assert agent.hydrator.changed.is_set()
        assert KEY not in agent.view.waiting
        settle(agent)
        assert held(agent, "s") == {0: src[0], 2: src[2]}
    finally:
        agent.stop()


@pytest.mark.usefixtures("one_shard_per_slice")
def test_a_restarted_agent_deletes_nothing_of_a_dataset_whose_slices_are_not_listed_yet_and_a_slice_relist_resolves_it(
    api: MemoryApi, tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", 3, SIZE)
    before = idle_agent(api, tmp_path / "n1")
    try:
        before._dataset_event(WatchEvent("ADDED", inline([[0], [0], [1]], tmp_path / "src")))
        settle(before)
        assert held(before, "s") == {0: src[0], 1: src[1]}
    finally:
        before.stop()
    agent = idle_agent(api, tmp_path / "n1")  # the same disk, nothing in memory: a restart
    try:
        obj, parts = sliced([[0], [1], [0]], tmp_path / "src")
        agent._slices_relist(parts[:1])  # the two lists are not ordered: the slices' list misses the newest
        agent._datasets_relist([obj])
        assert KEY in agent.view.waiting
        assert KEY not in agent.view.datasets  # nothing to act on: not unplaced, not known yet
        settle(agent)
        assert held(agent, "s") == {0: src[0], 1: src[1]}  # the folder of a DataSet that waits is not a deleted one's
        assert (tmp_path / "n1" / NS / "s" / ".kbl" / "uid").read_text() == "uid-1"
        agent._slices_relist(parts)
        assert KEY not in agent.view.waiting
        assert agent.hydrator.changed.is_set()
        settle(agent)
        assert held(agent, "s") == {0: src[0], 2: src[2]}
    finally:
        agent.stop()


@pytest.mark.usefixtures("one_shard_per_slice")
def test_a_dataset_deleted_and_recreated_never_acts_on_the_target_assembled_for_the_old_one(api: MemoryApi, tmp_path: Path) -> None:
    src = write_source(tmp_path / "src", 3, SIZE)
    agent = idle_agent(api, tmp_path / "n1")
    try:
        obj, parts = sliced([[0], [0], [1]], tmp_path / "src", uid="uid-1")
        agent._slices_relist(parts)
        agent._dataset_event(WatchEvent("ADDED", obj))
        settle(agent)
        assert held(agent, "s") == {0: src[0], 1: src[1]}
        # Deleted (its slices go with it, later), then re-created with the same shape and another
        # target whose slices have not arrived: the new one waits, the old target is not reused.
        agent._dataset_event(WatchEvent("DELETED", obj))
        settle(agent)
        assert held(agent, "s") == {}
        again, again_parts = sliced([[1], [1], [0]], tmp_path / "src", uid="uid-2")
        agent._dataset_event(WatchEvent("ADDED", again))
        assert KEY not in agent.view.datasets
        assert KEY in agent.view.waiting
        settle(agent)
        assert held(agent, "s") == {}
        agent._slices_relist(parts + again_parts)  # the old one's slices not deleted yet
        settle(agent)
        assert held(agent, "s") == {2: src[2]}
        # Re-created again, seen only through a relist (the delete missed): the same.
        third, _ = sliced([[1], [1], [1]], tmp_path / "src", uid="uid-3", nodes=("n1", "n3"))
        agent._datasets_relist([third])
        assert KEY not in agent.view.datasets
        assert KEY in agent.view.waiting
    finally:
        agent.stop()
