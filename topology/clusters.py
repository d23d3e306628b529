"""The cluster as one networkx graph, and the hot-path index derived from it.

:class:`Cluster` owns a :class:`networkx.DiGraph`, the one representation of the cluster and its
data. Vertices are tuples ``(kind, name)``:

- ``("region", r)`` -> ``("zone", z)`` -> ``("rack", k)`` -> ``("node", n)``: the failure-domain
  tree, linked top-down by *contains* edges. Every vertex carries ``kind``, ``name`` and a dense
  integer ``id`` (per kind); a node vertex also carries its :class:`~topology.nodes.Node` and
  ``present``. A node that left keeps its vertex (``present`` false, detached from its rack), so its
  id is never handed to another name and the data recorded on it stays accounted for.
- ``("dataset", ns/name)`` carries the :class:`~topology.datasets.DataSet`, whose numpy placement
  arrays hold the per-piece detail, and one *holds* edge per node holding any of its pieces, with
  the aggregate ``pieces`` (count) and ``bytes``. The graph is sized by the topology and the
  datasets (at most one edge per dataset and holder node), never by the number of replicas.

The index the scheduling hot path reads is *derived* from the graph, never written from anywhere
else: node ids and their rack, zone and region ids as numpy arrays (copied only when a change
follows a read, so a reader's arrays never change under it), and per dataset its piece -> node-id
array and the per-level byte tables of :meth:`Cluster.level_bytes`. :meth:`Cluster.derive_index`
recomputes the index from the graph alone; the tests compare it with the incremental one.

Updates are incremental and cost what changed (:meth:`Cluster.set_node`,
:meth:`Cluster.remove_node`, :meth:`Cluster.set_dataset`, :meth:`Cluster.remove_dataset`); a node
whose place in the tree is unchanged (a heartbeat, a taint) changes no index. The topology
questions are answered through the graph: :meth:`Cluster.domain_tree` (failure-domain trees for
layouts and ``kbl topology``), :func:`nearest_holders` (the holder to copy from for a repair),
:meth:`Cluster.zone_bytes` / :meth:`Cluster.main_zone` (the zone holding most of a KBL's data).
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import numpy.typing as npt

from topology.datasets import DataSet
from topology.errors import KblError
from topology.localities import LEVELS, Level, LocalityCosts
from topology.nodes import Node

Vertex = tuple[str, ...]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
DomainArrays = tuple[IntArray, IntArray, IntArray, IntArray]

#: How many (dataset, shard set) byte tables to keep; a pod stream reuses few shard sets.
LEVEL_CACHE_SIZE = 512
#: The failure-domain levels of the tree, top-down.
DOMAIN_KINDS = ("region", "zone", "rack")


def node_vertex(name: str) -> Vertex:
    return ("node", name)


def dataset_vertex(key: str) -> Vertex:
    return ("dataset", key)


@dataclass(frozen=True, slots=True)
class LevelBytes:
    """Bytes a pod would read at each locality level, per node.

    ``table[i, level]`` is the number of bytes read at ``level`` if the pod ran on the node with
    id ``ids[i]``; every row sums to ``needed_bytes``.
    """

    ids: IntArray
    table: FloatArray
    needed_bytes: float

    def cost(self, costs: LocalityCosts) -> FloatArray:
        """Network cost per node: ``sum over levels of bytes[level] * costs[level]``."""
        return self.table @ np.asarray(costs.as_tuple(), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class LevelSums:
    """Per domain, the bytes of a (dataset, shard set) readable within it: what a byte table is
    gathered from (:meth:`Cluster.level_bytes_at`), computed from the holders alone.

    ``within[c][d]`` for level column ``c`` (node, rack, zone, region) and domain id ``d`` (the
    node id for the node column); ``holders`` are the present nodes holding a requested piece.
    """

    within: tuple[FloatArray, FloatArray, FloatArray, FloatArray]
    needed_bytes: float
    holders: IntArray
    pieces: IntArray  # the dataset's piece -> node-id array these sums were computed from


@dataclass(frozen=True, slots=True)
class Holding:
    """What one node holds of one dataset: the aggregate on the graph's *holds* edge."""

    node: str
    pieces: int
    bytes: float
    present: bool


