"""Layouts: the eligible nodes of one DataSet, their weights, failure domains and load targets.

A :class:`Layout` is what every planner works on: the nodes matching ``spec.nodeSelector`` with
a positive capacity weight, sorted by name (so input order never matters), each with its
failure-domain id at ``spec.failureDomain`` and at the host/rack/zone levels, the per-domain
piece cap of the redundancy rule, and each node's *target* load in bytes.

The failure-domain rule (issue 3): with ``D`` failure domains and ``w`` pieces per shard
(``r`` replicas or ``k + m`` stripe pieces) a shard puts at most ``cap`` pieces in one domain::

    cap = 1                 if D >= w
    cap = ceil(w / D)       otherwise, and then it must hold that cap <= t

where ``t`` is what the scheme tolerates (``r - 1`` replicas, ``m`` parity pieces), so losing
one whole domain never loses a shard. For replicas ``ceil(r / D) <= r - 1`` just means ``D >= 2``;
for ``k + m`` erasure it means ``D >= ceil((k + m) / m)``. A scheme that tolerates nothing
(``r = 1``, ``m = 0``) only gets the spreading rule. Pieces of one shard are always on distinct
nodes. When the rule cannot be met, :func:`build_layout` raises
:class:`~topology.errors.PlacementError` saying how many domains are needed.

Above the failure domain pieces are also *spread* (RAID-like: a rack rule still survives a zone
failure when the zones allow it): at each coarser level ``L`` (rack, zone) with ``D_L`` domains a
shard puts at most ``ceil(w / D_L)`` pieces in one domain. Spreading is a preference for where
pieces go (new pieces and balancing moves keep it; existing pieces never move only for it), and a
level is spread only when the node counts allow it and it moves no node's target by more than
``spread_cost_limit`` (default 25%) of its plain weight share: otherwise it would overload the
nodes of a small zone. :attr:`Layout.spread` says which levels are spread.

Targets are proportional to the weight (allocatable ``ephemeral-storage`` by default), water-filled
under what the rule lets a node or domain hold: a node holds at most one piece per shard, a domain
at most ``min(cap, nodes in it)`` pieces per shard; capacity a capped domain cannot use goes to
the others in proportion to their weights.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from placement import hashing
from topology import labels
from topology.datasets import DataSetSpec
from topology.errors import PlacementError
from topology.nodes import Node

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: The levels reported by balance, spread and durability figures.
LEVELS = ("host", "rack", "zone")
#: Failure-domain keys that name a level of the hierarchy (others are opaque labels).
LEVEL_OF_KEY = {
    labels.HOSTNAME: "host",
    "host": "host",
    labels.DEFAULT_RACK: "rack",
    "rack": "rack",
    labels.ZONE: "zone",
    labels.LEGACY_ZONE: "zone",
    "zone": "zone",
}


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """At most ``cap`` pieces of one shard per domain (``ids`` per node) at ``level``."""

    level: str
    ids: I64
    cap: int


@dataclass(frozen=True, slots=True, eq=False)
class Layout:
    """The eligible nodes of one DataSet and everything the planners derive from them.

    Attributes
    ----------
    names:
        Eligible node names, sorted.
    weights:
        Capacity weight per node (the chosen resource, base units).
    domains:
        Failure-domain id (at ``spec.failure_domain``) per node.
    domain_names:
        Failure-domain name per id.
    levels:
        Domain ids per node at ``host``, ``rack`` and ``zone``.
    cap:
        Most pieces of one shard in one failure domain.
    piece_bytes:
        Bytes of one piece, per shard (``shard size * piece fraction``).
    targets:
        Target load in bytes per node (water-filled weight share).
    node_hash:
        Rendezvous hash per node (:func:`placement.hashing.node_hashes`).
    spread:
        Rules above the failure domain that new pieces keep (see the module docstring).
    eligible:
        ``False`` for nodes kept only because they hold pieces (``keep`` in :func:`build_layout`):
        they count for the rule but never receive a piece (target 0).
    problem:
        Empty when the rule can be honoured; otherwise why not (and :func:`build_layout` raised
        unless ``strict=False``).
    """

    spec: DataSetSpec
    names: tuple[str, ...]
    index: dict[str, int]
    weights: F64
    domains: I64
    domain_names: tuple[str, ...]
    levels: dict[str, I64]
    cap: int
    piece_bytes: F64
    targets: F64
    node_hash: hashing.U64
    spread: tuple[Rule, ...]
    eligible: npt.NDArray[np.bool_]
    problem: str

    @property
    def width(self) -> int:
        return self.spec.redundancy.width

    @property
    def needed(self) -> int:
        return self.spec.redundancy.needed

    @property
    def size(self) -> int:
        return len(self.names)


def matches(node: Node, selector: dict[str, str] | None) -> bool:
    """True if the node carries every label of ``selector``."""
    return all(node.labels.get(k) == v for k, v in (selector or {}).items())


def domain_ids(values: Sequence[str]) -> tuple[I64, tuple[str, ...]]:
    """Dense ids for domain names (ids follow sorted name order, so they are deterministic)."""
    uniq = tuple(sorted(set(values)))
    lookup = {v: i for i, v in enumerate(uniq)}
    return np.array([lookup[v] for v in values], dtype=np.int64), uniq


def level_domain(node: Node, level: str) -> str:
    """A node's domain at ``host``, ``rack`` or ``zone``."""
    return node.domain(level)


