"""The cluster as a networkx graph: region -> zone -> rack -> node, and the data on it.

:class:`Cluster` owns a :class:`networkx.DiGraph` whose vertices are tuples ``(kind, name)``:
``("region", r)``, ``("zone", z)``, ``("rack", k)``, ``("node", n)`` linked top-down by
*contains* edges, and ``("dataset", ns/name)`` -> ``("shard", ns/name, i)`` -> ``("node", n)``
edges for every piece a node holds. Beside the graph it keeps the derived index the scheduling
hot path needs, built once when state changes, never per request: integer ids per node with its
rack, zone and region ids as numpy arrays, and per dataset its piece -> node-id array.

Updates are incremental (:meth:`Cluster.set_node`, :meth:`Cluster.remove_node`,
:meth:`Cluster.set_dataset`, :meth:`Cluster.remove_dataset`); nothing is rebuilt wholesale.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

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

#: How many (dataset, shard set) byte tables to keep; a pod stream reuses few shard sets.
LEVEL_CACHE_SIZE = 512


def node_vertex(name: str) -> Vertex:
    return ("node", name)


def shard_vertex(dataset_key: str, index: int) -> tuple[str, str, int]:
    return ("shard", dataset_key, index)


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


class _DomainIds:
    """Dense integer ids for domain names at one level."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def get(self, name: str) -> int:
        found = self.ids.get(name)
        if found is None:
            found = self.ids[name] = len(self.ids)
        return found


