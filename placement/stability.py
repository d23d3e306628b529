"""Stability: is a placement already one that :func:`~placement.placements.place` would keep?

``place(nodes, spec, previous=p)`` returns ``p`` unchanged (no moves) when every piece of ``p``
sits on an eligible node of the layout, no shard breaks the failure-domain rule (a node twice, more
than ``cap`` pieces in one domain), no piece is missing, and every node's load is within
the stable band of its target (``stable_tolerance``, at least ``min_band_pieces``
pieces). :func:`keeps` checks exactly that, in O(pieces + nodes log
nodes) vectorised numpy from a :class:`NodeTable` shared by every DataSet of a pass, without
building a :class:`~placement.layouts.Layout` per DataSet.

The targets are computed here by the same water-filling as :func:`placement.layouts.build_layout`
(:func:`~placement.layouts.hierarchical_targets`, same chain of domains, same spreading
decisions), but for a unit piece size: they scale with the piece size, so they agree with
the layout's to a few ulps, not bit for bit; :func:`keeps` therefore answers ``True`` only with a
margin (a load at most a relative ``1e-9`` past a band edge, where ``place()``'s band reaches
``2e-9`` past it, and a spreading decision at least ``1e-6`` away
from ``spread_cost_limit``). A ``False`` means "not sure": the caller runs :func:`~placement.placements.place`, which decides.
So ``keeps(...)`` implies ``place(..., previous=p).placement`` has the same pieces as ``p`` and
no moves; the converse is almost always true too, which is what makes the reconciler's steady
state cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from placement.layouts import LEVEL_OF_KEY, LEVELS, NodeArrays, chain_slots, hierarchical_targets, rule_cap
from placement.settings import DEFAULT_SETTINGS, PlacementSettings
from topology.datasets import DataSetSpec, ShardPlacement
from topology.nodes import Node

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: How far past a band edge (relative to the goal) a load still counts as inside for :func:`keeps`:
#: half of :data:`placement.assignments.EDGE`, the reach of ``place()``'s own band, so a load on
#: the edge (every old node when the joiners are exactly ``stable_tolerance`` of the cluster) is
#: kept by both, whatever ulps the two goals differ by.
MARGIN = 1e-9
#: A spreading decision closer than this to ``spread_cost_limit`` is "not sure".
COST_MARGIN = 1e-6
#: The ``per_node_max`` targets are computed for (they scale with it; 2**40 bytes, about a TiB).
UNIT = float(2**40)


class NodeTable(NodeArrays):
    """Nodes typed once for many :func:`keeps` calls: sorted by name, with weights, selector
    matches and domain ids computed on first use and remembered (one table per cluster view); a
    :class:`~placement.layouts.NodeArrays`, so ``place(..., table=...)`` reads it too."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        super().__init__(nodes)
        self._domains: dict[str, I64] = {}
        self._layouts: dict[tuple[Any, ...], tuple[I64, I64, int, F64] | None] = {}
        self._luts: dict[tuple[tuple[str, ...], int], I64] = {}
        self._name_array: npt.NDArray[np.object_] | None = None
        #: The names of the table this one was derived from and their positions here (``-1``:
        #: removed): a DataSet's node list equal to them maps without a lookup per name.
        self._prior: tuple[tuple[str, ...], I64] | None = None
        self._known: dict[int, tuple[Sequence[str], I64]] = {}

    def _derived(self, old: NodeArrays, old_to_new: I64) -> None:
        self._domains = {}
        self._layouts = {}
        self._luts = {}
        self._name_array = None
        self._prior = (old.names, old_to_new)
        self._known = {}

    def name_array(self) -> npt.NDArray[np.object_]:
        """:attr:`names` as a numpy object array (many names picked at once)."""
        if self._name_array is None:
            self._name_array = np.array(self.names, dtype=object)
        return self._name_array

    def domains(self, key: str) -> I64:
        """Dense domain ids per node at ``key`` (a level or a label; same id = same domain)."""
        if key not in self._domains:
            self._domains[key] = self.sorted_domains(key)[0]  # shared with the layouts place() builds
        return self._domains[key]

    def lut(self, names: tuple[str, ...], position: I64) -> I64:
        """Per name of ``names`` (and a last ``-1``): its ``position`` (``-1`` for an unknown name)."""
        key = (names, id(position))
        found = self._luts.get(key)
        if found is None:
            found = np.append(position[self.known(names)], -1)
            if len(self._luts) >= 64:  # bounded like known(): 100,000 entries per list, thousands of DataSets
                self._luts.pop(next(iter(self._luts)))
            self._luts[key] = found
        return found

    def known(self, names: Sequence[str]) -> I64:
        """Per name of ``names`` its index here, ``-1`` for a name not in the table."""
        if names is self.names:
            return np.arange(len(self.names), dtype=np.int64)
        prior = self._prior
        if prior is not None and (names is prior[0] or (len(names) == len(prior[0]) and tuple(names) == prior[0])):
            return prior[1]
        found = self._known.get(id(names))
        if found is not None and found[0] is names:
            return found[1]
        out = np.fromiter(map(self.index.get, names, repeat(-1)), dtype=np.int64, count=len(names))
        if len(self._known) >= 64:  # the node lists of the DataSets of a pass, remembered by identity
            self._known.pop(next(iter(self._known)))
        self._known[id(names)] = (names, out)
        return out

    def layout(
        self, selector: dict[str, str], weight: str, failure_domain: str, *, width: int, tolerates: int, spread_cost_limit: float | None
    ) -> tuple[I64, I64, int, F64] | None:
        """What :func:`keeps` needs of build_layout, once per distinct input: each node's position
        among the eligible ones (``-1``: not eligible; one more entry, ``-1``), their domain ids,
        the cap and the targets for ``per_node_max = UNIT``; ``None`` when the rule cannot be
        honoured or a spreading decision is too close to call."""
        key = (tuple(sorted(selector.items())), weight, failure_domain, width, tolerates, spread_cost_limit)
        if key not in self._layouts:
            allocatable = self.weights(weight)
            chosen = np.flatnonzero(self.matching(selector) & (allocatable > 0))
            position = np.full(len(self.names) + 1, -1, dtype=np.int64)
            position[chosen] = np.arange(len(chosen))
            domains = self.domains(failure_domain)[chosen]
            cap, problem = rule_cap(width, tolerates, distinct(domains))
            found: tuple[I64, I64, int, F64] | None = None
            if not problem and int(np.minimum(np.bincount(domains), cap).sum()) >= width:
                fd_level = LEVEL_OF_KEY.get(failure_domain)
                coarser = LEVELS[LEVELS.index(fd_level) + 1 :] if fd_level in LEVELS else ()
                levels = [self.domains(level)[chosen] for level in coarser]
                weights = np.maximum(allocatable[chosen], 1.0)
                goal = _goal(weights, domains, cap, width=width, levels=levels, spread_cost_limit=spread_cost_limit)
                found = None if goal is None else (position, domains, cap, goal)
            self._layouts[key] = found
        return self._layouts[key]