def waterfill(weights: F64, caps: F64, total: float) -> F64:
    """Split ``total`` in proportion to ``weights`` with no share above its cap.

    Shares that hit their cap are fixed there and the rest is split again among the others
    (progressive filling). If the caps sum to less than ``total`` every share is at its cap.
    """
    return _segment_waterfill(np.zeros(len(weights), dtype=np.int64), weights, caps, np.array([float(total)]))


def hierarchical_slots(chain: Sequence[tuple[I64, int]], members: I64) -> int:
    """Most pieces of one shard ``members`` can hold under the caps of ``chain`` (coarsest first):
    in each domain of the first level, at most its cap and at most what its children can hold."""
    if not chain:
        return len(members)
    return chain_slots([(ids[members], cap) for ids, cap in chain])


def _paths(chain: Sequence[tuple[I64, int]]) -> list[I64]:
    """Dense group codes per node for each prefix of ``chain`` (a group is a path of domains)."""
    out: list[I64] = []
    code: I64 | None = None
    for ids, _ in chain:
        pair = ids if code is None else code * (int(ids.max(initial=0)) + 1) + ids
        code = np.unique(pair, return_inverse=True)[1].astype(np.int64).ravel()
        out.append(code)
    return out


def _values(chain: Sequence[tuple[I64, int]], paths: list[I64]) -> list[I64]:
    """Per level, per group: the most pieces of one shard the group can hold (:func:`hierarchical_slots`)."""
    values: list[I64] = [np.zeros(0, dtype=np.int64)] * len(chain)
    below: I64 | None = None
    for level in range(len(chain) - 1, -1, -1):
        code, cap = paths[level], chain[level][1]
        groups = int(code.max(initial=-1)) + 1
        if below is None:
            inner = np.bincount(code, minlength=groups).astype(np.int64)
        else:
            child = paths[level + 1]
            first = np.unique(child, return_index=True)[1]  # one node per child group: its parent
            inner = np.bincount(code[first], weights=below.astype(np.float64), minlength=groups).astype(np.int64)
        values[level] = np.minimum(inner, cap)
        below = values[level]
    return values


def chain_slots(chain: Sequence[tuple[I64, int]]) -> int:
    """:func:`hierarchical_slots` over every node."""
    if not chain:
        return 0
    return int(_values(chain, _paths(chain))[0].sum())


