"""Planning: the pure per-DataSet decision of the placement reconciler, on typed objects.

:func:`decide` takes one :class:`~topology.datasets.DataSet` (its target ``status.placement`` and
``status.transfers``), a :class:`ClusterView` (nodes, lost nodes, every node's holdings) and the
DataSet's previous status, and returns a :class:`Decision`: the new target, the transfers, the
conditions, the counts and the Events that explain the change. No I/O: the loop
(:mod:`dataplane.reconciler.reconciling`) writes what it returns.

The rules, in order:

1. **Eligible targets** are Ready, not cordoned, not draining (``kbl.io/drain``), not lost nodes
   (a node whose agent is silent past ``agent_ttl_s`` is lost: the reconciler folds it in);
   ``spec.nodeSelector`` and a positive weight are :func:`placement.place`'s own filter.
   Cordoned and NotReady (not yet lost) nodes *keep* the pieces they hold but get no new ones.
2. **Placement**: fresh with :func:`placement.place`; afterwards ``place(..., previous=target)``,
   which moves only what must move (a lost, draining or deleted holder, a broken failure-domain
   rule, a node far from its weight share: joins). Deterministic: a restarted reconciler
   computes the same target from the same cluster.
3. **Make before break**: a moved slot's new node enters the target at once, with a
   :class:`~topology.datasets.Transfer` ``{from: old, to: new}`` when the old holder has the
   piece ready (or, for a slot already in flight, the transfer's source keeps it). A transfer is
   dropped once ``to`` reports the piece ready, or its source is lost. A piece no agent reports
   ready (a DataSet whose bytes another system writes) has no bytes to move: its move applies at
   once. So a shard never counts
   fewer ready pieces (target holders ready + transfer sources ready) than before a move,
   unless a node was lost. Moves are applied shard by shard, most at risk first (fewest ready
   pieces beyond the ``needed`` ones: ``k`` for erasure, 1 for replicas; then the earliest drain
   deadline; then the most bytes), while no node *serves* (is the ``from`` of) more than
   ``max_transfers_per_node`` in-flight transfers; the others wait for a later pass (a drain).
   What a node *receives* is not bounded here: a join's whole share enters the target in one
   pass and the receiving agent copies ``parallel_copies`` pieces at a time, repairs and first
   copies before moves (issue 24: the joiners' share within one reconcile; the old bound on
   both ends held 30 joiners at 64 pieces each). Repairs come first: while a piece is
   missing or in flight, moves that only rebalance (every old holder alive and staying) wait.
4. **Loss**: a shard without a source that a lost node left with fewer than ``needed`` ready
   pieces is *lost*: listed in ``status.lostShards`` (sticky until its pieces are ready again),
   condition ``Degraded`` reason ``ShardsLost``; its slots get new holders like any other, but
   nothing can fill them (an agent never invents bytes). With a source the agent re-hydrates it.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import operator
import weakref
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain, filterfalse
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from dataplane.reconciler.settings import ReconcilerSettings
from placement import PlacementResult, place
from placement.shifts import shift
from placement.stability import NodeTable, keeps
from topology import labels
from topology.clusters import shared_level
from topology.datasets import DataSet, DataSetSpec, Erasure, ShardPlacement, Transfer
from topology.errors import KblError
from topology.holdings import NodeHoldings, piece_key
from topology.localities import Level
from topology.nodes import Node
from topology.shards import format_shards, parse_shards
from topology.times import parse_time

ConditionStatus = Literal["True", "False", "Unknown"]
EventType = Literal["Normal", "Warning"]
#: The condition types the reconciler owns, in the order it writes them.
CONDITION_TYPES = ("Placed", "Ready", "Degraded")


@dataclass(frozen=True)
class ClusterView:
    """What the reconciler knows of the cluster at one moment.

    ``nodes`` are the Node objects present; ``lost`` the present ones NotReady past the grace
    period or whose agent is silent past its TTL (a node absent from ``nodes`` is lost too);
    ``silent`` those of ``lost`` lost for their agent's silence alone (for the Events);
    ``holdings`` every agent's report by node.
    What every DataSet's decision reads of the nodes (sorted, eligible, movable, their table) is
    computed once per view (cached properties).
    """

    nodes: Mapping[str, Node]
    lost: frozenset[str] = frozenset()
    holdings: Mapping[str, NodeHoldings] = field(default_factory=dict)
    silent: frozenset[str] = frozenset()

    @classmethod
    def following(
        cls,
        previous: ClusterView | None,
        nodes: Mapping[str, Node],
        lost: frozenset[str] = frozenset(),
        holdings: Mapping[str, NodeHoldings] | None = None,
        silent: frozenset[str] = frozenset(),
    ) -> ClusterView:
        """The view of the cluster after ``previous`` (issue 24: O(change) passes): what
        ``previous`` computed of its nodes (sorted, classified, the eligible :class:`NodeTable`)
        is carried over, patched for the nodes that changed (a new object, gone, come, lost or
        found), instead of recomputed from every node: a node joining 100,000 costs
        milliseconds here, not a second. With only the holdings changed, all of it is reused.
        More than :data:`DERIVE_LIMIT` changed nodes (or 1%), or no ``previous``: a fresh view.
        ``tests/dataplane/reconciler/test_views.py`` checks it equals a fresh view."""
        view = cls(nodes, lost, holdings if holdings is not None else {}, silent)
        if previous is None or "_classified" not in previous.__dict__:
            return view
        if previous.nodes is nodes and previous.lost == lost:
            for key in _NODE_DERIVED:
                if key in previous.__dict__:
                    view.__dict__[key] = previous.__dict__[key]
            return view
        before = previous.nodes
        changed = {k for k, v in nodes.items() if before.get(k) is not v}
        changed |= before.keys() - nodes.keys()
        changed |= lost ^ previous.lost
        if len(changed) > max(DERIVE_LIMIT, len(nodes) // 100):
            return view
        name = operator.attrgetter("name")
        eligible, kept, _ = previous._classified
        ordered, eligible, kept = list(previous.ordered), list(eligible), list(kept)
        for listed in (ordered, eligible, kept):
            for n in changed:
                at = bisect.bisect_left(listed, n, key=name)
                if at < len(listed) and listed[at].name == n:
                    del listed[at]
        joined_eligible: list[Node] = []
        for n in sorted(changed):
            node = nodes.get(n)
            if node is None:
                continue
            bisect.insort(ordered, node, key=name)
            kind = _kind(node, lost)
            if kind == "eligible":
                bisect.insort(eligible, node, key=name)
                joined_eligible.append(node)
            elif kind == "kept":
                bisect.insort(kept, node, key=name)
        movable = (previous.movable - changed) | {n for n in changed if n in nodes and _kind(nodes[n], lost) != "other"}
        view.__dict__["ordered"] = ordered
        view.__dict__["_classified"] = (eligible, kept, frozenset(movable))
        present = [n for n in changed if n in nodes]
        if "draining_names" in previous.__dict__:  # a walk over 100,000 nodes' annotations per pass otherwise
            draining = {n for n in previous.draining_names if n not in changed} | {n for n in present if view.draining(n)}
            view.__dict__["draining_names"] = sorted(draining)
        if "annotated_names" in previous.__dict__:
            view.__dict__["annotated_names"] = (previous.annotated_names - changed) | {n for n in present if _annotated(nodes[n])}
        if "eligible_table" in previous.__dict__:
            table: NodeTable = previous.__dict__["eligible_table"]
            derived = table.derived([n for n in changed if n in table.index], joined_eligible)
            if derived is not None:
                view.__dict__["eligible_table"] = derived
        return view

    def table_with(self, keep: Sequence[Node]) -> NodeTable:
        """:attr:`eligible_table` with ``keep`` added (cordoned or NotReady holders a re-plan keeps
        in their failure domains), derived from it and remembered per set of names for this view."""
        if not keep:
            return self.eligible_table
        key = frozenset(n.name for n in keep)
        found = self._with.get(key)
        if found is None:
            found = self.eligible_table.derived((), keep) or NodeTable([*self.eligible_nodes, *keep])
            self._with[key] = found
        return found

    def built_table(self) -> NodeTable | None:
        """:attr:`eligible_table` if this view has built (or derived) it already, else ``None``."""
        found: NodeTable | None = self.__dict__.get("eligible_table")
        return found

    @cached_property
    def _with(self) -> dict[frozenset[str], NodeTable]:
        return {}

    @cached_property
    def ordered(self) -> list[Node]:
        """Every node, sorted by name."""
        return sorted(self.nodes.values(), key=lambda n: n.name)

    @cached_property
    def _classified(self) -> tuple[list[Node], list[Node], frozenset[str]]:
        """:attr:`eligible_nodes`, :attr:`kept_candidates` and :attr:`movable` in one walk over the nodes."""
        eligible: list[Node] = []
        kept: list[Node] = []
        movable: list[str] = []
        lost = self.lost
        for n in self.ordered:
            kind = _kind(n, lost)
            if kind == "eligible":
                eligible.append(n)
                movable.append(n.name)
            elif kind == "kept":
                kept.append(n)
                movable.append(n.name)
        return eligible, kept, frozenset(movable)

    @cached_property
    def eligible_nodes(self) -> list[Node]:
        """The nodes that may receive new pieces, sorted by name."""
        return self._classified[0]

    @cached_property
    def eligible_table(self) -> NodeTable:
        """:attr:`eligible_nodes` typed for :func:`placement.stability.keeps`."""
        return NodeTable(self.eligible_nodes)

    @cached_property
    def alive_names(self) -> frozenset[str]:
        """The nodes present and not lost."""
        return frozenset(self.nodes.keys() - self.lost)

    @cached_property
    def kept_candidates(self) -> list[Node]:
        """Live nodes that are not eligible and not draining (cordoned, NotReady not yet lost),
        sorted: they keep the pieces they hold."""
        return self._classified[1]

    @cached_property
    def draining_names(self) -> list[str]:
        """Nodes annotated ``kbl.io/drain``, sorted."""
        return sorted(n for n in self.nodes if self.draining(n))

    @cached_property
    def annotated_names(self) -> frozenset[str]:
        """Nodes carrying ``kbl.io/data-drained`` or ``kbl.io/last-pieces``."""
        return frozenset(n for n, node in self.nodes.items() if _annotated(node))

    @cached_property
    def movable(self) -> frozenset[str]:
        """Eligible nodes, and live ones not draining (they keep what they hold)."""
        return self._classified[2]

    @cached_property
    def _absent(self) -> dict[int, tuple[Sequence[str], frozenset[str]]]:
        return {}

    def absent(self, names: Sequence[str]) -> frozenset[str]:
        """The names of ``names`` not alive here ("" left out), remembered per node list object
        for this view (many DataSets' targets, the same list from pass to pass)."""
        found = self._absent.get(id(names))
        if found is not None and found[0] is names:
            return found[1]
        table = self.built_table()
        outside = np.flatnonzero(table.known(names) < 0) if table is not None else None
        if outside is not None and len(outside) <= 1024:  # only names outside the eligible table can be absent
            alive = self.alive_names
            out = frozenset(n for n in (names[i] for i in outside.tolist()) if n and n not in alive)
        else:
            out = frozenset(filterfalse(self.alive_names.__contains__, names)) - {""}
        self._absent[id(names)] = (names, out)
        return out

    def alive(self, name: str) -> bool:
        return name in self.nodes and name not in self.lost

    def draining(self, name: str) -> bool:
        node = self.nodes.get(name)
        return node is not None and labels.DRAIN in node.annotations

    def eligible(self, node: Node) -> bool:
        """A node that may receive new pieces (before the selector and weight)."""
        return node.ready and not node.unschedulable and labels.DRAIN not in node.annotations and node.name not in self.lost

    def deadline(self, name: str) -> float:
        node = self.nodes.get(name)
        found = parse_time(node.annotations.get(labels.DRAIN_DEADLINE)) if node is not None else None
        return found if found is not None else math.inf


#: The most changed nodes :meth:`ClusterView.following` patches a view for (or 1% of the nodes).
DERIVE_LIMIT = 256
#: What a :class:`ClusterView` computes of its nodes and lost set alone (not of the holdings).
_NODE_DERIVED = ("ordered", "_classified", "eligible_nodes", "eligible_table", "alive_names", "kept_candidates",
                 "draining_names", "annotated_names", "movable", "_absent", "_with")


def _annotated(node: Node) -> bool:
    return labels.DATA_DRAINED in node.annotations or labels.LAST_PIECES in node.annotations


def _kind(node: Node, lost: Collection[str]) -> Literal["eligible", "kept", "other"]:

    """May receive new pieces (Ready, schedulable, not draining, not lost); keeps what it holds
    (live, not draining: cordoned, NotReady not yet lost); or neither (draining or lost)."""
    draining = labels.DRAIN in node.annotations
    if node.ready and not node.unschedulable and not draining and node.name not in lost:
        return "eligible"
    return "kept" if node.name not in lost and not draining else "other"


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What the reconciler wants a DataSet's status to be, and why.

    ``placement`` is ``None`` only when no placement could ever be made (a bad DataSet).
    ``moves`` counts the slots whose node changed; ``repairs`` those among them whose old holder
    was lost; ``ready`` and ``total`` count slots whose target holder has the piece ready.
    ``shard_ready`` is the ready pieces per shard (target holders + transfer sources);
    ``bytes_ready`` and ``bytes_total`` weigh ``ready`` and ``total`` by :func:`piece_sizes`.
    """

    key: str
    placement: ShardPlacement | None
    transfers: tuple[Transfer, ...]
    lost_shards: tuple[int, ...]
    ready: int
    total: int
    conditions: tuple[Condition, ...]
    events: tuple[Event, ...]
    moves: int = 0
    repairs: int = 0
    deferred_shards: int = 0
    degraded_shards: int = 0
    shard_ready: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64), compare=False, repr=False)
    bytes_ready: int = 0
    bytes_total: int = 0
    #: The shards whose pieces are on other nodes than in the DataSet's target decided on
    #: (``None``: a fresh placement, or no target before), sorted.
    changed_rows: npt.NDArray[np.int64] | None = field(default=None, compare=False, repr=False)

    def status(self, generation: int | None, *, placement_json: Any = None) -> dict[str, Any]:
        """The reconciler-owned part of ``status`` (conditions without times: see :func:`status_patch`).

        ``placement_json``: the JSON of :attr:`placement` when the caller has it already (the
        object's own ``status.placement`` when the target did not change), not rendered again.
        """
        out: dict[str, Any] = {
            "transfers": [t.to_json() for t in self.transfers],
            "pieces": {"ready": self.ready, "total": self.total},
            "bytes": {"ready": self.bytes_ready, "total": self.bytes_total},
            "progress": {
                "pieces": f"{self.ready}/{self.total}",
                "bytes": f"{human_bytes(self.bytes_ready)}/{human_bytes(self.bytes_total)}",
            },
            "lostShards": format_shards(list(self.lost_shards)),
            "conditions": [{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message} for c in self.conditions],
        }
        if self.placement is not None:
            out["placement"] = placement_json if placement_json is not None else placement_status(self.placement)
        if generation is not None:
            out["observedGeneration"] = generation
        return out


def piece_sizes(spec: DataSetSpec) -> npt.NDArray[np.int64]:
    """Bytes of one piece of each shard: the shard's size for a replica, ``ceil(size / k)`` for an
    erasure fragment (its data; the agent's file adds liberasurecode's 80-byte header and the
    codec's padding, which are not counted)."""
    red = spec.redundancy
    if isinstance(red, Erasure):
        return -(-spec.shard_sizes // red.k)
    return spec.shard_sizes


def ready_bytes(spec: DataSetSpec, ready: npt.NDArray[np.bool_], count: int) -> int:
    """Bytes of the ready pieces: ``ready`` is ``shards x width``, ``count`` its number of ``True``.
    One multiplication when every shard has the same size (the usual ``spec.shardSize``), else
    a sum per piece column (never a per-row reduction over millions of shards)."""
    sizes = spec.shard_sizes
    if not sizes.size or not count:
        return 0
    if (sizes == sizes[0]).all():
        return count * int(piece_sizes(spec)[0])
    per_piece = piece_sizes(spec)
    return sum(int(per_piece[ready[:, p]].sum()) for p in range(ready.shape[1]))


def human_bytes(n: int) -> str:
    """``n`` bytes for a person: ``512``, ``1.5Ki``, ``20.0Gi`` (binary units, one decimal)."""
    value, unit = float(n), ""
    for unit in ("", "Ki", "Mi", "Gi", "Ti", "Pi"):
        if value < 1024 or unit == "Pi":
            break
        value /= 1024
    return f"{n}" if not unit else f"{value:.1f}{unit}"


class Holders:
    """Which slots' holders have their piece ready (one DataSet, one cluster view).

    ``cache``: the reconciler's :class:`ReadyCache` (the matrix of the DataSet's last target,
    patched where the target changed instead of read again from every node's report)."""

    def __init__(self, dataset: DataSet, cluster: ClusterView, cache: ReadyCache | None = None) -> None:
        self.spec = dataset.spec
        self.cluster = cluster
        self.cache = cache
        self._cache: dict[str, Mapping[str, frozenset[int]]] = {}

    def _ready_map(self, node: str) -> Mapping[str, frozenset[int]]:
        if node not in self._cache:
            found = self.cluster.holdings.get(node)
            entry = found.of(self.spec.key, self.spec.uid) if found is not None else None
            self._cache[node] = entry.ready if entry is not None else {}
        return self._cache[node]

    def reported(self) -> bool:
        """Some live node's agent reports holding pieces of this DataSet."""
        return any(self.cluster.alive(n) and any(self._ready_map(n).values()) for n in self.cluster.holdings)

    def had(self, node: str, shard: int, piece: int) -> bool:
        """The node's last report lists the piece ready (alive or not)."""
        return bool(node) and shard in self._ready_map(node).get(piece_key(self.spec, piece), frozenset())

    def ready(self, node: str, shard: int, piece: int) -> bool:
        """The node is alive and reports the piece ready."""
        return bool(node) and self.cluster.alive(node) and self.had(node, shard, piece)

    def matrix(self, nodes: Sequence[str], index: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        """:meth:`ready` for every slot at once: ``index`` is ``shards x width`` into ``nodes`` (-1: none)."""
        shards, width = index.shape
        if not shards or not width or not self.cluster.holdings:
            return np.zeros(index.shape, dtype=bool)
        had = self.cache.had(self, nodes, index) if self.cache is not None else self.had_matrix(nodes, index)
        absent = self.cluster.absent(nodes)
        if not absent:
            return had
        dead = np.zeros(len(nodes) + 1, dtype=bool)
        dead[_where(nodes, absent)] = True
        out: npt.NDArray[np.bool_] = had & ~dead[index]
        return out

    def had_matrix(self, nodes: Sequence[str], index: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        """:meth:`had` for every slot (alive or not), from every holder's report: per piece key,
        the holders' reported shards gathered into one array (a dict lookup per node in Python,
        then numpy), and a reported ``(holder, shard)`` marks the slots of that shard whose
        holder it is (no sort, no search: 100,000 small arrays and a sorted search of 10^6
        codes took a second each per DataSet at 100,000 nodes)."""
        shards, width = index.shape
        out = np.zeros(index.shape, dtype=bool)
        keys = [piece_key(self.spec, p) for p in range(width)]
        holders: dict[str, list[int]] = {k: [] for k in set(keys)}
        sets: dict[str, list[frozenset[int]]] = {k: [] for k in set(keys)}
        reports, dataset, uid = self.cluster.holdings, self.spec.key, self.spec.uid
        for j in used_indexes(index, len(nodes)):
            name = nodes[j]
            if not name:
                continue
            if name in self._cache:
                ready = self._cache[name]
            else:  # Holders._ready_map, inlined: one call per node and DataSet
                report = reports.get(name)
                entry = report.datasets.get(dataset) if report is not None else None
                if entry is not None and uid and entry.uid and entry.uid != uid:
                    entry = None
                ready = self._cache[name] = entry.ready if entry is not None else {}
            for key, at in holders.items():
                held = ready.get(key)
                if held:
                    at.append(j)
                    sets[key].append(held)
        for key, found in sets.items():
            if not found:
                continue
            counts = np.fromiter(map(len, found), dtype=np.int64, count=len(found))
            got = np.fromiter(chain.from_iterable(found), dtype=np.int64, count=int(counts.sum()))
            js = np.repeat(np.array(holders[key], dtype=np.int64), counts)
            keep = (got >= 0) & (got < shards)
            got, js = got[keep], js[keep]
            for p in (p for p in range(width) if keys[p] == key):
                hit = index[got, p] == js
                out[got[hit], p] = True
        return out


class ReadyCache:
    """Per DataSet, which slots of its last matrix's target their holders reported ready (alive or
    not), kept between passes by the reconciler.

    Valid while the DataSet's reports did not change: its owner calls :meth:`touch` with the
    DataSets a NodeHoldings event changed and :meth:`clear` on a relist. A target that changed
    since (a join, a loss: a few moved slots) is patched slot by slot; an unchanged one costs
    one comparison of the index arrays. ``computed`` counts the matrices read from every report,
    ``patched`` the slots looked up one by one.
    """

    #: More changed slots than this: read every report again.
    PATCH_LIMIT = 50_000

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, Sequence[str], npt.NDArray[np.int32], npt.NDArray[np.bool_]]] = {}
        self.computed = 0
        self.patched = 0
        # Epochs: a matrix computed from a view of the reports taken before its DataSet's reports
        # last changed (an event that arrived while the pass ran) is not kept, or the touch that
        # came first would be lost and the stale matrix used until the next change.
        self._epoch = 0
        self._touched: dict[str, int] = {}
        # Per DataSet, the nodes whose report changed since its matrix (and when): their slots
        # are looked up again, the others kept (a node that leaves or joins: O(its slots)).
        self._pending: dict[str, dict[str, int]] = {}
        self._cleared = 0
        self.view_epoch = 0

    def epoch(self) -> int:
        """The current epoch: record it with a view of the reports (:attr:`view_epoch`)."""
        return self._epoch

    def touch(self, keys: Iterable[str], node: str | None = None) -> None:
        """The reports of these DataSets changed (``node``'s report only, when given: its slots
        are looked up again at the next use, the rest of the matrix is kept)."""
        self._epoch += 1
        for key in keys:
            if node is not None and key in self._last:
                self._pending.setdefault(key, {})[node] = self._epoch
                continue
            self._last.pop(key, None)
            self._pending.pop(key, None)
            self._touched[key] = self._epoch

    def clear(self) -> None:
        self._epoch += 1
        self._cleared = self._epoch
        self._last.clear()
        self._pending.clear()

    def forget(self, keep: Collection[str]) -> None:
        for key in [k for k in self._last if k not in keep]:
            del self._last[key]
        for key in [k for k in self._pending if k not in keep]:
            del self._pending[key]
        for key in [k for k in self._touched if k not in keep]:
            del self._touched[key]

    def _current(self, key: str) -> bool:
        """The view the pass reads is not older than the DataSet's last report change."""
        return self._touched.get(key, 0) <= self.view_epoch and self._cleared <= self.view_epoch

    def had(self, holders: Holders, nodes: Sequence[str], index: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        """:meth:`Holders.had_matrix`, from the last one when the reports did not change."""
        key, uid = holders.spec.key, holders.spec.uid
        found = self._last.get(key)
        out: npt.NDArray[np.bool_] | None = None
        if found is not None and found[0] == uid and found[2].shape == index.shape:
            _, was_nodes, was_index, was_had = found
            same = nodes is was_nodes or tuple(nodes) == tuple(was_nodes)
            mapped = index if same else _relabel(was_nodes, nodes, holders.cluster.built_table())[index]
            stale = mapped != was_index
            pending = self._pending.get(key)
            if pending:
                at = _where(nodes, pending)
                if at:
                    stale |= np.isin(index, np.array(at, dtype=index.dtype))
            rows, cols = np.nonzero(stale)
            if len(rows) <= self.PATCH_LIMIT:
                out = was_had.copy() if len(rows) else was_had
                for s, p in zip(rows.tolist(), cols.tolist(), strict=True):
                    j = int(index[s, p])
                    out[s, p] = j >= 0 and holders.had(nodes[j], s, p)
                self.patched += len(rows)
        if out is None:
            out = holders.had_matrix(nodes, index)
            self.computed += 1
        if self._current(key):
            self._last[key] = (uid, nodes, index, out)
            # Node reports changed after the view this matrix read stay pending (read again next time).
            later = {n: e for n, e in (self._pending.get(key) or {}).items() if e > self.view_epoch}
            if later:
                self._pending[key] = later
            else:
                self._pending.pop(key, None)
        return out


def names_of(placement: ShardPlacement | None, shards: int, width: int) -> npt.NDArray[np.object_]:
    """The placement as a ``shards x width`` array of node names ("" for no node)."""
    out = np.full((shards, width), "", dtype=object)
    if placement is None:
        return out
    ss, ww = min(shards, placement.shards), min(width, placement.width)
    lut = np.array([*placement.nodes, ""], dtype=object)
    out[:ss, :ww] = lut[placement.pieces[:ss, :ww]]
    return out


def index_of(placement: ShardPlacement | None, shards: int, width: int) -> npt.NDArray[np.int32]:
    """The placement as a ``shards x width`` array of indexes into ``placement.nodes`` (-1: none),
    the integer form of :func:`names_of`."""
    out = np.full((shards, width), -1, dtype=np.int32)
    if placement is not None:
        ss, ww = min(shards, placement.shards), min(width, placement.width)
        out[:ss, :ww] = placement.pieces[:ss, :ww]
    return out


def used_indexes(index: npt.NDArray[np.int32], size: int) -> list[int]:
    """The distinct indexes ``>= 0`` in ``index`` (all ``< size``), ascending: ``np.unique`` by counting."""
    found = index[index >= 0]
    return np.flatnonzero(np.bincount(found, minlength=size)).tolist() if found.size else []


def from_names(names: npt.NDArray[np.object_]) -> ShardPlacement:
    """A ``shards x width`` array of node names as a :class:`ShardPlacement` (nodes sorted)."""
    if not names.size:
        return ShardPlacement((), np.zeros(names.shape, dtype=np.int32))
    uniq, inverse = np.unique(names.astype(str), return_inverse=True)
    used = [str(u) for u in uniq.tolist()]
    pieces = inverse.reshape(names.shape).astype(np.int32)
    if used[0] == "":
        used, pieces = used[1:], pieces - 1
    return ShardPlacement(tuple(used), pieces)


def placement_status(placement: ShardPlacement) -> dict[str, Any]:
    """:meth:`ShardPlacement.to_status`, without a Python loop per piece when no piece is missing."""
    if (placement.pieces >= 0).all():
        return {"nodes": list(placement.nodes), "shards": placement.pieces.astype(np.int64).tolist()}
    return placement.to_status()


def placement_json_bytes(placement: ShardPlacement) -> int:
    """Bytes of ``status.placement`` as compact JSON (how the API server stores a custom
    resource: etcd holds its JSON), counted without rendering it: the node names (DNS names,
    ASCII, nothing to escape), then per shard its brackets, commas and each present index's
    digits. Equal to ``len(orjson.dumps(placement_status(placement)))``
    (``tests/dataplane/reconciler/test_object_size.py``)."""
    nodes, pieces = placement.nodes, placement.pieces
    names = 2 + sum(map(len, nodes)) + 3 * len(nodes) - (1 if nodes else 0)
    shards, width = pieces.shape
    flat = pieces.ravel()
    present = flat[flat >= 0] if (flat < 0).any() else flat
    counts = np.bincount(present, minlength=len(nodes)).astype(np.int64)
    digits = 1 + np.searchsorted(10 ** np.arange(1, 19, dtype=np.int64), np.arange(len(counts), dtype=np.int64), side="right")
    entries = len(present)
    rows = 2 + max(shards - 1, 0) + 2 * shards  # the list's brackets, commas between rows, each row's brackets
    commas = entries - int(np.count_nonzero(_row_any(pieces >= 0))) if len(present) != shards * width else entries - shards
    return int(len('{"nodes":,"shards":}') + names + rows + commas + int((counts * digits).sum()))


def previous_condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for cond in status.get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return {}


def previous_lost(status: Mapping[str, Any]) -> set[int]:
    text = status.get("lostShards")
    if not isinstance(text, str) or not text:
        return set()
    try:
        return set(parse_shards(text))
    except KblError:
        return set()


def _was_full(status: Mapping[str, Any]) -> bool:
    """The DataSet had every piece ready once (its last status said so, or it was degraded since)."""
    pieces = status.get("pieces")
    if isinstance(pieces, Mapping) and pieces.get("total") and pieces.get("ready") == pieces.get("total"):
        return True
    return previous_condition(status, "Degraded").get("status") == "True"


def distance(a: Node | None, b: Node | None) -> Level:
    """The smallest failure domain two nodes share (:func:`topology.clusters.shared_level`);
    ``REMOTE`` when either is unknown."""
    return Level.REMOTE if a is None or b is None else shared_level(a, b)


def copy_source(dataset: DataSet, cluster: ClusterView, holders: Holders, shard: int, *, to: str) -> str:
    """Where a repair of a piece of ``shard`` on ``to`` copies from: the nearest ready holder of the
    shard by topology distance (any piece for erasure: a rebuild reads ``k`` of them), else the
    DataSet's source, else ``"nothing"``."""
    width = dataset.spec.redundancy.width
    row: set[str] = set()
    if dataset.placement is not None and shard < dataset.placement.shards:
        row = {dataset.placement.nodes[i] for i in dataset.placement.pieces[shard, :width].tolist() if i >= 0}
    best: tuple[Level, str] | None = None
    for name in sorted(row | {t.source for t in dataset.transfers if t.shard == shard}):
        if name == to or not any(holders.ready(name, shard, p) for p in range(width)):
            continue
        found = (distance(cluster.nodes.get(name), cluster.nodes.get(to)), name)
        best = found if best is None or found < best else best
    if best is not None:
        return f"{best[1]} ({best[0].label})"
    source = dataset.spec.source
    if source is not None:
        return f"source {source.locate(dataset.spec.shard_name(shard))}"
    return "nothing (no ready holder, no source)"


@dataclass(frozen=True, slots=True)
class Replan:
    """What :func:`decide` takes from a (re)placement: the target, its rule violations and cap.

    ``kept`` is set when :func:`placement.stability.keeps` showed that ``place(previous=target)``
    would keep the target as it is, so ``place`` was not called; ``shifted`` when
    :func:`placement.shifts.shift` moved only the pieces the change forced (``place`` not called).
    """

    placement: ShardPlacement
    violations: int
    cap: int
    kept: bool = False
    shifted: bool = False
    #: The node table the target was planned on (every node of the target is in it), held weakly:
    #: a plan kept in the :class:`PlanMemo` does not keep its pass's table (and what it
    #: remembered of every DataSet's node list) alive once the view that made it is gone.
    table_ref: weakref.ref[NodeTable] | None = field(default=None, compare=False, repr=False)

    @property
    def table(self) -> NodeTable | None:
        return self.table_ref() if self.table_ref is not None else None

    @classmethod
    def of(cls, result: PlacementResult, table: NodeTable | None = None) -> Replan:
        return cls(result.placement, result.report.violations, result.report.cap, table_ref=_ref(table))


def _ref(table: NodeTable | None) -> weakref.ref[NodeTable] | None:
    return weakref.ref(table) if table is not None else None


class PlanMemo:
    """The last :class:`Replan` per DataSet with the inputs it came from, so a DataSet whose
    inputs did not change since its last decision is not planned again (the reconciler keeps one).

    The inputs are the spec, the target, the settings and, for every node, what
    :func:`_replan` reads of it (eligible, alive, draining, labels, allocatable): a
    :meth:`ClusterView.token` computed once per pass.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[tuple[Any, ...], Replan]] = {}
        self._digests: dict[tuple[str, str], tuple[npt.NDArray[Any], bytes]] = {}
        self._names: dict[str, tuple[Sequence[str], bytes]] = {}
        self._names_by_id: dict[int, tuple[Sequence[str], bytes]] = {}
        self.misses = 0  # lookups that found no plan for these inputs (a DataSet planned again)

    def digest(self, key: str, kind: str, array: npt.NDArray[Any]) -> bytes:
        """A digest of ``array``'s bytes (DataSet ``key``'s array ``kind``), remembered while it is
        the same array object (a typed DataSet's arrays are never written to, and the
        reconciler keeps the typed object while its raw object is unchanged): one per DataSet
        and kind, so no old array is kept alive."""
        found = self._digests.get((key, kind))
        if found is not None and found[0] is array:
            return found[1]
        value = hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).digest()
        self._digests[(key, kind)] = (array, value)
        return value

    def get(self, key: str, token: tuple[Any, ...]) -> Replan | None:
        found = self._last.get(key)
        if found is not None and found[0] == token:
            return found[1]
        self.misses += 1
        return None

    def last(self, key: str) -> Replan | None:
        """The last plan of ``key`` (whatever its inputs)."""
        found = self._last.get(key)
        return found[1] if found is not None else None

    def names_digest(self, key: str, names: Sequence[str]) -> bytes:
        """A digest of a node list (DataSet ``key``'s target), remembered while it is the same object."""
        found = self._names.get(key)
        if found is not None and found[0] is names:
            return found[1]
        shared = self._names_by_id.get(id(names))  # DataSets over one list object (the reconciler shares them)
        if shared is not None and shared[0] is names:
            value = shared[1]
        else:
            value = hashlib.blake2b(repr(names).encode(), digest_size=16).digest()
            if len(self._names_by_id) >= 64:
                self._names_by_id.pop(next(iter(self._names_by_id)))
            self._names_by_id[id(names)] = (names, value)
        self._names[key] = (names, value)
        return value

    def put(self, key: str, token: tuple[Any, ...], replan: Replan) -> None:
        self._last[key] = (token, replan)

    def forget(self, keep: Collection[str]) -> None:
        for key in [k for k in self._last if k not in keep]:
            del self._last[key]
        for found in [k for k in self._digests if k[0] not in keep]:
            del self._digests[found]
        for key in [k for k in self._names if k not in keep]:
            del self._names[key]


def cluster_token(cluster: ClusterView) -> int:
    """A digest of what :func:`_replan` reads of every node (state, labels, allocatable)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(cluster.nodes):
        node = cluster.nodes[name]
        digest.update(repr((name, cluster.eligible(node), cluster.alive(name), cluster.draining(name),
                            node.region, node.zone, node.rack, sorted(node.labels.items()), node.allocatable)).encode())
    return int.from_bytes(digest.digest(), "big")


def _dataset_token(dataset: DataSet, cluster: Hashable, settings: ReconcilerSettings, memo: PlanMemo | None = None) -> tuple[Any, ...]:
    spec = dataset.spec
    digest = hashlib.blake2b(digest_size=16)
    digest.update(memo.digest(spec.key, "sizes", spec.shard_sizes) if memo is not None else spec.shard_sizes.tobytes())
    if dataset.placement is not None:
        digest.update(memo.names_digest(spec.key, dataset.placement.nodes) if memo is not None else repr(dataset.placement.nodes).encode())
        digest.update(repr(dataset.placement.pieces.shape).encode())
        pieces = dataset.placement.pieces
        digest.update(memo.digest(spec.key, "pieces", pieces) if memo is not None else np.ascontiguousarray(pieces).tobytes())
    return (cluster, digest.digest(), dataset.placement is None, repr(spec.redundancy), spec.shards, spec.failure_domain,
            sorted(dict(spec.node_selector).items()), spec.key, settings.weight, settings.seed, settings.placement)


def _replan(dataset: DataSet, cluster: ClusterView, settings: ReconcilerSettings) -> Replan:
    """The new target: fresh, or from the previous one with cordoned/NotReady holders kept.

    A previous target that :func:`placement.stability.keeps` shows ``place`` would keep is
    returned as it is, without calling ``place`` (the steady state costs O(pieces) numpy).
    """
    spec = dataset.spec
    eligible = cluster.eligible_nodes
    kw: dict[str, Any] = {"weight": settings.weight, "seed": settings.seed, "settings": settings.placement}
    if dataset.placement is None:
        return Replan.of(place(eligible, spec, **kw))
    holding = set(dataset.placement.nodes)
    keep = [n for n in cluster.kept_candidates if n.name in holding]
    table = cluster.table_with(keep)
    if settings.incremental:
        found = shift(table, spec, dataset.placement, weight=settings.weight, seed=settings.seed, settings=settings.placement,
                      closed={n.name for n in keep})
        if found is dataset.placement:
            return Replan(dataset.placement, 0, 0, kept=True)
        if found is not None:
            return Replan(found, 0, 0, shifted=True, table_ref=_ref(table))
    elif keeps(table, spec, dataset.placement, weight=settings.weight, settings=settings.placement):
        return Replan(dataset.placement, 0, 0, kept=True)
    if keep:
        result = place([*eligible, *keep], spec, previous=dataset.placement, table=table, **kw)
        kept = {n.name for n in keep}
        if not any(m.to_node in kept for m in result.moves):
            return Replan.of(result, table)
    return Replan.of(place(eligible, spec, previous=dataset.placement, table=cluster.eligible_table, **kw), cluster.eligible_table)


def decide(
    dataset: DataSet,
    cluster: ClusterView,
    previous: Mapping[str, Any] | None = None,
    *,
    settings: ReconcilerSettings | None = None,
    in_flight: Mapping[str, int] | None = None,
    memo: PlanMemo | None = None,
    token: Hashable | None = None,
    ready_cache: ReadyCache | None = None,
) -> Decision:
    """The new status of one DataSet (module docstring).

    Parameters
    ----------
    dataset:
        The DataSet, with its current target and transfers.
    cluster:
        Nodes, lost nodes, holdings.
    previous:
        The DataSet's current raw ``status`` (conditions, ``lostShards``, ``pieces``).
    in_flight:
        Transfers each node serves (is the ``from`` of) in *other* DataSets (the per-node bound is
        over all of them).
    memo, token:
        The last plans and :func:`cluster_token` of ``cluster``: a DataSet whose spec, target and
        nodes did not change since its last decision reuses that plan.
    ready_cache:
        The reconciler's :class:`ReadyCache`: which slots were reported ready, from the last
        decision's when this DataSet's reports did not change.

    Never raises for a bad DataSet: a :class:`~topology.errors.PlacementError` becomes
    ``Placed=False`` reason ``PlacementFailed`` and a Warning Event. Every per-slot step is
    vectorised (numpy over ``shards x width``); Python loops run over changed shards only.
    """
    cfg = settings or ReconcilerSettings()
    status = previous or {}
    spec = dataset.spec
    red = spec.redundancy
    shards, width, needed = spec.shards, red.width, red.needed
    holders = Holders(dataset, cluster, ready_cache)
    events: list[Event] = []
    old_index = index_of(dataset.placement, shards, width)
    old_nodes = dataset.placement.nodes if dataset.placement is not None else ()
    inputs = _dataset_token(dataset, token, cfg, memo) if memo is not None and token is not None else None
    result: Replan | None = memo.get(spec.key, inputs) if memo is not None and inputs is not None else None
    problem = ""
    if result is None:
        try:
            result = _replan(dataset, cluster, cfg)
        except KblError as exc:
            result, problem = None, str(exc)
        if memo is not None and inputs is not None and result is not None:
            memo.put(spec.key, inputs, result)
    existing = {(t.shard, t.piece): t for t in dataset.transfers if t.shard < shards and t.piece < width}
    fresh = dataset.placement is None
    # The old and the new target as indexes into one list of names (the old nodes, then the new
    # nodes not among them): integer comparisons, no array of a million names.
    names: Sequence[str] = old_nodes
    old_i = new_i = old_index
    if result is not None and not result.kept:
        names, new_i = _merged(old_nodes, result.placement, shards, width, table=result.table)

    def nm(i: Any) -> str:
        return names[i] if i >= 0 else ""

    def with_transfers(ready: npt.NDArray[np.bool_], transfers: Mapping[tuple[int, int], Transfer]) -> npt.NDArray[np.int64]:
        """Ready pieces per shard: target holders + transfer sources (a slot counts once)."""
        counts = _row_counts(ready)
        for (s, p), t in transfers.items():
            if not ready[s, p] and holders.ready(t.source, s, p):
                counts[s] += 1
        return counts

    gone_flag = np.zeros(len(names) + 1, dtype=bool)  # per name (and a last False for -1): a lost holder of the old target
    maybe_gone = cluster.absent(old_nodes)
    if maybe_gone:
        used = np.bincount(old_i[old_i >= 0], minlength=len(old_nodes)) > 0
        for i in _where(old_nodes, maybe_gone):
            gone_flag[i] = bool(used[i])
    gone = {old_nodes[i] for i in np.flatnonzero(gone_flag[:-1]).tolist()}
    old_ready = holders.matrix(old_nodes, old_index)
    before = with_transfers(old_ready, existing)
    # Moves, shard by shard, most urgent first, within the per-node transfer bound.
    counts: dict[str, int] = dict(in_flight or {})  # transfers each node serves (``from``)
    transfers: dict[tuple[int, int], Transfer] = {}
    for t in existing.values():
        counts[t.source] = counts.get(t.source, 0) + 1
    moved_rows = np.flatnonzero(_row_any(old_i != new_i)) if not fresh and new_i is not old_i else np.zeros(0, dtype=np.int64)
    final = old_i if not fresh else new_i.copy()  # copied on the first applied row
    applied: list[int] = []

    sizes = spec.shard_sizes

    def urgency(s: int) -> tuple[int, float, int, int]:
        """Most at risk first: fewest ready pieces beyond the ``needed`` ones, then the earliest
        drain deadline, then the most bytes, then the shard index."""
        leaving = [cluster.deadline(nm(i)) for i in old_i[s].tolist() if i >= 0 and cluster.draining(nm(i))]
        return (int(before[s]) - needed, min(leaving, default=math.inf), -int(sizes[s]), s)

    deferred = 0
    bound = cfg.max_transfers_per_node
    # Repair first: while pieces are missing or in flight, moves that are only a rebalance (every
    # old holder alive, not draining, still a target or kept) wait, so copies go to repairs.
    movable = cluster.movable
    tracked = spec.source is not None or holders.reported()  # else another system writes the bytes
    busy = bool(gone) or bool(existing) or (tracked and bool(((old_index >= 0) & ~old_ready).any()))
    for s in sorted((int(s) for s in moved_rows), key=urgency):
        was_row, now_row = old_i[s].tolist(), new_i[s].tolist()
        optional = all(nm(was_row[p]) in movable for p in range(width) if was_row[p] != now_row[p] and was_row[p] >= 0)
        if busy and optional and not fresh:
            deferred += 1
            continue
        planned: list[Transfer] = []
        for p in range(width):
            was, now = nm(was_row[p]), nm(now_row[p])
            if was == now:
                continue
            prior = existing.get((s, p))
            if holders.ready(was, s, p):
                src = was
            elif prior is not None and holders.ready(prior.source, s, p):
                src = prior.source
            else:
                continue
            if src != now:
                planned.append(Transfer(s, p, src, now))
        urgent = any(nm(i) in gone for i in was_row if i >= 0)
        if bound and planned and not urgent:
            # The window is over the copies a node serves (``from``); what a node receives is not
            # bounded here: its agent copies ``parallel_copies`` pieces at a time, repairs first.
            need: dict[str, int] = {}
            for t in planned:
                need[t.source] = need.get(t.source, 0) + 1
            if any(counts.get(n, 0) > 0 and counts.get(n, 0) + k > bound for n, k in need.items()):
                deferred += 1
                continue
        if final is old_i:
            final = old_i.copy()
        final[s] = new_i[s]
        applied.append(s)
        for p in range(width):
            if was_row[p] != now_row[p]:
                existing.pop((s, p), None)
        for t in planned:
            transfers[(t.shard, t.piece)] = t
            counts[t.source] = counts.get(t.source, 0) + 1
    # Transfers carried over: dropped once the new holder has the piece ready or the source is gone.
    for (s, p), t in existing.items():
        if nm(final[s, p]) != t.to or t.source == t.to or not cluster.alive(t.source) or holders.ready(t.to, s, p):
            continue
        transfers[(s, p)] = t
    if fresh:
        target = result.placement if result is not None else None
        final_ready = holders.matrix(target.nodes if target is not None else (), index_of(target, shards, width))
        changed = np.zeros((shards, width), dtype=bool)
    else:
        final_ready = old_ready.copy()
        for s in applied:
            final_ready[s] = [holders.ready(nm(final[s, p]), s, p) for p in range(width)]
        changed = np.zeros((shards, width), dtype=bool)
        if applied:
            rows = np.array(applied, dtype=np.int64)
            changed[rows] = final[rows] != old_i[rows]
    moves = 0 if fresh else int(changed.sum())
    # The repaired slots (moved off a lost holder): among the applied rows only (a few of 10^6).
    repaired: list[tuple[int, int]] = []
    if not fresh and applied:
        rows = np.array(applied, dtype=np.int64)
        hit = changed[rows] & gone_flag[old_i[rows]]
        repaired = [(int(rows[i]), int(p)) for i, p in zip(*np.nonzero(hit), strict=True)]
    repairs = len(repaired)
    if result is None and dataset.placement is None:
        placement = None
    elif not fresh and not applied and dataset.placement is not None:
        placement = compact(dataset.placement, old_index)
    elif result is not None and len(applied) == len(moved_rows) and (fresh or not result.kept):
        placement = result.placement  # every move applied: the new target (place and shift return it canonical)
    else:
        placement = _from_index(names, final)
    after = with_transfers(final_ready, transfers)
    ready = int(final_ready.sum())
    total = shards * width
    bytes_ready = ready_bytes(spec, final_ready, ready)
    bytes_total = int(piece_sizes(spec).sum()) * width
    # Lost shards (no source only): a lost node left fewer than `needed` ready pieces.
    lost = {s for s in previous_lost(status) if s < shards and after[s] < needed}
    if spec.source is None and gone:
        full = _was_full(status)
        short = np.flatnonzero(after < needed)  # the shards below `needed`, then those a lost node held a piece of
        short = short[_row_any(gone_flag[old_index[short]])]
        for s in short.tolist():
            on_gone = np.flatnonzero(gone_flag[old_index[s]]).tolist()
            if full or any(holders.had(nm(old_i[s, p]), s, p) for p in on_gone):
                lost.add(s)
    new_lost = sorted(lost - previous_lost(status))
    # Events.
    key = spec.key
    if result is None:
        events.append(Event("Warning", "PlacementFailed", problem))
    elif fresh:
        events.append(Event("Normal", "Placed", f"{total} pieces of {shards} shards ({red}) on {len(placement.nodes) if placement else 0} "
                            f"nodes, at most {result.cap} per {spec.failure_domain}"))
    elif moves:
        why = _why({nm(i) for i in np.unique(old_i[changed]).tolist() if i >= 0}, cluster, gone)
        events.append(Event("Normal", "Rebalanced", f"{moves} piece moves because {why}"
                            + (f"; {deferred} shards wait for transfers to finish" if deferred else "")))
    if repairs and placement is not None:
        samples = []
        for s, p in sorted(repaired)[:5]:
            origin = copy_source(dataset, cluster, holders, int(s), to=nm(final[s, p]))
            samples.append(f"shard {s} piece {p} -> {nm(final[s, p])} from {origin}")
        silent = f" ({', '.join(sorted(gone & cluster.silent))}: agent silent, node still present)" if gone & cluster.silent else ""
        events.append(Event("Warning", "NodeLost", f"nodes {', '.join(sorted(gone))} lost{silent}: {repairs} pieces get new holders; "
                            + "; ".join(samples) + ("; ..." if repairs > len(samples) else "")))
    if new_lost:
        events.append(Event("Warning", "ShardsLost", f"shards {format_shards(new_lost)} have fewer than {needed} ready pieces left and "
                            "no spec.source: they cannot be rebuilt and are not re-created"))
    # Conditions.
    conditions = [_placed(result, problem, dataset.placement is not None, placement)]
    complete = ready == total and not transfers
    if spec.source is None:
        conditions.append(Condition("Ready", "Unknown", "NoSource", f"no spec.source: {ready}/{total} pieces reported ready by agents"))
    elif complete:
        conditions.append(Condition("Ready", "True", "AllPiecesReady", f"{total} pieces ready on their nodes"))
    else:
        reason = "Moving" if transfers else "Hydrating"
        conditions.append(Condition("Ready", "False", reason, f"{ready}/{total} pieces ready, {len(transfers)} transfers in flight"))
    below = int((after < width).sum())
    if lost:
        why = f"shards {format_shards(sorted(lost))} lost: no spec.source to rebuild them from"
        conditions.append(Condition("Degraded", "True", "ShardsLost", why))
    elif below and (_was_full(status) or repairs):
        conditions.append(Condition("Degraded", "True", "Repairing", f"{below} shards below {width} ready pieces"))
    else:
        conditions.append(Condition("Degraded", "False", "FullRedundancy" if below == 0 else "NotYetReady",
                                    "every shard has all its pieces ready" if below == 0 else "pieces are still hydrating"))
    if conditions[1].status == "True" and previous_condition(status, "Ready").get("status") != "True":
        events.append(Event("Normal", "Ready", f"all {total} pieces ready"))
    return Decision(
        key=key,
        placement=placement,
        transfers=tuple(transfers[k] for k in sorted(transfers)),
        lost_shards=tuple(sorted(lost)),
        ready=ready,
        total=total,
        conditions=tuple(conditions),
        events=tuple(events),
        moves=moves,
        repairs=repairs,
        deferred_shards=deferred,
        degraded_shards=below if (lost or _was_full(status) or repairs) else 0,
        shard_ready=after,
        bytes_ready=bytes_ready,
        bytes_total=bytes_total,
        changed_rows=None if fresh or dataset.placement is None else np.array(sorted(applied), dtype=np.int64),
    )


def _row_any(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``mask.any(axis=1)`` for a ``shards x width`` mask, column by column: numpy's reduction
    over a short last axis costs about 10x as much (19 ms against 2 ms for 10^6 x 3)."""
    out = np.zeros(mask.shape[0], dtype=bool)
    for q in range(mask.shape[1]):
        out |= mask[:, q]
    return out


def _row_counts(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """``mask.sum(axis=1)`` as int64, column by column (23 ms against 4 ms for 10^6 x 3)."""
    out = np.zeros(mask.shape[0], dtype=np.int64)
    for q in range(mask.shape[1]):
        out += mask[:, q]
    return out


def compact(placement: ShardPlacement, index: npt.NDArray[np.int32]) -> ShardPlacement:
    """``from_names(names_of(placement, ...))`` from the integer form ``index`` (:func:`index_of`):
    the nodes used, sorted, with the pieces renumbered."""
    used = used_indexes(index, len(placement.nodes))
    nodes = placement.nodes
    if len(used) == len(nodes) and all(nodes) and all(map(operator.lt, nodes, nodes[1:])):
        return ShardPlacement(nodes, index)  # already canonical: every node used, sorted, distinct
    names = sorted({placement.nodes[i] for i in used if placement.nodes[i]})
    position = {n: i for i, n in enumerate(names)}
    lut = np.full(len(placement.nodes) + 1, -1, dtype=np.int32)
    for i in used:
        if placement.nodes[i]:
            lut[i] = position[placement.nodes[i]]
    return ShardPlacement(tuple(names), lut[index])


def _merged(
    old_nodes: Sequence[str], placement: ShardPlacement, shards: int, width: int, *, table: NodeTable | None = None
) -> tuple[Sequence[str], npt.NDArray[np.int32]]:
    """``old_nodes`` followed by the nodes of ``placement`` not among them, and ``placement``'s
    pieces as indexes into that list (``shards x width``, -1: none). With the ``table`` the plan
    was made on (it names every node of ``placement``), both lists are matched through its
    positions (free for its own names and those of the table it was derived from); else sorted
    lists are matched with numpy's ``searchsorted`` on string arrays (no Python per node)."""
    index = index_of(placement, shards, width)
    if placement.nodes is old_nodes or tuple(placement.nodes) == tuple(old_nodes):
        return old_nodes, index
    new = placement.nodes
    through = _through(table, old_nodes, new)
    if through is not None:
        pos, found = through, through >= 0
    else:
        pos, found = _matched(old_nodes, new)
    extras = np.flatnonzero(~found)
    names = [*old_nodes, *(new[j] for j in extras.tolist())]
    lut = np.full(len(new) + 1, -1, dtype=np.int32)
    lut[:-1][found] = pos[found]
    lut[extras] = len(old_nodes) + np.arange(len(extras), dtype=np.int32)
    return names, lut[index]


def _matched(old_nodes: Sequence[str], new: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Per name of ``new``: its position in ``old_nodes`` and whether it is there (by
    ``searchsorted`` on string arrays when ``old_nodes`` is sorted, else by a dict)."""
    old_arr = _name_array(old_nodes)
    new_arr = _name_array(new)
    if len(old_arr) and len(new_arr) and bool((old_arr[:-1] < old_arr[1:]).all()):
        pos = np.minimum(np.searchsorted(old_arr, new_arr), len(old_arr) - 1)
        return pos.astype(np.int64), old_arr[pos] == new_arr
    position = {n: i for i, n in enumerate(old_nodes)}
    pos = np.array([position.get(n, -1) for n in new], dtype=np.int64)
    return pos, pos >= 0


_NAME_ARRAYS: dict[int, tuple[Sequence[str], npt.NDArray[np.str_]]] = {}


def _name_array(nodes: Sequence[str]) -> npt.NDArray[np.str_]:
    """``nodes`` as a numpy string array, remembered for the last few node lists (a DataSet's
    target node list is the same object from pass to pass while its status does not change; the
    sixteen most recent are kept)."""
    found = _NAME_ARRAYS.get(id(nodes))
    if found is not None and found[0] is nodes:
        return found[1]
    out = np.asarray(list(nodes), dtype=str)
    if len(_NAME_ARRAYS) >= 16:  # about 6 MiB each at 100,000 names
        _NAME_ARRAYS.pop(next(iter(_NAME_ARRAYS)))
    _NAME_ARRAYS[id(nodes)] = (nodes, out)
    return out


def _through(table: NodeTable | None, was: Sequence[str], now: Sequence[str]) -> npt.NDArray[np.int64] | None:
    """Per name of ``now``: its position in ``was`` (``-1``: not there), through ``table``'s
    positions (free for the table's own names and those of the table it was derived from);
    ``None`` when some name of ``now`` is not in ``table`` (match the names themselves)."""
    if table is None:
        return None
    at_now = table.known(now)
    outside = np.flatnonzero(at_now < 0)
    if len(outside) > 16:
        return None
    at_was = table.known(was)
    inverse = np.full(len(table.names) + 1, -1, dtype=np.int64)
    listed = np.flatnonzero(at_was >= 0)
    inverse[at_was[listed]] = listed
    out: npt.NDArray[np.int64] = inverse[at_now]
    for j in outside.tolist():  # a few names not in the table (a lost or cordoned holder): looked up in ``was``
        try:
            out[j] = was.index(now[j])
        except ValueError:
            out[j] = -1
    return out


def _relabel(was: Sequence[str], now: Sequence[str], table: NodeTable | None = None) -> npt.NDArray[np.int32]:
    """Per name of ``now`` (and a last ``-1``): its position in ``was``, ``-2`` when absent.
    Through ``table``'s positions when it names every node of ``now`` (:func:`_through`), else by
    ``searchsorted`` on the (remembered) name arrays when ``was`` is sorted, else by a dict."""
    through = _through(table, was, now)
    if through is not None:
        return np.append(np.where(through >= 0, through, -2), -1).astype(np.int32)
    was_arr = _name_array(was)
    if len(was_arr) and len(now) and bool((was_arr[:-1] < was_arr[1:]).all()):
        now_arr = _name_array(now)
        pos = np.minimum(np.searchsorted(was_arr, now_arr), len(was_arr) - 1)
        found = np.where(was_arr[pos] == now_arr, pos, -2)
        return np.append(found, -1).astype(np.int32)
    position = {n: i for i, n in enumerate(was)}
    return np.array([*(position.get(n, -2) for n in now), -1], dtype=np.int32)


def _where(nodes: Sequence[str], wanted: Collection[str]) -> list[int]:
    """Where each of ``wanted`` (a few names) is in ``nodes``: by bisection when found there
    (``nodes`` sorted), else one scan of ``nodes`` for all of them (not one per name)."""
    out: list[int] = []
    for name in wanted:
        at = bisect.bisect_left(nodes, name)
        if at < len(nodes) and nodes[at] == name:
            out.append(at)
        else:
            return [j for j, n in enumerate(nodes) if n in wanted]
    return out


def _from_index(names: Sequence[str], index: npt.NDArray[np.int32]) -> ShardPlacement:
    """``index`` (into ``names``, -1: none) as a canonical :class:`ShardPlacement`: the nodes
    used, sorted, the pieces renumbered (what :func:`from_names` makes of the names)."""
    used = used_indexes(index, len(names))
    chosen = sorted((names[i], i) for i in used if names[i])
    lut = np.full(len(names) + 1, -1, dtype=np.int32)
    for k, (_, i) in enumerate(chosen):
        lut[i] = k
    return ShardPlacement(tuple(n for n, _ in chosen), lut[index])


def _placed(result: Replan | None, problem: str, had: bool, placement: ShardPlacement | None) -> Condition:
    if result is None:
        return Condition("Placed", "False", "PlacementFailed", problem + ("; the previous placement is kept" if had else ""))
    nodes = len(placement.nodes) if placement is not None else 0
    return Condition("Placed", "True", "Placed", f"every piece has a node ({nodes} nodes, {result.violations} rule violations)")


def _why(from_nodes: set[str], cluster: ClusterView, gone: set[str]) -> str:
    reasons: list[str] = []
    if from_nodes & gone - cluster.silent:
        reasons.append(f"nodes lost ({', '.join(sorted(from_nodes & gone - cluster.silent))})")
    if from_nodes & cluster.silent:
        reasons.append(f"agents silent past their TTL ({', '.join(sorted(from_nodes & cluster.silent))})")
    draining = sorted(n for n in from_nodes if cluster.draining(n))
    if draining:
        reasons.append(f"nodes draining ({', '.join(draining)})")
    if not reasons:
        reasons.append("the eligible nodes changed (joins, weights, selector or rule)")
    return " and ".join(reasons)


def conditions_with_times(new: Sequence[Mapping[str, Any]], old: Sequence[Any], now_text: str) -> list[dict[str, Any]]:
    """``new`` conditions with ``lastTransitionTime`` carried over unless the status changed."""
    before = {c.get("type"): c for c in old if isinstance(c, Mapping)}
    out = []
    for cond in new:
        prior = before.get(cond["type"])
        when = prior.get("lastTransitionTime") if prior and prior.get("status") == cond["status"] else None
        out.append({**cond, "lastTransitionTime": when or now_text})
    return out


def node_annotations(datasets: Sequence[DataSet], cluster: ClusterView, now_text: str) -> dict[str, dict[str, str | None]]:
    """The drain annotations each node should carry, as merge patches of only what differs.

    On a draining node: ``kbl.io/last-pieces`` (pieces it holds ready that no other live node
    holds ready) always, and ``kbl.io/data-drained`` (kept if already set) once no target slot
    and no transfer of any DataSet names it. A node no longer draining loses both.
    """
    referenced: set[str] = set()
    draining = cluster.draining_names
    for ds in datasets if draining else ():  # only draining nodes' references matter
        if ds.placement is not None:
            referenced.update(ds.placement.nodes[i] for i in used_indexes(ds.placement.pieces, len(ds.placement.nodes)))
        for t in ds.transfers:
            referenced.update((t.source, t.to))
    only: dict[str, int] = dict.fromkeys(draining, 0)
    for ds in datasets if draining else ():
        entries = {n: h.of(ds.key, ds.spec.uid) for n, h in cluster.holdings.items() if cluster.alive(n)}
        for name in draining:
            mine = entries.get(name)
            if mine is None:
                continue
            for key, shards in mine.ready.items():
                others: set[int] = set()
                for other, entry in entries.items():
                    if other != name and entry is not None:
                        others |= entry.ready.get(key, frozenset())
                only[name] += len(shards - others)
    out: dict[str, dict[str, str | None]] = {}
    for name in sorted(cluster.annotated_names | only.keys()):  # any other node wants nothing and has nothing
        node = cluster.nodes[name]
        have = {k: node.annotations.get(k) for k in (labels.DATA_DRAINED, labels.LAST_PIECES)}
        want: dict[str, str | None]
        if name in only:
            drained = None if name in referenced else (have[labels.DATA_DRAINED] or now_text)
            want = {labels.DATA_DRAINED: drained, labels.LAST_PIECES: str(only[name])}
        else:
            want = {labels.DATA_DRAINED: None, labels.LAST_PIECES: None}
        patch = {k: v for k, v in want.items() if have[k] != v}
        if patch:
            out[name] = patch
    return out


__all__ = [
    "CONDITION_TYPES",
    "ClusterView",
    "Condition",
    "Decision",
    "Event",
    "Holders",
    "PlanMemo",
    "ReadyCache",
    "Replan",
    "cluster_token",
    "compact",
    "conditions_with_times",
    "copy_source",
    "decide",
    "distance",
    "from_names",
    "human_bytes",
    "index_of",
    "names_of",
    "node_annotations",
    "piece_sizes",
    "placement_status",
    "ready_bytes",
]