def keeps(
    nodes: Sequence[Node] | NodeTable,
    spec: DataSetSpec,
    previous: ShardPlacement,
    *,
    weight: str = "ephemeral-storage",
    settings: PlacementSettings | None = None,
) -> bool:
    """True only if ``place(nodes, spec, previous=previous, weight=weight, settings=settings)``
    keeps every piece where it is (module docstring); ``False`` when it may not.

    ``nodes`` may be a :class:`NodeTable` of them (to check many DataSets on the same nodes).

    Examples
    --------
    >>> from topology.datasets import DataSet, Replicas, dataset_object
    >>> from topology.examples import make_cluster_nodes
    >>> from placement import place
    >>> nodes = [Node.from_object(o) for o in make_cluster_nodes(zones=3, racks_per_zone=2, hosts_per_rack=2)]
    >>> spec = DataSet.from_object(dataset_object("d", shards=120, shard_size="1Gi", redundancy=Replicas(3))).spec
    >>> first = place(nodes, spec).placement
    >>> keeps(nodes, spec, first), keeps(nodes[:-1], spec, first)
    (True, False)
    """
    cfg = settings or DEFAULT_SETTINGS
    table = nodes if isinstance(nodes, NodeTable) else NodeTable(nodes)
    found = frame(table, spec, previous, weight=weight, settings=cfg)
    if found is None:
        return False  # a bad shape, duplicate names, a rule that cannot be honoured, a decision too close to call
    pieces = found.positions(table, previous)
    return found.fits(pieces)


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """What :func:`keeps` (and :func:`placement.shifts.shift`) check a placement against: each
    table node's position among the eligible ones (``position``, ``-1``: not eligible, and one
    more ``-1`` entry), per eligible position its domain id, the cap, the bytes of one piece of
    each shard and each node's goal (bytes) with ``plan``'s stable band ``[lo, hi]`` and the
    margin ``slack`` kept from both edges; ``hosts_are_domains`` when every eligible node is a
    domain of its own (the host rule: the rule is distinct nodes per shard)."""

    position: I64
    domains: I64
    cap: int
    width: int
    piece_bytes: F64
    uniform: bool
    goal: F64
    lo: F64
    hi: F64
    slack: F64
    hosts_are_domains: bool = False

    def positions(self, table: NodeTable, placement: ShardPlacement) -> I64:
        """The placement's pieces as eligible positions (``-1``: missing or on a node that is not eligible)."""
        out: I64 = table.lut(placement.nodes, self.position)[placement.pieces]
        return out

    def loads(self, pieces: I64) -> F64:
        """Bytes per eligible position (pieces ``-1`` ignored)."""
        n = len(self.goal)
        if self.uniform:
            flat = pieces.ravel()
            counts = np.bincount(flat[flat >= 0] if (flat < 0).any() else flat, minlength=n)
            scaled: F64 = counts.astype(np.float64) * float(self.piece_bytes[0] if len(self.piece_bytes) else 0.0)
            return scaled
        rows = np.repeat(np.arange(pieces.shape[0]), pieces.shape[1])
        flat = pieces.ravel()
        keep = flat >= 0
        summed: F64 = np.bincount(flat[keep], weights=self.piece_bytes[rows[keep]], minlength=n).astype(np.float64)
        return summed

    def rule_holds(self, pieces: I64, *, partial: bool = False) -> bool:
        """Distinct nodes per shard and at most ``cap`` pieces per domain, no piece missing
        (``partial``: among the pieces present; a missing one ``-1`` counts as a node and a domain
        of its own)."""
        doms = self.domains
        if partial:
            n, top = len(self.goal), int(doms.max(initial=-1)) + 1
            cols = np.broadcast_to(np.arange(self.width, dtype=np.int64), pieces.shape)
            pieces = np.where(pieces >= 0, pieces, n + cols)  # a missing piece: a node (and a domain) of its own
            doms = np.concatenate((doms[:n], top + np.arange(self.width, dtype=np.int64)))
        elif (pieces < 0).any():
            return False
        if self.hosts_are_domains:  # one node per domain: distinct nodes are distinct domains
            for q in range(1, self.width):
                for r in range(q):
                    if (pieces[:, r] == pieces[:, q]).any():
                        return False
            return True
        dom = doms[pieces]
        for q in range(1, self.width):
            same_dom = np.zeros(pieces.shape[0], dtype=np.int64)
            for r in range(q):
                if (pieces[:, r] == pieces[:, q]).any():
                    return False
                same_dom += dom[:, r] == dom[:, q]
            if (same_dom >= self.cap).any():
                return False
        return True

    def in_band(self, loads: F64) -> bool:
        """Every node's load inside its stable band, at most :data:`MARGIN` past either edge (a
        load on the edge is inside: ``place()``'s band reaches :data:`placement.assignments.EDGE`
        past it), every goal positive."""
        return bool((loads <= self.hi + self.slack).all() and (loads >= self.lo - self.slack).all() and (self.goal > 0).all())

    def fits(self, pieces: I64) -> bool:
        """:func:`keeps`'s answer for ``pieces`` (eligible positions): the rule, then the loads."""
        return self.rule_holds(pieces) and self.in_band(self.loads(pieces))