def _segment_waterfill(seg: I64, weights: F64, caps: F64, amount: F64) -> F64:
    """:func:`waterfill` in every segment at once (``amount`` per segment; ``seg`` gives each
    weight's segment)."""
    n_seg = len(amount)
    alloc = np.zeros(len(weights), dtype=np.float64)
    free = weights > 0
    remaining = amount.astype(np.float64).copy()
    done = np.zeros(n_seg, dtype=bool)
    while True:
        has_free = np.bincount(seg, weights=free.astype(np.float64), minlength=n_seg) > 0
        active = ~done & (remaining > 1e-9) & has_free
        if not active.any():
            return alloc
        wsum = np.bincount(seg, weights=np.where(free, weights, 0.0), minlength=n_seg)
        live = free & active[seg]
        share = np.where(live, remaining[seg] * weights / np.where(wsum[seg] > 0, wsum[seg], 1.0), 0.0)
        over = live & (alloc + share > caps)
        seg_over = np.bincount(seg, weights=over.astype(np.float64), minlength=n_seg) > 0
        settle = live & ~seg_over[seg]
        alloc[settle] += share[settle]
        done |= active & ~seg_over
        remaining -= np.bincount(seg, weights=np.where(over, caps - alloc, 0.0), minlength=n_seg)
        alloc[over] = caps[over]
        free &= ~over


def hierarchical_targets(weights: F64, chain: Sequence[tuple[I64, int]], per_node_max: float, total: float) -> F64:
    """Water-fill ``total`` bytes down the levels of ``chain`` (coarsest first), then over nodes.

    A domain can hold at most ``min(cap, slots of its children) * per_node_max`` bytes; a node at
    most ``per_node_max`` (one piece per shard). Each level's domains are filled at once, every
    parent's children in one segmented :func:`waterfill` (a Python call per domain cost 20 s at
    100,000 nodes); ``tests/placement/test_layouts.py`` compares it with the recursive definition.
    """
    n = len(weights)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    paths = _paths(chain)
    values = _values(chain, paths)
    parent: I64 = np.zeros(n, dtype=np.int64)  # the root: one segment
    amount: F64 = np.array([float(total)], dtype=np.float64)
    for level in range(len(chain)):
        code = paths[level]
        groups = int(code.max(initial=-1)) + 1
        first = np.unique(code, return_index=True)[1]
        gw = np.bincount(code, weights=weights, minlength=groups).astype(np.float64)
        amount = _segment_waterfill(parent[first], gw, values[level].astype(np.float64) * per_node_max, amount)
        parent = code
    return _segment_waterfill(parent, weights, np.full(n, per_node_max), amount)


def rule_cap(width: int, tolerates: int, domains: int) -> tuple[int, str]:
    """The per-domain piece cap for ``width`` pieces over ``domains`` domains, and a problem if any.

    When the rule cannot be honoured the cap returned is ``tolerates`` (what a repair on too few
    domains may still use without one domain failure losing the shard).
    """
    if domains <= 0:
        return 0, "no eligible nodes"
    if domains >= width:
        return 1, ""
    cap = math.ceil(width / domains)
    if tolerates >= 1 and cap > tolerates:
        need = math.ceil(width / tolerates)
        return tolerates, (
            f"{width} pieces over {domains} failure domains puts {cap} pieces in one domain, more than the {tolerates} "
            f"the redundancy can lose: one domain failure would lose shards; at least {need} domains are needed"
        )
    return cap, ""