@dataclass(frozen=True, slots=True)
class Index:
    """The hot-path index as :meth:`Cluster.derive_index` recomputes it from the graph."""

    node_ids: dict[str, int]
    rack: IntArray
    zone: IntArray
    region: IntArray
    present: IntArray


class _Nodes(dict[str, Node]):
    """``Cluster.nodes``: present nodes by name, kept by the cluster from its graph.

    Reads are plain dict reads (the hot path); an assignment or deletion goes through the graph
    (:meth:`Cluster.set_node`, :meth:`Cluster.remove_node`), so the view never drifts from it.
    """

    def __init__(self, cluster: Cluster) -> None:
        super().__init__()
        self._cluster = weakref.proxy(cluster)  # no cycle: a dropped Cluster is freed at once, not by the collector

    def __setitem__(self, name: str, node: Node) -> None:
        if name != node.name:
            raise KblError(f"node {node.name!r} stored under another name {name!r}")
        self._cluster.set_node(node)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._cluster.remove_node(name)

    def __reduce__(self) -> Any:  # pragma: no cover - a view is not pickled on its own
        return (dict, (dict(self),))


class _DataSets(dict[str, DataSet]):
    """``Cluster.datasets``: datasets by key; writes go through the graph like :class:`_Nodes`."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__()
        self._cluster = weakref.proxy(cluster)  # no cycle: a dropped Cluster is freed at once, not by the collector

    def __setitem__(self, key: str, dataset: DataSet) -> None:
        if key != dataset.key:
            raise KblError(f"dataset {dataset.key!r} stored under another key {key!r}")
        self._cluster.set_dataset(dataset)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._cluster.remove_dataset(key)

    def __reduce__(self) -> Any:  # pragma: no cover
        return (dict, (dict(self),))


class Cluster:
    """The cluster's topology and data as one graph, and the hot-path index derived from it.

    Examples
    --------
    >>> from topology.nodes import Node, Resources
    >>> c = Cluster()
    >>> c.set_node(Node("a", "r", "r/z1", "r/z1/k1", {}, Resources()))
    >>> c.set_node(Node("b", "r", "r/z2", "r/z2/k1", {}, Resources()))
    >>> c.level("a", "b")
    <Level.REGION: 3>
    >>> c.domain_tree()
    {'r': {'r/z1': {'r/z1/k1': ['a']}, 'r/z2': {'r/z2/k1': ['b']}}}
    """

    def __init__(self) -> None:
        self.graph: nx.DiGraph[Vertex] = nx.DiGraph()
        self.nodes: dict[str, Node] = _Nodes(self)
        self.datasets: dict[str, DataSet] = _DataSets(self)
        # Id allocators: a domain or node name keeps its id for the cluster's lifetime.
        self._domain_ids: dict[str, dict[str, int]] = {kind: {} for kind in DOMAIN_KINDS}
        # Derived index (written only from the graph, in _index_node).
        self._node_ids: dict[str, int] = {}
        self._names: list[str] = []
        self._idx: IntArray = np.zeros((4, 64), dtype=np.int64)  # rows: rack, zone, region, present
        self._published: DomainArrays | None = None
        self._global_pieces: dict[str, tuple[int, IntArray]] = {}
        self._level_cache: OrderedDict[tuple[str, int, tuple[int, ...] | None], tuple[FloatArray, float]] = OrderedDict()
        self._sums_cache: OrderedDict[tuple[str, int, tuple[int, ...] | None], LevelSums] = OrderedDict()
        #: Bumped on every change that can alter the index; caches compare against it.
        self.version = 0

    # ------------------------------------------------------------------ nodes
    def set_node(self, node: Node) -> None:
        """Add or replace a node. Only a change of place (or a return) touches the index."""
        g = self.graph
        vertex = node_vertex(node.name)
        data = g.nodes[vertex] if vertex in g else None
        old: Node | None = data.get("node") if data is not None else None
        present = data is not None and data.get("present", False)
        if present and old is not None and (old.region, old.zone, old.rack) == (node.region, node.zone, node.rack):
            data["node"] = node  # type: ignore[index]
            dict.__setitem__(self.nodes, node.name, node)
            return
        if present and old is not None:
            self._detach(vertex, old)
        parent: Vertex | None = None
        for kind, name in zip(DOMAIN_KINDS, (node.region, node.zone, node.rack), strict=True):
            domain = (kind, name)
            if domain not in g:
                ids = self._domain_ids[kind]
                g.add_node(domain, kind=kind, name=name, id=ids.setdefault(name, len(ids)))
            if parent is not None:
                g.add_edge(parent, domain)
            parent = domain
        if vertex not in g:
            g.add_node(vertex, kind="node", name=node.name)
        data = g.nodes[vertex]
        data["node"] = node
        data["present"] = True
        if "id" not in data:
            data["id"] = len(self._names)
            self._names.append(node.name)
        g.add_edge(parent, vertex)
        dict.__setitem__(self.nodes, node.name, node)
        self._index_node(vertex)
        self._touch()

    def add_nodes(self, nodes: Iterable[Node]) -> None:
        """Add many nodes (a first list): the same graph and index as :meth:`set_node` for each.

        Nodes the graph has never seen are added in bulk; the others go through :meth:`set_node`.
        """
        g = self.graph
        fresh: list[Node] = []
        seen: set[str] = set()
        for node in nodes:
            if node.name in seen or node_vertex(node.name) in g:
                self.set_node(node)
            else:
                seen.add(node.name)
                fresh.append(node)
        if not fresh:
            return
        domains: dict[Vertex, Vertex | None] = {}
        for node in fresh:
            domains.setdefault(("region", node.region), None)
            domains.setdefault(("zone", node.zone), ("region", node.region))
            domains.setdefault(("rack", node.rack), ("zone", node.zone))
        for domain, parent in domains.items():
            if domain not in g:
                ids = self._domain_ids[domain[0]]
                g.add_node(domain, kind=domain[0], name=domain[1], id=ids.setdefault(domain[1], len(ids)))
            if parent is not None:
                g.add_edge(parent, domain)
        first = len(self._names)
        attrs = ({"kind": "node", "name": n.name, "node": n, "present": True, "id": first + i} for i, n in enumerate(fresh))
        g.add_nodes_from(zip((node_vertex(n.name) for n in fresh), attrs, strict=True))
        g.add_edges_from((("rack", n.rack), node_vertex(n.name)) for n in fresh)
        for i, node in enumerate(fresh):
            self._names.append(node.name)
            self._node_ids[node.name] = first + i
            dict.__setitem__(self.nodes, node.name, node)
        regions, zones, racks = (self._domain_ids[k] for k in DOMAIN_KINDS)
        rows = np.array(
            [[racks[n.rack] for n in fresh], [zones[n.zone] for n in fresh], [regions[n.region] for n in fresh], [1] * len(fresh)],
            dtype=np.int64,
        ).reshape(4, len(fresh))
        need = len(self._names)
        if need > self._idx.shape[1]:
            grown = np.zeros((4, max(need, self._idx.shape[1] * 2)), dtype=np.int64)
            grown[:, :first] = self._idx[:, :first]
            self._idx = grown
        elif self._published is not None:
            self._idx = self._idx.copy()
        self._published = None
        self._idx[:, first:need] = rows
        self._touch()

    def remove_node(self, name: str) -> None:
        """Remove a node. Its pieces stay recorded in the datasets (they are *missing*, not moved)."""
        vertex = node_vertex(name)
        g = self.graph
        if vertex not in g or not g.nodes[vertex].get("present", False):
            return
        data = g.nodes[vertex]
        self._detach(vertex, data["node"])
        data["present"] = False
        dict.pop(self.nodes, name, None)
        self._index_node(vertex)
        self._touch()

    def _detach(self, vertex: Vertex, old: Node) -> None:
        rack = ("rack", old.rack)
        if self.graph.has_edge(rack, vertex):
            self.graph.remove_edge(rack, vertex)
        self._prune(rack)

    def _prune(self, vertex: Vertex) -> None:
        """Remove empty domains upwards (a rack with no nodes, then its zone, then its region)."""
        g = self.graph
        while vertex in g and not g.succ[vertex]:
            parents = list(g.predecessors(vertex))
            g.remove_node(vertex)
            if not parents:
                return
            vertex = parents[0]

    def _parent(self, vertex: Vertex, kind: str) -> Vertex | None:
        parent: Vertex
        for parent in self.graph.predecessors(vertex):
            if parent[0] == kind:
                return parent
        return None

    def _place_ids(self, vertex: Vertex) -> tuple[int, int, int, int]:
        """``(rack, zone, region, present)`` ids of a node vertex, read from the graph."""
        g = self.graph
        if not g.nodes[vertex].get("present", False):
            return (0, 0, 0, 0)
        rack = self._parent(vertex, "rack")
        zone = self._parent(rack, "zone") if rack is not None else None
        region = self._parent(zone, "region") if zone is not None else None
        if rack is None or zone is None or region is None:
            raise KblError(f"node {vertex[1]!r} is not under a region/zone/rack in the graph")
        return (g.nodes[rack]["id"], g.nodes[zone]["id"], g.nodes[region]["id"], 1)

    def _index_node(self, vertex: Vertex) -> None:
        """Write one node's row of the index from the graph (copy-on-write after a read)."""
        nid: int = self.graph.nodes[vertex]["id"]
        self._node_ids[vertex[1]] = nid
        cap = self._idx.shape[1]
        if nid >= cap:
            grown = np.zeros((4, max(nid + 1, cap * 2)), dtype=np.int64)
            grown[:, :cap] = self._idx
            self._idx = grown
        elif self._published is not None:
            self._idx = self._idx.copy()
        self._published = None
        self._idx[:, nid] = self._place_ids(vertex)

    def _touch(self) -> None:
        self.version += 1
        self._level_cache.clear()

    # --------------------------------------------------------------- datasets
    def set_dataset(self, dataset: DataSet) -> None:
        """Add or replace a dataset; its *holds* edges change only where the holdings changed.

        When the placement keeps its node list (the reconciler moving pieces), the old and new
        holdings are compared as numpy arrays and only the changed edges are written.
        """
        g = self.graph
        vertex = dataset_vertex(dataset.key)
        if vertex not in g:
            g.add_node(vertex, kind="dataset", name=dataset.key)
            previous: DataSet | None = None
        else:
            previous = g.nodes[vertex].get("dataset")
        g.nodes[vertex]["dataset"] = dataset
        dict.__setitem__(self.datasets, dataset.key, dataset)
        names, counts, sizes = _holding_arrays(dataset)
        if previous is not None and previous.placement is not None and names and previous.placement.nodes == names:
            _, old_counts, old_sizes = _holding_arrays(previous)
            changed = np.flatnonzero((old_counts != counts) | (old_sizes != sizes))
            removed = [names[i] for i in changed.tolist() if counts[i] == 0]
            written = {names[i]: (int(counts[i]), float(sizes[i])) for i in changed.tolist() if counts[i] > 0}
        else:
            written = _as_holdings(names, counts, sizes)
            removed = [v[1] for v in g.successors(vertex) if v[1] not in written]
            for name, value in _edge_holdings(g, vertex).items():
                if written.get(name) == value:
                    del written[name]
        for name in removed:
            if g.has_edge(vertex, node_vertex(name)):
                g.remove_edge(vertex, node_vertex(name))
                self._forget_unseen(node_vertex(name))
        _write_holds(g, vertex, written)
        self._global_pieces.pop(dataset.key, None)
        self._drop_level_cache(dataset.key)

    def remove_dataset(self, key: str) -> None:
        """Forget a dataset and its *holds* edges."""
        vertex = dataset_vertex(key)
        if vertex not in self.graph:
            return
        holders = list(self.graph.successors(vertex))
        self.graph.remove_node(vertex)
        for nv in holders:
            self._forget_unseen(nv)
        dict.pop(self.datasets, key, None)
        self._global_pieces.pop(key, None)
        self._drop_level_cache(key)

    def _forget_unseen(self, vertex: Vertex) -> None:
        """Drop a vertex for a node never seen, once no dataset places anything on it."""
        g = self.graph
        if vertex in g and "id" not in g.nodes[vertex] and not g.pred[vertex]:
            g.remove_node(vertex)

    def _drop_level_cache(self, key: str) -> None:
        for cache_key in [k for k in self._level_cache if k[0] == key]:
            del self._level_cache[cache_key]

    # ------------------------------------------------------------------ index
    def node_id(self, name: str) -> int | None:
        """The dense id of a present node, or ``None``."""
        nid = self._node_ids.get(name)
        if nid is None or not self._idx[3, nid]:
            return None
        return nid

    def node_ids(self, names: Iterable[str]) -> IntArray:
        """Ids for names; unknown or absent nodes give ``-1``."""
        out = np.fromiter(map(self._node_ids.get, names, itertools.repeat(-1)), dtype=np.int64)
        if out.size:
            present = self.domain_arrays()[3]
            if not present.size:  # no node known yet (an extender still syncing): every name is unknown
                out[:] = -1
                return out
            out[present[np.maximum(out, 0)] == 0] = -1
        return out

    def name_of(self, node_id: int) -> str:
        return self._names[node_id]

    def domain_arrays(self) -> DomainArrays:
        """``(rack, zone, region, present)`` arrays indexed by node id.

        The arrays are not changed afterwards: a later change writes to a copy.
        """
        if self._published is None:
            n = len(self._names)
            idx = self._idx
            self._published = (idx[0, :n], idx[1, :n], idx[2, :n], idx[3, :n])
        return self._published

    def derive_index(self) -> Index:
        """The index recomputed from the graph alone (what the incremental index must equal)."""
        g = self.graph
        ids: dict[str, int] = {}
        for vertex, data in g.nodes(data=True):
            if data.get("kind") == "node" and "id" in data:
                ids[vertex[1]] = data["id"]
        rows = np.zeros((4, len(ids)), dtype=np.int64)
        for name, nid in ids.items():
            rows[:, nid] = self._place_ids(node_vertex(name))
        return Index(ids, rows[0], rows[1], rows[2], rows[3])

    def global_pieces(self, key: str) -> IntArray:
        """The dataset's placement as node ids, shape ``(shards, pieces)``.

        Pieces on nodes that are not (or no longer) in the cluster, and missing pieces, are ``-1``.
        """
        cached = self._global_pieces.get(key)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        dataset = self.dataset(key)
        placement = dataset.placement
        if placement is None:
            arr = np.full((dataset.spec.shards, dataset.spec.redundancy.width), -1, dtype=np.int64)
        else:
            lookup = np.append(self.node_ids(placement.nodes), -1)
            arr = lookup[placement.pieces]
        self._global_pieces[key] = (self.version, arr)
        return arr

    def dataset(self, key: str) -> DataSet:
        """The dataset a graph vertex carries.

        Raises
        ------
        KeyError
            If the dataset is unknown.
        """
        vertex = dataset_vertex(key)
        if vertex not in self.graph:
            raise KeyError(key)
        found: DataSet = self.graph.nodes[vertex]["dataset"]
        return found

    # --------------------------------------------------------------- locality
    def level(self, a: str, b: str) -> Level:
        """The locality level between two nodes: the smallest domain they share.

        Raises
        ------
        KblError
            If either node is unknown.
        """
        try:
            na, nb = self.nodes[a], self.nodes[b]
        except KeyError as exc:
            raise KblError(f"unknown node {exc.args[0]!r}") from None
        return shared_level(na, nb)

    def distance(self, a: str, b: str, costs: LocalityCosts | None = None) -> float:
        """The cost of reading one byte on node ``a`` from node ``b`` (see :class:`LocalityCosts`)."""
        return (costs or LocalityCosts()).of(self.level(a, b))

    def level_bytes(self, key: str, shards: Sequence[int] | None = None) -> LevelBytes:
        """Bytes a pod reading ``shards`` of dataset ``key`` reads at each level, for every node.

        For a shard needing ``q`` pieces (1 for replicas, k for erasure) of ``b`` bytes each, a
        pod on node n reads the q nearest pieces. With ``c_L(n)`` the number of the shard's live
        pieces within n's domain at level L (node, rack, zone, region), the bytes read within
        level L are ``b * min(c_L(n), q)``, so bytes read *at* level L are the difference to the
        level below, and the remainder is remote. Summed over shards, each term is a per-domain
        sum, computed once per (dataset, shard set) with ``np.unique`` over (shard, domain) pairs.

        Parameters
        ----------
        key:
            ``namespace/name`` of the dataset.
        shards:
            Shard indexes the pod reads; ``None`` for all.

        Returns
        -------
        LevelBytes
            Over all node ids (absent nodes included, callers select rows).
        """
        shard_key = None if shards is None else tuple(shards)
        cache_key = (key, self.version, shard_key)
        cached = self._level_cache.get(cache_key)
        if cached is None:
            cached = self._compute_level_bytes(key, shard_key)
            self._level_cache[cache_key] = cached
            if len(self._level_cache) > LEVEL_CACHE_SIZE:
                self._level_cache.popitem(last=False)
        else:
            self._level_cache.move_to_end(cache_key)
        table, needed = cached
        return LevelBytes(np.arange(table.shape[0], dtype=np.int64), table, needed)

    def level_sums(self, key: str, shards: Sequence[int] | None = None) -> LevelSums:
        """The per-domain sums a byte table is gathered from: O(requested pieces), not O(nodes).

        Remembered per dataset, shard set and index version, and only while the dataset's
        placement is the one they were computed from.
        """
        shard_key = None if shards is None else tuple(shards)
        cache_key = (key, self.version, shard_key)
        pieces = self.global_pieces(key)
        cached = self._sums_cache.get(cache_key)
        if cached is not None and cached.pieces is pieces:
            self._sums_cache.move_to_end(cache_key)
            return cached
        sums = self._compute_level_sums(key, shard_key, pieces)
        self._sums_cache[cache_key] = sums
        while len(self._sums_cache) > LEVEL_CACHE_SIZE:
            self._sums_cache.popitem(last=False)
        return sums

    def level_bytes_at(self, key: str, shards: Sequence[int] | None, ids: IntArray) -> FloatArray:
        """Rows of :meth:`level_bytes` for the given node ids only (all ``>= 0``), in
        O(requested pieces + len(ids)): the same numbers, without a table over every node."""
        return self._gather(self.level_sums(key, shards), ids)

    def _compute_level_sums(self, key: str, shards: tuple[int, ...] | None, all_pieces: IntArray) -> LevelSums:
        dataset = self.dataset(key)
        redundancy = dataset.spec.redundancy
        pieces = all_pieces
        sizes = dataset.spec.shard_sizes
        if shards is not None:
            index = np.asarray(shards, dtype=np.int64)
            pieces = pieces[index]
            sizes = sizes[index]
        need = redundancy.needed
        piece_bytes = sizes.astype(np.float64) * redundancy.piece_fraction()
        needed_total = float(piece_bytes.sum() * need)
        rack, zone, region, _present = self.domain_arrays()
        shard_idx, piece_col = np.nonzero(pieces >= 0)
        holders = pieces[shard_idx, piece_col]
        within: list[FloatArray] = []
        for domain_of in (None, rack, zone, region):
            domains = holders if domain_of is None else domain_of[holders]
            width = int(domains.max()) + 1 if domains.size else 1
            pair = shard_idx * width + domains
            uniq, counts = np.unique(pair, return_counts=True)
            per_domain = np.bincount(uniq % width, weights=np.minimum(counts, need) * piece_bytes[uniq // width], minlength=width)
            within.append(np.asarray(per_domain, dtype=np.float64))
        return LevelSums((within[0], within[1], within[2], within[3]), needed_total, np.unique(holders), all_pieces)

    def _gather(self, sums: LevelSums, ids: IntArray) -> FloatArray:
        """The byte table rows of node ``ids`` from per-domain sums (module docstring of level_bytes)."""
        rack, zone, region, _present = self.domain_arrays()
        within = np.zeros((ids.shape[0], 4), dtype=np.float64)  # bytes readable within node/rack/zone/region
        for col, domain_of in enumerate((None, rack, zone, region)):
            per_domain = sums.within[col]
            node_domain = ids if domain_of is None else domain_of[ids]
            valid = node_domain < per_domain.shape[0]
            within[valid, col] = per_domain[node_domain[valid]]
        table = np.empty((ids.shape[0], len(LEVELS)), dtype=np.float64)
        table[:, 0] = within[:, 0]
        table[:, 1] = within[:, 1] - within[:, 0]
        table[:, 2] = within[:, 2] - within[:, 1]
        table[:, 3] = within[:, 3] - within[:, 2]
        table[:, 4] = sums.needed_bytes - within[:, 3]
        return table

    def _compute_level_bytes(self, key: str, shards: tuple[int, ...] | None) -> tuple[FloatArray, float]:
        sums = self.level_sums(key, shards)
        return self._gather(sums, np.arange(len(self._names), dtype=np.int64)), sums.needed_bytes

    def domains(self, kind: str) -> list[str]:
        """Names of all domains of ``kind`` (``region``, ``zone``, ``rack``, ``node``) present now."""
        if kind == "node":
            return list(self.nodes)
        return [d["name"] for _, d in self.graph.nodes(data=True) if d.get("kind") == kind]

    def children(self, kind: str, name: str) -> list[str]:
        """Names of the direct children of a domain (zones of a region, nodes of a rack, ...)."""
        return [self.graph.nodes[v]["name"] for v in self.graph.successors((kind, name))]

    def domain_tree(self) -> dict[str, dict[str, dict[str, list[str]]]]:
        """The failure-domain tree, region -> zone -> rack -> node names, each level sorted."""
        g = self.graph
        tree: dict[str, dict[str, dict[str, list[str]]]] = {}
        regions = sorted(d["name"] for _, d in g.nodes(data=True) if d.get("kind") == "region")
        for region in regions:
            zones = tree[region] = {}
            for zone in sorted(v[1] for v in g.successors(("region", region))):
                racks = zones[zone] = {}
                for rack in sorted(v[1] for v in g.successors(("zone", zone))):
                    racks[rack] = sorted(v[1] for v in g.successors(("rack", rack)))
        return tree

    def domain_members(self, level: str) -> dict[str, list[str]]:
        """Present node names under each domain of ``level`` (``rack``, ``zone``, ``region``)."""
        if level not in DOMAIN_KINDS:
            raise KblError(f"unknown level {level!r}: expected one of {', '.join(DOMAIN_KINDS)}")
        g = self.graph
        out: dict[str, list[str]] = {}
        for vertex, data in g.nodes(data=True):
            if data.get("kind") != level:
                continue
            members: list[str] = []
            frontier = [vertex]
            while frontier:
                v = frontier.pop()
                for child in g.successors(v):
                    (members.append(child[1]) if child[0] == "node" else frontier.append(child))
            out[data["name"]] = sorted(members)
        return out

    def holdings(self, key: str) -> list[Holding]:
        """What each node holds of a dataset (the graph's *holds* edges), by node name."""
        g = self.graph
        edges = g.succ.get(dataset_vertex(key), {}).items()  # not g.out_edges: that cached view is a cycle back to the graph
        found = [Holding(v[1], d["pieces"], d["bytes"], bool(g.nodes[v].get("present", False))) for v, d in edges]
        return sorted(found, key=lambda h: h.node)

    def nodes_holding(self, key: str, shard: int) -> list[str]:
        """Present nodes that hold a piece of one shard, in piece order.

        The dataset vertex points to the placement arrays, where the per-piece detail lives.
        """
        placement = self.dataset(key).placement
        if placement is None:
            return []
        return [n for n in placement.holders(shard) if n in self.nodes]

    def zone_bytes(self, keys: Iterable[str]) -> dict[str, float]:
        """Bytes of the given datasets held by present nodes in each zone (from the *holds* edges)."""
        g = self.graph
        out: dict[str, float] = {}
        for key in keys:
            vertex = dataset_vertex(key)
            if vertex not in g:
                continue
            for nv, d in g.succ[vertex].items():
                node = self.nodes.get(nv[1])
                if node is not None:
                    out[node.zone] = out.get(node.zone, 0.0) + d["bytes"]
        return out

    def main_zone(self, keys: Iterable[str]) -> str | None:
        """The zone holding most bytes of the given datasets (a KBL's data); ``None`` if none."""
        totals = self.zone_bytes(keys)
        if not totals:
            return None
        return min(totals, key=lambda z: (-totals[z], z))

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)


def shared_level(a: Node, b: Node) -> Level:
    """The smallest failure domain two nodes share (the one rule of topology distance)."""
    if a.name == b.name:
        return Level.NODE
    if a.rack == b.rack:
        return Level.RACK
    if a.zone == b.zone:
        return Level.ZONE
    if a.region == b.region:
        return Level.REGION
    return Level.REMOTE


def _holding_arrays(dataset: DataSet) -> tuple[tuple[str, ...], npt.NDArray[np.int64], FloatArray]:
    """Per name of the placement's node list: pieces held and their bytes (one numpy pass)."""
    placement = dataset.placement
    if placement is None or not len(placement.nodes):
        return (), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    pieces = placement.pieces
    rows, cols = np.nonzero(pieces >= 0)
    holders = pieces[rows, cols].astype(np.int64)
    piece_bytes = dataset.spec.shard_sizes.astype(np.float64) * dataset.spec.redundancy.piece_fraction()
    n = len(placement.nodes)
    counts = np.bincount(holders, minlength=n).astype(np.int64)
    sizes = np.bincount(holders, weights=piece_bytes[rows], minlength=n).astype(np.float64)
    return placement.nodes, counts, sizes


def _write_holds(g: nx.DiGraph[Vertex], vertex: Vertex, written: dict[str, tuple[int, float]]) -> None:
    """Add or update ``vertex``'s *holds* edges (a vertex for a node never seen is added first).

    The same graph as ``add_edges_from`` with ``pieces``/``bytes`` data, written straight into
    the DiGraph's adjacency (one data dict shared by the successor and predecessor maps, as
    networkx does): a first list writes a million such edges, and networkx's per-edge checks
    were most of a cold start. A dataset's first edges (its vertex has none yet) are written in
    bulk. ``tests/topology/test_clusters.py`` compares the result with ``add_edges_from``.
    """
    nodes = g._node
    succ = g._succ[vertex]
    pred = g._pred
    if not succ:  # a first list: every edge is new
        targets = [("node", name) for name in written]
        for v in targets:
            if v not in nodes:
                g.add_node(v, kind="node", name=v[1], present=False)
        datas = [{"pieces": p, "bytes": b} for p, b in written.values()]
        succ.update(zip(targets, datas, strict=True))
        for v, data in zip(targets, datas, strict=True):
            pred[v][vertex] = data
        return
    for name, (p, b) in written.items():
        v = ("node", name)
        data = succ.get(v)
        if data is not None:
            data["pieces"] = p
            data["bytes"] = b
            continue
        if v not in nodes:
            g.add_node(v, kind="node", name=name, present=False)
        data = succ[v] = {"pieces": p, "bytes": b}
        pred[v][vertex] = data


def _as_holdings(names: Sequence[str], counts: npt.NDArray[np.int64], sizes: FloatArray) -> dict[str, tuple[int, float]]:
    held = np.flatnonzero(counts)
    return {names[i]: (c, s) for i, c, s in zip(held.tolist(), counts[held].tolist(), sizes[held].tolist(), strict=True)}


def _edge_holdings(g: nx.DiGraph[Vertex], vertex: Vertex) -> dict[str, tuple[int, float]]:
    return {v[1]: (d["pieces"], d["bytes"]) for v, d in g.succ[vertex].items()}


def nearest_holders(cluster: Cluster, node: str, candidates: Iterable[str], costs: LocalityCosts | None = None) -> list[str]:
    """Candidates sorted by topology distance from ``node`` (nearest first, then by name).

    The holder to copy from for a repair or a move: same node, then same rack, zone, region.
    Candidates that are not present in the cluster are left out.

    Raises
    ------
    KblError
        If ``node`` is unknown.

    Examples
    --------
    >>> from topology.nodes import Node, Resources
    >>> c = Cluster()
    >>> for n, rack in [("a", "r/z1/k1"), ("b", "r/z1/k1"), ("c", "r/z1/k2"), ("d", "r/z2/k1")]:
    ...     c.set_node(Node(n, "r", rack.rsplit("/", 1)[0], rack, {}, Resources()))
    >>> nearest_holders(c, "a", ["d", "c", "b", "gone"])
    ['b', 'c', 'd']
    """
    here = cluster.nodes.get(node)
    if here is None:
        raise KblError(f"unknown node {node!r}")
    price = costs or LocalityCosts()
    found = [(price.of(shared_level(here, other)), other.name) for other in map(cluster.nodes.get, candidates) if other is not None]
    return [name for _, name in sorted(found)]