def frame(
    table: NodeTable, spec: DataSetSpec, previous: ShardPlacement | None = None, *, weight: str, settings: PlacementSettings
) -> Frame | None:
    """The :class:`Frame` of ``spec`` on ``table``; ``None`` when :func:`keeps` answers ``False``
    whatever the pieces (a ``previous`` of another shape, duplicate names, a rule that cannot be
    honoured, a spreading decision too close to call)."""
    shards, width = spec.shards, spec.redundancy.width
    if shards == 0 or width == 0 or (previous is not None and previous.pieces.shape != (shards, width)):
        return None
    if table.duplicated:
        return None  # build_layout raises: place decides
    red = spec.redundancy
    layout = table.layout(
        dict(spec.node_selector), weight, spec.failure_domain, width=width, tolerates=red.tolerates,
        spread_cost_limit=settings.spread_cost_limit,
    )
    if layout is None:
        return None
    position, domains, cap, unit_goal = layout
    sizes = spec.shard_sizes
    uniform = bool(len(sizes) == 0 or (sizes == sizes[0]).all())
    piece_bytes = sizes.astype(np.float64) * red.piece_fraction()
    goal = unit_goal * (float(piece_bytes.sum()) / UNIT)
    # plan's stable band: +-stable_tolerance, never narrower than min_band_pieces pieces
    half = np.maximum(goal * settings.stable_tolerance, settings.min_band_pieces * float(piece_bytes.max()))
    alone = bool(len(domains) == len(goal) and (domains == np.arange(len(domains))).all())
    return Frame(position, domains, cap, width, piece_bytes, uniform, goal, goal - half, goal + half, MARGIN * goal, alone)