class NodeArrays:
    """What every layout over the same nodes reads of them, computed once per node list: the
    nodes sorted by name and, on first use, their allocatable weights, selector matches, domain
    ids (numbered in sorted name order, as :func:`domain_ids` numbers them) and name hashes.

    :func:`build_layout` given one (``table``) reads these arrays instead of asking every node
    again: the reconciler plans ten DataSets over the same 100,000 nodes, and per-node Python was
    half of each plan. ``tests/placement/test_layouts.py`` checks the layouts are the same.
    """

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = sorted(nodes, key=lambda n: n.name)
        self.names = tuple(n.name for n in self.nodes)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.duplicated = len(self.index) != len(self.names)
        self._members = frozenset(map(id, nodes))
        self._allocatable: dict[str, F64] = {}
        self._matches: dict[tuple[tuple[str, str], ...], npt.NDArray[np.bool_]] = {}
        self._sorted_domains: dict[str, tuple[I64, tuple[str, ...]]] = {}
        self._hashes: hashing.U64 | None = None

    def derived(self, removed: Collection[str], added: Sequence[Node]) -> Self | None:
        """This table without the nodes named ``removed`` and with ``added``, its arrays carried
        over instead of read from every node again: Python over the change, numpy over the nodes
        (a node joining a 100,000-node cluster costs milliseconds, not the second a fresh table
        costs). A node whose object changed is removed and added. ``None`` when a removed name
        is not here, or an added name is listed twice or stays here (build a fresh table).
        ``tests/placement/test_layouts.py`` checks it equals a fresh table of the same nodes."""
        if self.duplicated or any(n not in self.index for n in removed):
            return None
        drop = np.array(sorted({self.index[n] for n in removed}), dtype=np.int64)
        add = sorted(added, key=lambda n: n.name)
        add_names = [n.name for n in add]
        gone = set(removed)
        if len(set(add_names)) != len(add_names) or any(n in self.index and n not in gone for n in add_names):
            return None
        names, old_to_new, new_add = _rank_merge(self.names, drop, add_names)
        kept = np.flatnonzero(old_to_new >= 0)
        moved = old_to_new[kept]
        out = object.__new__(type(self))
        nodes = np.empty(len(names), dtype=object)
        nodes[moved] = np.fromiter(self.nodes, dtype=object, count=len(self.nodes))[kept]
        nodes[new_add] = np.fromiter(add, dtype=object, count=len(add))
        out.nodes = nodes.tolist()
        out.names = tuple(names)
        out.index = dict(zip(out.names, range(len(out.names)), strict=True))
        out.duplicated = False
        out._members = frozenset(map(id, out.nodes))

        def carried(old: npt.NDArray[Any], fresh: list[Any], dtype: Any) -> npt.NDArray[Any]:
            arr = np.empty(len(names), dtype=dtype)
            arr[moved] = old[kept]
            arr[new_add] = np.array(fresh, dtype=dtype)
            return arr

        out._allocatable = {r: carried(a, [float(n.allocatable.get(r)) for n in add], np.float64) for r, a in self._allocatable.items()}
        out._matches = {k: carried(a, [matches(n, dict(k)) for n in add], bool) for k, a in self._matches.items()}
        out._hashes = None if self._hashes is None else carried(self._hashes, list(hashing.node_hashes(add_names)), np.uint64)
        out._sorted_domains = {}
        for key, (ids, uniq) in self._sorted_domains.items():
            values = [n.domain(key) for n in add]
            kept_ids = ids[kept]
            present = np.bincount(kept_ids, minlength=len(uniq)) > 0
            fresh = sorted({v for v in values if not _among(uniq, v, present)})
            merged, dom_map, _ = _rank_merge(uniq, np.flatnonzero(~present), fresh)
            lookup = {v: bisect.bisect_left(merged, v) for v in set(values)}
            out._sorted_domains[key] = (carried(dom_map[ids], [lookup[v] for v in values], np.int64), tuple(merged))
        by_name = old_to_new.copy()  # a changed node keeps its name: its old position maps to its new one
        for name, at in zip(add_names, new_add.tolist(), strict=True):
            if name in self.index:
                by_name[self.index[name]] = at
        out._derived(self, by_name)
        return out

    def _derived(self, old: NodeArrays, old_to_new: I64) -> None:
        """What a subclass carries over in :meth:`derived` (``old_to_new``: the position here of
        each of ``old``'s names, ``-1`` when removed)."""

    def same_nodes(self, nodes: Sequence[Node]) -> bool:
        """``nodes`` are this table's node objects (in any order)."""
        return len(nodes) == len(self.nodes) and all(id(n) in self._members for n in nodes)

    def weights(self, resource: str) -> F64:
        """Allocatable ``resource`` per node (base units, as float)."""
        if resource not in self._allocatable:
            self._allocatable[resource] = np.array([float(n.allocatable.get(resource)) for n in self.nodes], dtype=np.float64)
        return self._allocatable[resource]

    def matching(self, selector: dict[str, str]) -> npt.NDArray[np.bool_]:
        """Nodes carrying every label of ``selector``."""
        key = tuple(sorted(selector.items()))
        if key not in self._matches:
            self._matches[key] = np.array([matches(n, selector) for n in self.nodes], dtype=bool)
        return self._matches[key]

    def sorted_domains(self, key: str) -> tuple[I64, tuple[str, ...]]:
        """:func:`domain_ids` of every node's domain at ``key`` (a level or a label)."""
        if key not in self._sorted_domains:
            self._sorted_domains[key] = domain_ids([n.domain(key) for n in self.nodes])
        return self._sorted_domains[key]

    def hashes(self) -> hashing.U64:
        """:func:`placement.hashing.node_hashes` of the sorted names."""
        if self._hashes is None:
            self._hashes = hashing.node_hashes(self.names)
        return self._hashes