class Cluster:
    """The cluster's topology and data, as a graph plus a hot-path index.

    Examples
    --------
    >>> from topology.nodes import Node, Resources
    >>> c = Cluster()
    >>> c.set_node(Node("a", "r", "r/z1", "r/z1/k1", {}, Resources()))
    >>> c.set_node(Node("b", "r", "r/z2", "r/z2/k1", {}, Resources()))
    >>> c.level("a", "b")
    <Level.REGION: 3>
    """

    def __init__(self) -> None:
        self.graph: nx.DiGraph[Vertex] = nx.DiGraph()
        self.nodes: dict[str, Node] = {}
        self.datasets: dict[str, DataSet] = {}
        # Hot-path index. Node ids are never reused; a removed node's slot is marked absent.
        self._node_ids: dict[str, int] = {}
        self._names: list[str] = []
        self._rack: list[int] = []
        self._zone: list[int] = []
        self._region: list[int] = []
        self._present: list[bool] = []
        self._racks = _DomainIds()
        self._zones = _DomainIds()
        self._regions = _DomainIds()
        self._arrays: tuple[IntArray, IntArray, IntArray, IntArray] | None = None
        self._global_pieces: dict[str, tuple[int, IntArray]] = {}
        self._level_cache: OrderedDict[tuple[str, int, tuple[int, ...] | None], tuple[FloatArray, float]] = OrderedDict()
        #: Bumped on every change that can alter the index; caches compare against it.
        self.version = 0

    # ------------------------------------------------------------------ nodes
    def set_node(self, node: Node) -> None:
        """Add or replace a node (its domains may have changed)."""
        old = self.nodes.get(node.name)
        vertex = node_vertex(node.name)
        if old is not None and (old.region, old.zone, old.rack) != (node.region, node.zone, node.rack):
            self.graph.remove_edge(("rack", old.rack), vertex)
            self._prune(("rack", old.rack))
        self.nodes[node.name] = node
        region, zone, rack = ("region", node.region), ("zone", node.zone), ("rack", node.rack)
        self.graph.add_node(region, kind="region", name=node.region)
        self.graph.add_node(zone, kind="zone", name=node.zone)
        self.graph.add_node(rack, kind="rack", name=node.rack)
        self.graph.add_node(vertex, kind="node", name=node.name, present=True)
        self.graph.add_edge(region, zone)
        self.graph.add_edge(zone, rack)
        self.graph.add_edge(rack, vertex)
        nid = self._node_ids.get(node.name)
        if nid is None:
            nid = self._node_ids[node.name] = len(self._names)
            self._names.append(node.name)
            self._rack.append(0)
            self._zone.append(0)
            self._region.append(0)
            self._present.append(True)
        self._rack[nid] = self._racks.get(node.rack)
        self._zone[nid] = self._zones.get(node.zone)
        self._region[nid] = self._regions.get(node.region)
        self._present[nid] = True
        self._touch()

    def remove_node(self, name: str) -> None:
        """Remove a node. Its pieces stay recorded in the datasets (they are *missing*, not moved)."""
        node = self.nodes.pop(name, None)
        if node is None:
            return
        vertex = node_vertex(name)
        self.graph.remove_edge(("rack", node.rack), vertex)
        if self.graph.in_degree(vertex) == 0:
            self.graph.remove_node(vertex)
        else:  # it still holds pieces: keep the shard edges, mark the node gone
            self.graph.nodes[vertex]["present"] = False
        self._prune(("rack", node.rack))
        self._present[self._node_ids[name]] = False
        self._touch()

    def _prune(self, vertex: Vertex) -> None:
        """Remove empty domains upwards (a rack with no nodes, then its zone, then its region)."""
        while vertex in self.graph and self.graph.out_degree(vertex) == 0:
            parents = list(self.graph.predecessors(vertex))
            self.graph.remove_node(vertex)
            if not parents:
                return
            vertex = parents[0]

    def _touch(self) -> None:
        self.version += 1
        self._arrays = None
        self._level_cache.clear()

    # --------------------------------------------------------------- datasets
    def set_dataset(self, dataset: DataSet) -> None:
        """Add or replace a dataset and link its shards to the nodes holding their pieces."""
        self.remove_dataset(dataset.key)
        self.datasets[dataset.key] = dataset
        dvertex = ("dataset", dataset.key)
        self.graph.add_node(dvertex, kind="dataset", name=dataset.key)
        placement = dataset.placement
        shard_vertices = [shard_vertex(dataset.key, i) for i in range(dataset.spec.shards)]
        self.graph.add_edges_from((dvertex, sv) for sv in shard_vertices)
        if placement is not None:
            names = placement.nodes
            rows, cols = np.nonzero(placement.pieces >= 0)
            holders = placement.pieces[rows, cols]
            node_vs = [node_vertex(n) for n in names]
            for nv in node_vs:
                if nv not in self.graph:  # placed on a node we have not seen (yet)
                    self.graph.add_node(nv, kind="node", name=nv[1], present=False)
            self.graph.add_edges_from(
                (shard_vertices[s], node_vs[h]) for s, h in zip(rows.tolist(), holders.tolist(), strict=True)
            )
        self._global_pieces.pop(dataset.key, None)
        self._drop_level_cache(dataset.key)

    def remove_dataset(self, key: str) -> None:
        """Forget a dataset and its shard vertices."""
        dataset = self.datasets.pop(key, None)
        if dataset is None:
            return
        self.graph.remove_nodes_from([("dataset", key), *(shard_vertex(key, i) for i in range(dataset.spec.shards))])
        self._global_pieces.pop(key, None)
        self._drop_level_cache(key)

    def _drop_level_cache(self, key: str) -> None:
        for cache_key in [k for k in self._level_cache if k[0] == key]:
            del self._level_cache[cache_key]

    # ------------------------------------------------------------------ index
    def node_id(self, name: str) -> int | None:
        """The dense id of a present node, or ``None``."""
        nid = self._node_ids.get(name)
        if nid is None or not self._present[nid]:
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

    def domain_arrays(self) -> tuple[IntArray, IntArray, IntArray, IntArray]:
        """``(rack, zone, region, present)`` arrays indexed by node id (built once per change)."""
        if self._arrays is None:
            self._arrays = (
                np.asarray(self._rack, dtype=np.int64),
                np.asarray(self._zone, dtype=np.int64),
                np.asarray(self._region, dtype=np.int64),
                np.asarray(self._present, dtype=np.int64),
            )
        return self._arrays

    def global_pieces(self, key: str) -> IntArray:
        """The dataset's placement as node ids, shape ``(shards, pieces)``.

        Pieces on nodes that are not (or no longer) in the cluster, and missing pieces, are ``-1``.
        """
        cached = self._global_pieces.get(key)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        dataset = self.datasets[key]
        placement = dataset.placement
        if placement is None:
            arr = np.full((dataset.spec.shards, dataset.spec.redundancy.width), -1, dtype=np.int64)
        else:
            lookup = np.append(self.node_ids(placement.nodes), -1)
            arr = lookup[placement.pieces]
        self._global_pieces[key] = (self.version, arr)
        return arr

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
        if na.name == nb.name:
            return Level.NODE
        if na.rack == nb.rack:
            return Level.RACK
        if na.zone == nb.zone:
            return Level.ZONE
        if na.region == nb.region:
            return Level.REGION
        return Level.REMOTE

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

    def _compute_level_bytes(self, key: str, shards: tuple[int, ...] | None) -> tuple[FloatArray, float]:
        dataset = self.datasets[key]
        redundancy = dataset.spec.redundancy
        pieces = self.global_pieces(key)
        sizes = dataset.spec.shard_sizes
        if shards is not None:
            index = np.asarray(shards, dtype=np.int64)
            pieces = pieces[index]
            sizes = sizes[index]
        need = redundancy.needed
        piece_bytes = sizes.astype(np.float64) * redundancy.piece_fraction()
        needed_total = float(piece_bytes.sum() * need)
        rack, zone, region, _present = self.domain_arrays()
        n = len(self._names)
        within = np.zeros((n, 4), dtype=np.float64)  # bytes readable within node/rack/zone/region
        shard_idx, piece_col = np.nonzero(pieces >= 0)
        holders = pieces[shard_idx, piece_col]
        for col, domain_of in enumerate((None, rack, zone, region)):
            domains = holders if domain_of is None else domain_of[holders]
            width = int(domains.max()) + 1 if domains.size else 1
            pair = shard_idx * width + domains
            uniq, counts = np.unique(pair, return_counts=True)
            per_domain = np.bincount(
                uniq % width, weights=np.minimum(counts, need) * piece_bytes[uniq // width], minlength=width
            )
            node_domain = np.arange(n) if domain_of is None else domain_of
            valid = node_domain < width
            within[valid, col] = per_domain[node_domain[valid]]
        table = np.empty((n, len(LEVELS)), dtype=np.float64)
        table[:, 0] = within[:, 0]
        table[:, 1] = within[:, 1] - within[:, 0]
        table[:, 2] = within[:, 2] - within[:, 1]
        table[:, 3] = within[:, 3] - within[:, 2]
        table[:, 4] = needed_total - within[:, 3]
        return table, needed_total

    # ----------------------------------------------------------------- queries
    def domains(self, kind: str) -> list[str]:
        """Names of all domains of ``kind`` (``region``, ``zone``, ``rack``, ``node``)."""
        return [d["name"] for _, d in self.graph.nodes(data=True) if d.get("kind") == kind and d.get("present", True)]

    def children(self, kind: str, name: str) -> list[str]:
        """Names of the direct children of a domain (zones of a region, nodes of a rack, ...)."""
        return [self.graph.nodes[v]["name"] for v in self.graph.successors((kind, name))]

    def nodes_holding(self, key: str, shard: int) -> list[str]:
        """Nodes that hold a piece of one shard (by the graph's shard -> node edges)."""
        return [v[1] for v in self.graph.successors(shard_vertex(key, shard)) if self.graph.nodes[v].get("present", True)]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)
