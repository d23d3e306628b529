"""Placements: where every piece of a DataSet goes, fresh or starting from the previous placement.

:func:`place` is the entry point. Without ``previous`` it computes a fresh placement: every piece
assigned by bounded-load weighted rendezvous (:mod:`placement.assignments`), then balanced to
``fresh_tolerance``. With ``previous`` it is stable: pieces stay where they are unless they sit on
a node that is gone or no longer eligible, break the failure-domain rule, or must move to bring a
node back within ``stable_tolerance`` of its weight share; the result lists exactly those
:class:`Move` s. The hard invariants (:mod:`placement.layouts`) hold in every result; when they
cannot, :class:`~topology.errors.PlacementError` says why. Same inputs, same output: the result
depends on node names, weights, domains, the spec and the seed only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from placement import assignments
from placement.layouts import Layout, NodeArrays, build_layout
from placement.reports import PlacementReport, balance_of, spread_of, violating_shards
from placement.settings import DEFAULT_SETTINGS, PlacementSettings
from placement.trees import Tree, use_tree
from topology.datasets import DataSetSpec, ShardPlacement
from topology.errors import PlacementError
from topology.nodes import Node

I32 = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Move:
    """One piece changing node: ``from_node`` is ``None`` when the piece is (re)built from others."""

    shard: int
    piece: int
    from_node: str | None
    to_node: str

    def __str__(self) -> str:
        return f"shard {self.shard} piece {self.piece}: {self.from_node or '(rebuild)'} -> {self.to_node}"


@dataclass(frozen=True, slots=True)
class PlacementResult:
    """A placement, the moves that lead to it from the previous one, and its report.

    A fresh placement (no ``previous``) has no moves: every piece is new.
    """

    placement: ShardPlacement
    moves: tuple[Move, ...]
    report: PlacementReport


def plan(
    nodes: Sequence[Node],
    spec: DataSetSpec,
    previous: ShardPlacement | None,
    *,
    weight: str,
    seed: int,
    tolerance: float,
    budget: int | None,
    settings: PlacementSettings,
    table: NodeArrays | None = None,
) -> PlacementResult:
    """The shared planner behind :func:`place` and :func:`~placement.rebalances.rebalance`.

    Steps: map ``previous`` onto the eligible nodes (pieces elsewhere become missing), unset
    pieces that break the rule, fill missing pieces, balance to ``tolerance`` with at most
    ``budget`` balancing moves, and diff against ``previous``.

    Raises
    ------
    PlacementError
        If the redundancy cannot be honoured on these nodes.
    """
    layout = build_layout(nodes, spec, weight=weight, strict=True, spread_cost_limit=settings.spread_cost_limit, table=table)
    shards, width = spec.shards, spec.redundancy.width
    pieces = np.full((shards, width), -1, dtype=np.int32)
    old: I32 | None = None
    if previous is not None:
        lut = np.array([*(layout.index.get(n, -1) for n in previous.nodes), -1], dtype=np.int32)
        old = np.full((shards, width), -1, dtype=np.int32)
        ss, ww = min(shards, previous.shards), min(width, previous.width)
        old[:ss, :ww] = previous.pieces[:ss, :ww]
        pieces[:ss, :ww] = lut[previous.pieces[:ss, :ww]]
    assignments.drop_violations(layout, pieces)
    loads = assignments.loads_of(layout, pieces)
    tree = Tree(layout) if use_tree(layout, shards, settings.exact_pairs_limit, settings.hierarchical) else None
    unplaced = assignments.fill(layout, pieces, loads, seed=seed, settings=settings, tree=tree)
    if unplaced:
        raise PlacementError(f"DataSet {spec.key}: {unplaced} pieces found no node that keeps the failure-domain rule")
    min_band = least_band(layout, settings)
    assignments.balance(
        layout, pieces, loads, tolerance=tolerance, budget=budget, seed=seed, settings=settings, tree=tree, min_band=min_band,
        chains=previous is None,
    )
    moves = _diff(layout, pieces, previous, old, {n.name for n in nodes})
    relocated = [m for m in moves if m.from_node is not None]
    report = PlacementReport(
        nodes=layout.size,
        failure_domain=spec.failure_domain,
        cap=layout.cap,
        balance=balance_of(layout, loads),
        spread=spread_of(layout, pieces),
        violations=len(violating_shards(layout, pieces)),
        moved_pieces=len(relocated),
        moved_bytes=int(sum(float(layout.piece_bytes[m.shard]) for m in relocated)),
        rebuilt_pieces=len(moves) - len(relocated),
        fresh=previous is None,
    )
    return PlacementResult(to_shard_placement(layout, pieces), moves, report)


def least_band(layout: Layout, settings: PlacementSettings) -> float:
    """How far (bytes) a balancing move may take a node from its target: ``min_band_pieces`` of
    the largest piece (:func:`placement.assignments.bands`)."""
    largest = float(layout.piece_bytes.max()) if len(layout.piece_bytes) else 0.0
    return settings.min_band_pieces * largest


def to_shard_placement(layout: Layout, pieces: I32) -> ShardPlacement:
    """Pieces (indexes into ``layout.names``) as a :class:`ShardPlacement` over the nodes used."""
    used = np.zeros(layout.size + 1, dtype=bool)
    used[pieces[pieces >= 0]] = True
    used = used[: layout.size]
    new_index = np.cumsum(used, dtype=np.int64) - 1
    lut = np.append(new_index, -1).astype(np.int32)
    names = tuple(n for n, u in zip(layout.names, used.tolist(), strict=True) if u)
    return ShardPlacement(names, lut[pieces])


def _diff(layout: Layout, pieces: I32, previous: ShardPlacement | None, old: I32 | None, present: set[str]) -> tuple[Move, ...]:
    if previous is None or old is None:
        return ()
    # Compared as layout indexes (a million pieces: no name arrays): an old holder outside the
    # layout is -2, so it never equals a piece now missing (-1).
    lut = np.array([*(layout.index.get(n, -2) for n in previous.nodes), -1], dtype=np.int64)
    rows, cols = np.nonzero(lut[old] != pieces)
    out = []
    for s, p in zip(rows.tolist(), cols.tolist(), strict=True):
        src = previous.nodes[old[s, p]] if old[s, p] >= 0 else ""
        after = layout.names[pieces[s, p]] if pieces[s, p] >= 0 else ""
        out.append(Move(s, p, src if src and src in present else None, after))
    return tuple(out)


def place(
    nodes: Sequence[Node],
    spec: DataSetSpec,
    *,
    previous: ShardPlacement | None = None,
    weight: str = "ephemeral-storage",
    seed: int = 0,
    settings: PlacementSettings | None = None,
    table: NodeArrays | None = None,
) -> PlacementResult:
    """Place every piece of a DataSet on ``nodes``.

    Parameters
    ----------
    nodes:
        The cluster's nodes, any order; only those matching ``spec.node_selector`` with a positive
        ``weight`` resource get pieces. Cordoned or not-ready nodes are not excluded here: leave
        out the nodes that should hold no data (a node being drained, say).
    spec:
        The DataSet spec: shard count and sizes, ``Replicas(r)`` or ``Erasure(k, m)``, failure
        domain, node selector.
    previous:
        The current placement. When given, pieces stay unless they must move (stability), an
        erasure piece that stays keeps its index, and :attr:`PlacementResult.moves` lists what
        changed.
    weight:
        The allocatable resource whose amount is a node's capacity weight
        (``ephemeral-storage`` bytes by default; ``cpu``, ``memory``, ``pods`` or any extended
        resource).
    seed:
        Seed of the rendezvous hash (same seed, same placement).
    settings:
        Tolerances and limits (:class:`~placement.settings.PlacementSettings`).
    table:
        :class:`~placement.layouts.NodeArrays` of these very nodes, kept by a caller that places
        many DataSets on them (the reconciler): the same result, without reading every node again.

    Returns
    -------
    PlacementResult
        The placement (over the nodes it uses), the moves from ``previous`` and a report.

    Raises
    ------
    PlacementError
        No eligible node, or too few failure domains or nodes to honour the redundancy.

    Examples
    --------
    >>> from topology.datasets import DataSet, Replicas, dataset_object
    >>> from topology.examples import make_cluster_nodes
    >>> from topology.nodes import Node
    >>> nodes = [Node.from_object(o) for o in make_cluster_nodes(zones=3, racks_per_zone=2, hosts_per_rack=2)]
    >>> spec = DataSet.from_object(dataset_object("d", shards=100, shard_size="1Gi", redundancy=Replicas(3),
    ...                                           failure_domain="rack")).spec
    >>> result = place(nodes, spec)
    >>> result.report.violations
    0
    """
    cfg = settings or DEFAULT_SETTINGS
    tolerance = cfg.fresh_tolerance if previous is None else cfg.stable_tolerance
    return plan(nodes, spec, previous, weight=weight, seed=seed, tolerance=tolerance, budget=None, settings=cfg, table=table)