def _rank_merge(old: Sequence[str], drop: I64, add: list[str]) -> tuple[list[str], I64, I64]:
    """``old`` (sorted, distinct) without its positions ``drop`` (sorted) and with ``add`` (sorted,
    none among those kept), as one sorted list; each old position's new one (``-1``: dropped) and
    each added name's. Numpy over ``old``, Python over ``add`` only."""
    keep = np.ones(len(old), dtype=bool)
    keep[drop] = False
    kept = np.flatnonzero(keep)
    at = np.array([bisect.bisect_left(old, a) for a in add], dtype=np.int64)
    rank = at - np.searchsorted(drop, at, side="left")  # where each joins the kept list
    j = np.arange(len(kept), dtype=np.int64)
    new_kept = j + np.searchsorted(rank, j, side="right")
    new_add = rank + np.arange(len(add), dtype=np.int64)
    merged = np.empty(len(kept) + len(add), dtype=object)
    merged[new_kept] = np.fromiter(old, dtype=object, count=len(old))[kept]
    merged[new_add] = np.fromiter(add, dtype=object, count=len(add))
    old_to_new = np.full(len(old), -1, dtype=np.int64)
    old_to_new[kept] = new_kept
    return merged.tolist(), old_to_new, new_add


def _among(uniq: tuple[str, ...], value: str, present: npt.NDArray[np.bool_]) -> bool:
    """``value`` is one of ``uniq`` (sorted) whose flag in ``present`` is set."""
    i = bisect.bisect_left(uniq, value)
    return i < len(uniq) and uniq[i] == value and bool(present[i])


def _restricted(ids: I64, names: tuple[str, ...], chosen: I64) -> tuple[I64, tuple[str, ...]]:
    """:func:`domain_ids` of the ``chosen`` nodes only, from the ids of all (sorted name order)."""
    present, dense = np.unique(ids[chosen], return_inverse=True)
    return dense.astype(np.int64).ravel(), tuple(names[i] for i in present.tolist())