def distinct(ids: I64) -> int:
    """How many distinct values in ``ids`` (dense ids ``>= 0``): ``len(np.unique(ids))`` by
    counting (numpy's hashed ``unique`` takes 0.2 s on 100,000 ids)."""
    return int(np.count_nonzero(np.bincount(ids))) if len(ids) else 0


def _goal(weights: F64, domains: I64, cap: int, *, width: int, levels: list[I64], spread_cost_limit: float | None) -> F64 | None:
    """Targets per node for ``per_node_max = UNIT`` (they scale with it), with build_layout's
    spreading decisions; ``None`` when a decision is within :data:`COST_MARGIN` of the limit."""
    goal = hierarchical_targets(weights, [(domains, cap)], UNIT, UNIT * width)
    plain = goal
    spread: list[tuple[I64, int]] = []
    for ids in levels if spread_cost_limit is not None else ():
        n_level = distinct(ids)
        if n_level <= 1:
            continue
        rule = (ids, math.ceil(width / n_level))
        chain = [rule, *reversed(spread), (domains, cap)]
        if chain_slots(chain) < width:
            continue
        trial = hierarchical_targets(weights, chain, UNIT, UNIT * width)
        cost = float(np.max(np.abs(trial - plain) / np.maximum(plain, 1e-300)))
        if abs(cost - float(spread_cost_limit or 0.0)) < COST_MARGIN:
            return None
        if cost <= float(spread_cost_limit or 0.0):
            spread.append(rule)
            goal = trial
    return goal


__all__ = ["Frame", "NodeTable", "distinct", "frame", "keeps"]
