"""A cluster for reconciler tests: nodes, DataSets and *simulated node agents*.

The agents play the node agent's role of the data-plane contract, legitimately: each node holds a
set of pieces; :meth:`World.agent_step` makes at most ``per_step`` missing target pieces ready (a
piece is copied only when it is readable somewhere: a live node holds it, ``k`` pieces of an
erasure stripe are held, or the DataSet has a source), and deletes a piece only when no target
slot and no transfer ``from`` names its node. Each step is written as the nodes'
``NodeHoldings`` objects, the only channel the reconciler reads; when the clock moves
(:attr:`World.now`), every live agent writes a heartbeat, as a real agent does every 30 s. An agent
killed with :meth:`World.kill_agent` stops acting and reporting; its node stays Ready.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from dataplane.reconciler import Reconciler, ReconcilerSettings
from kube.api import DATASETS, NODE_HOLDINGS, NODES, PLACEMENT_SLICES, KubeApi
from kube.memory import MemoryApi
from topology import labels
from topology.datasets import DataSet, Erasure, Redundancy, Replicas, dataset_object
from topology.examples import make_cluster_nodes, make_node
from topology.holdings import DataSetHoldings, NodeHoldings, piece_key
from topology.slices import SliceStore
from topology.times import format_time

T0 = 1_800_000_000.0
#: Worlds made while this is True have their reconcilers write every target as PlacementSlices
#: (``inline_placement_bytes=0``); tests parametrize it to hold both forms to the same invariants.
SLICED = False
#: (dataset key, piece key, shard)
Piece = tuple[str, str, int]


def cluster_nodes(zones: int = 3, racks: int = 2, hosts: int = 2) -> list[dict[str, Any]]:
    return make_cluster_nodes(zones=zones, racks_per_zone=racks, hosts_per_rack=hosts, storage_b=10**12)


def dataset(
    name: str = "d",
    *,
    shards: int = 60,
    redundancy: Redundancy | None = None,
    failure_domain: str = "rack",
    source: bool = True,
    node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    obj = dataset_object(
        name,
        shards=shards,
        shard_size="1Gi",
        redundancy=redundancy or Replicas(3),
        failure_domain=failure_domain,
        node_selector=node_selector,
    )
    obj["metadata"]["uid"] = f"uid-{name}"
    obj["metadata"]["generation"] = 1
    obj["metadata"]["creationTimestamp"] = format_time(T0)
    if source:
        obj["spec"]["source"] = {"s3": {"bucket": "b", "prefix": f"{name}/"}}
    return obj


class World:
    """A MemoryApi (or any KubeApi with ``put``-like seeding done by the caller) plus agents."""

    def __init__(
        self,
        api: KubeApi | None = None,
        nodes: Iterable[dict[str, Any]] | None = None,
        *,
        seed_nodes: bool = True,
        sliced: bool | None = None,
    ) -> None:
        self.api: KubeApi = api if api is not None else MemoryApi()
        self.sliced = SLICED if sliced is None else sliced
        self.store = SliceStore()  # what the simulated agents hold of PlacementSlices, as real agents do
        self._now = T0
        self.held: dict[str, set[Piece]] = {}
        self.dead: set[str] = set()
        if seed_nodes:
            for node in nodes if nodes is not None else cluster_nodes():
                self.add_node(node)

    # ---------------------------------------------------------------- cluster
    @property
    def now(self) -> float:
        return self._now

    @now.setter
    def now(self, value: float) -> None:
        """The clock moves: every live agent that has reported writes a heartbeat."""
        self._now = value
        if self.api.list(NODE_HOLDINGS)[0]:
            self.publish(self.datasets())

    def kill_agent(self, node: str) -> None:
        """The node's agent dies and stays dead: no more copies, reports or heartbeats; the
        node stays Ready and its disk keeps what it held (nobody can read it)."""
        self.dead.add(node)

    @property
    def memory(self) -> MemoryApi:
        assert isinstance(self.api, MemoryApi)
        return self.api

    def add_node(self, node: dict[str, Any]) -> None:
        if isinstance(self.api, MemoryApi):
            self.api.put(NODES, node)
        else:
            self.api.create(NODES, node)
        self.held.setdefault(node["metadata"]["name"], set())

    def add_dataset(self, obj: dict[str, Any]) -> None:
        if isinstance(self.api, MemoryApi):
            self.api.put(DATASETS, obj)
        else:
            self.api.create(DATASETS, obj, namespace=obj["metadata"].get("namespace", "default"))

    def node_names(self) -> list[str]:
        return sorted(n["metadata"]["name"] for n in self.api.list(NODES)[0])

    def annotate(self, node: str, notes: dict[str, str | None]) -> None:
        self.api.patch(NODES, node, {"metadata": {"annotations": notes}})

    def cordon(self, node: str) -> None:
        self.api.patch(NODES, node, {"spec": {"unschedulable": True}})

    def not_ready(self, node: str, since: float) -> None:
        obj = self.api.get(NODES, node)
        assert obj is not None
        conditions = copy.deepcopy(obj["status"]["conditions"])
        for cond in conditions:
            if cond["type"] == "Ready":
                cond["status"] = "Unknown"
                cond["lastTransitionTime"] = format_time(since)
        self.api.patch_status(NODES, node, {"status": {"conditions": conditions}})

    def remove_node(self, node: str) -> None:
        """The node dies: its object, its holdings and its pieces are gone."""
        self.memory.delete(NODES, node)
        self.memory.delete(NODE_HOLDINGS, node)
        self.held.pop(node, None)

    def get(self, name: str = "d") -> dict[str, Any]:
        obj = self.api.get(DATASETS, name, namespace="default")
        assert obj is not None
        return obj

    def typed(self, name: str = "d") -> DataSet:
        """DataSet ``name`` as a reader sees it: its target assembled from its PlacementSlices when sliced."""
        ds = DataSet.from_object(self.get(name))
        self.store.replace(self.api.list(PLACEMENT_SLICES)[0])
        resolved = self.store.resolve(ds)
        assert resolved is not None, f"{ds.key}: its index names PlacementSlices that do not exist"
        return resolved

    def resolve(self, obj: dict[str, Any]) -> DataSet:
        """A raw DataSet as a reader sees it (its target assembled from the PlacementSlices now stored)."""
        self.store.replace(self.api.list(PLACEMENT_SLICES)[0])
        resolved = self.store.resolve(DataSet.from_object(obj))
        assert resolved is not None, f"{obj['metadata']['name']}: its index names PlacementSlices that do not exist"
        return resolved

    def datasets(self) -> list[DataSet]:

        """Every DataSet as a reader sees it (targets assembled from their PlacementSlices)."""
        self.store.replace(self.api.list(PLACEMENT_SLICES)[0])
        out = []
        for obj in self.api.list(DATASETS)[0]:
            resolved = self.store.resolve(DataSet.from_object(obj))
            assert resolved is not None, f"{obj['metadata']['name']}: its index names PlacementSlices that do not exist"
            out.append(resolved)
        return out

    def reconciler(self, **settings: Any) -> Reconciler:
        if self.sliced:
            settings.setdefault("inline_placement_bytes", 0)
        return Reconciler(self.api, ReconcilerSettings(**settings), clock=lambda: self.now)

    # ----------------------------------------------------------------- agents
    def alive(self) -> set[str]:
        """Nodes present whose agent runs (they copy, serve and report)."""
        return set(self.node_names()) - self.dead

    def readable(self, ds: DataSet, key: str, shard: int) -> bool:
        """Could an agent copy or rebuild this piece now?"""
        if ds.spec.source is not None:
            return True
        alive = self.alive()
        holding = [p for n, pieces in self.held.items() if n in alive for p in pieces if p[0] == ds.key and p[2] == shard]
        if isinstance(ds.spec.redundancy, Erasure):
            return len({p[1] for p in holding}) >= ds.spec.redundancy.k
        return bool(holding)

    def agent_step(self, per_step: int = 1) -> int:
        """Every agent acts once: up to ``per_step`` copies each, then deletions. Returns copies made."""
        datasets = self.datasets()
        alive = self.alive()
        copies = 0
        for node in sorted(alive):
            mine = self.held.setdefault(node, set())
            made = 0
            for ds in datasets:
                if ds.placement is None or made >= per_step:
                    continue
                for s in range(ds.spec.shards):
                    for p, idx in enumerate(ds.placement.pieces[s]):
                        if made >= per_step:
                            break
                        piece = (ds.key, piece_key(ds.spec, p), s)
                        if idx >= 0 and ds.placement.nodes[idx] == node and piece not in mine and self.readable(ds, piece[1], s):
                            mine.add(piece)
                            made += 1
            copies += made
            keep: set[Piece] = set()
            for ds in datasets:
                if ds.placement is not None:
                    for s in range(ds.spec.shards):
                        for p, idx in enumerate(ds.placement.pieces[s]):
                            if idx >= 0 and ds.placement.nodes[idx] == node:
                                keep.add((ds.key, piece_key(ds.spec, p), s))
                keep |= {(ds.key, piece_key(ds.spec, t.piece), t.shard) for t in ds.transfers if t.source == node}
            self.held[node] = {p for p in mine if p in keep or p[0] not in {d.key for d in datasets}}
        self.publish(datasets)
        return copies

    def write_pieces(self) -> None:
        """Another system wrote every target piece (a DataSet without a source)."""
        datasets = self.datasets()

        for ds in datasets:
            if ds.placement is not None:
                for s in range(ds.spec.shards):
                    for p, idx in enumerate(ds.placement.pieces[s]):
                        if idx >= 0:
                            self.held.setdefault(ds.placement.nodes[idx], set()).add((ds.key, piece_key(ds.spec, p), s))
        self.publish(datasets)

    def publish(self, datasets: list[DataSet]) -> None:
        uids = {d.key: d.spec.uid for d in datasets}
        for node in sorted(self.alive()):
            by_ds: dict[str, dict[str, set[int]]] = {}
            for key, pk, shard in self.held.get(node, set()):
                by_ds.setdefault(key, {}).setdefault(pk, set()).add(shard)
            entries = {}
            for key, ready in by_ds.items():
                ns, name = key.split("/", 1)
                entries[key] = DataSetHoldings(ns, name, uids.get(key, ""), {k: frozenset(v) for k, v in ready.items()})
            obj = NodeHoldings(node, heartbeat=format_time(self.now), datasets=entries).to_object()
            if isinstance(self.api, MemoryApi):
                if self.api.get(NODE_HOLDINGS, node) != obj:
                    self.api.put(NODE_HOLDINGS, obj)
            elif self.api.get(NODE_HOLDINGS, node) is None:
                self.api.create(NODE_HOLDINGS, obj)
            else:
                self.api.patch_status(NODE_HOLDINGS, node, {"status": obj["status"]})

    def copies(self, ds: DataSet) -> list[int]:
        """Ready pieces per shard, truly held by live nodes (distinct piece keys for erasure)."""
        alive = self.alive()
        out = []
        for s in range(ds.spec.shards):
            held = [(n, p[1]) for n, pieces in self.held.items() if n in alive for p in pieces if p[0] == ds.key and p[2] == s]
            out.append(len({k for _, k in held}) if isinstance(ds.spec.redundancy, Erasure) else len(held))
        return out

    def check_slices(self, reconciler: Reconciler) -> None:
        """Every target the reconciler holds is the one its stored PlacementSlices assemble to
        (a slice left unwritten after its shards moved would make readers act on another)."""
        for obj in self.api.list(DATASETS)[0]:
            key = f"{obj['metadata'].get('namespace') or 'default'}/{obj['metadata']['name']}"
            kept = reconciler.dataset(key)
            if kept is None or kept.placement is None or DataSet.from_object(obj).slices is None:
                continue
            stored = self.resolve(obj).placement
            assert stored is not None, key
            assert stored.equals(kept.placement), f"{key}: the stored slices are not the target the reconciler holds"

    def settle(self, reconciler: Reconciler, *, per_step: int = 1000, rounds: int = 200) -> int:
        """Reconcile and let agents act until nothing changes; returns the rounds it took."""
        for i in range(rounds):
            report = reconciler.reconcile_once()
            self.check_slices(reconciler)
            copies = self.agent_step(per_step)
            if not copies and not report.written and not report.nodes_patched:
                return i
        raise AssertionError("did not settle")


def drain(world: World, node: str) -> None:
    world.annotate(node, {labels.DRAIN: "scale-down"})


__all__ = ["T0", "World", "cluster_nodes", "dataset", "drain", "make_node"]