def build_layout(
    nodes: Sequence[Node],
    spec: DataSetSpec,
    *,
    weight: str = "ephemeral-storage",
    strict: bool = True,
    keep: Collection[str] = (),
    spread_cost_limit: float | None = 0.25,
    table: NodeArrays | None = None,
) -> Layout:
    """The :class:`Layout` of ``spec`` over ``nodes``.

    Parameters
    ----------
    nodes:
        Cluster nodes (any order). Only those matching ``spec.node_selector`` with a positive
        ``weight`` resource are eligible.
    spec:
        The DataSet spec (redundancy, failure domain, selector, shard sizes).
    weight:
        The allocatable resource whose amount is the node's capacity weight.
    strict:
        Raise :class:`PlacementError` when the redundancy cannot be honoured (else record it in
        :attr:`Layout.problem`).
    keep:
        Names of ineligible nodes to include anyway (they hold pieces whose failure domains a
        repair must respect); they never receive pieces.
    spread_cost_limit:
        Spread over coarser levels only when no node's target moves by more than this fraction
        of its plain weight share (``None``: never spread above the failure domain).
    table:
        A :class:`NodeArrays` of exactly ``nodes`` (the same objects), read instead of the nodes
        (ignored when it is not, or with ``keep``).

    Raises
    ------
    PlacementError
        Duplicate node names; or, with ``strict``, no eligible node, too few failure domains for
        the redundancy, or too few nodes in them.
    """
    selector = dict(spec.node_selector)
    if table is not None and not keep and not table.duplicated and table.same_nodes(nodes):
        chosen = np.flatnonzero(table.matching(selector) & (table.weights(weight) > 0))
        names = tuple(table.names[i] for i in chosen.tolist())
        is_ok = np.ones(len(chosen), dtype=bool)
        has_eligible = len(chosen) > 0
        weights = np.maximum(table.weights(weight)[chosen], 1.0)
        domains, domain_names = _restricted(*table.sorted_domains(spec.failure_domain), chosen)
        levels = {level: _restricted(*table.sorted_domains(level), chosen)[0] for level in LEVELS}
        node_hash = table.hashes()[chosen]
    else:
        seen: set[str] = set()
        for node in nodes:
            if node.name in seen:
                raise PlacementError(f"node {node.name!r} is listed twice")
            seen.add(node.name)
        kept = set(keep)
        ok = {n.name for n in nodes if matches(n, selector) and n.allocatable.get(weight) > 0}
        included = sorted((n for n in nodes if n.name in ok or n.name in kept), key=lambda n: n.name)
        is_ok = np.array([n.name in ok for n in included], dtype=bool)
        has_eligible = bool(is_ok.any())
        names = tuple(n.name for n in included)
        weights = np.array([float(max(n.allocatable.get(weight), 1)) for n in included], dtype=np.float64)
        domains, domain_names = domain_ids([n.domain(spec.failure_domain) for n in included])
        levels = {level: domain_ids([level_domain(n, level) for n in included])[0] for level in LEVELS}
        node_hash = hashing.node_hashes(names)
    red = spec.redundancy
    width = red.width
    problem = ""
    if not has_eligible:
        what = f"matches nodeSelector {selector}" if selector else "is in the cluster"
        problem = f"no node that {what} has allocatable {weight}"
        cap = 0
    else:
        n_domains = len(np.unique(domains[is_ok]))
        cap, problem = rule_cap(width, red.tolerates, n_domains)
        if not problem:
            per_domain = np.bincount(domains[is_ok], minlength=len(domain_names))
            slots = int(np.minimum(per_domain, cap).sum())
            if slots < width:
                problem = (
                    f"{width} pieces need {width} nodes with at most {cap} per failure domain; "
                    f"the {n_domains} domains offer only {slots}"
                )
    if problem:
        problem = f"DataSet {spec.key} ({red}, failure domain {spec.failure_domain}): {problem}"
        if strict:
            raise PlacementError(problem)
    piece_bytes = spec.shard_sizes.astype(np.float64) * red.piece_fraction()
    total = float(piece_bytes.sum()) * width
    per_node_max = float(piece_bytes.sum())
    targets = np.zeros(len(names), dtype=np.float64)
    spread: list[Rule] = []
    if has_eligible and cap > 0:
        members = np.flatnonzero(is_ok)
        plain = hierarchical_targets(weights[members], [(domains[members], cap)], per_node_max, total)
        targets[members] = plain
        fd_level = LEVEL_OF_KEY.get(spec.failure_domain)
        coarser = LEVELS[LEVELS.index(fd_level) + 1 :] if fd_level in LEVELS else ()
        for level in coarser if spread_cost_limit is not None else ():
            ids = levels[level]
            n_level = len(np.unique(ids[is_ok]))
            if n_level <= 1:
                continue
            rule = Rule(level, ids, math.ceil(width / n_level))
            chain = [(rule.ids[members], rule.cap), *[(r.ids[members], r.cap) for r in reversed(spread)], (domains[members], cap)]
            if hierarchical_slots(chain, np.arange(len(members))) < width:
                continue
            trial = hierarchical_targets(weights[members], chain, per_node_max, total)
            cost = float(np.max(np.abs(trial - plain) / np.maximum(plain, 1e-300))) if len(plain) else 0.0
            if cost <= float(spread_cost_limit or 0.0):
                spread.append(rule)
                targets[members] = trial
    return Layout(
        spec=spec,
        names=names,
        index={n: i for i, n in enumerate(names)},
        weights=weights,
        domains=domains,
        domain_names=domain_names,
        levels=levels,
        cap=cap,
        piece_bytes=piece_bytes,
        targets=targets,
        node_hash=node_hash,
        spread=tuple(spread),
        eligible=is_ok,
        problem=problem,
    )
