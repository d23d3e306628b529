"""Repair plans: what failed nodes took with them, and where each missing or leaving piece goes.

After nodes fail, every shard that had a piece on them is *damaged*. With ``n`` readable pieces
and ``needed`` pieces to read it (1 for replicas, ``k`` for ``k + m`` erasure):

- *lost*: ``n < needed``, the shard cannot be rebuilt;
- *at risk*: ``n == needed``, one more failure loses it;
- otherwise merely *degraded*.

Nodes that are *draining* (leaving but still readable: a scale-down, a node cordoned for
removal) are not failures: their pieces are readable, count in ``n``, and are *copied* off the
node (the source is the draining node itself) rather than rebuilt from the other pieces. No
shard is lost, at risk or damaged because of a draining node.

Every missing piece of a shard that is not lost, and every piece on a draining node, gets a
:class:`Rebuild`: a target node chosen by the same bounded-load weighted rendezvous as
:func:`~placement.placements.place`, among surviving eligible nodes that are not draining, never
in a failure domain the shard's staying pieces already use beyond the rule's cap, and spread over
racks and zones above the failure domain as a fresh placement on the same nodes would be (the
``spread_cost_limit`` rule of :mod:`placement.layouts`): surviving pieces never move, so a
missing piece goes to a domain that keeps, or brings back, that spread. A rebuilt erasure piece
keeps its index. Rebuilds are listed most urgent first (fewest staying pieces).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from placement import assignments
from placement.layouts import build_layout
from placement.placements import to_shard_placement
from placement.settings import DEFAULT_SETTINGS, PlacementSettings
from topology.datasets import DataSetSpec, ShardPlacement
from topology.nodes import Node


@dataclass(frozen=True, slots=True)
class Rebuild:
    """Rebuild piece ``piece`` of ``shard`` on ``to_node`` from the surviving ``sources``.

    For replicas any one source is enough; for erasure any ``needed`` of them. When
    ``from_node`` is set the piece is a *copy* off that draining node (``sources`` is just it).
    """

    shard: int
    piece: int
    to_node: str
    sources: tuple[str, ...]
    from_node: str | None = None


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """The damage failed nodes did to one DataSet, and the plan to rebuild it.

    Attributes
    ----------
    failed:
        The failed node names given, sorted.
    damaged, at_risk, lost:
        Shard indexes (sorted) that lost a piece; that are one failure from loss; that cannot be
        rebuilt. ``lost`` and ``at_risk`` are subsets of ``damaged`` (shards whose pieces were
        already missing count too). Pieces on draining nodes are readable and count as present.
    rebuilds:
        One :class:`Rebuild` per missing piece of every shard that is not lost and per piece on a
        draining node (a copy, ``from_node`` set), most urgent first.
    unplaceable:
        ``(shard, piece)`` pairs with no surviving node that keeps the failure-domain rule.
    placement:
        The placement once the rebuilds are done and the draining nodes are gone (lost and
        unplaceable pieces stay missing).
    problem:
        Why the full redundancy cannot be honoured on the survivors, or ``""``.
    """

    failed: tuple[str, ...]
    damaged: tuple[int, ...]
    at_risk: tuple[int, ...]
    lost: tuple[int, ...]
    rebuilds: tuple[Rebuild, ...]
    unplaceable: tuple[tuple[int, int], ...]
    placement: ShardPlacement
    problem: str
    draining: tuple[str, ...] = ()
    drained: tuple[int, ...] = ()

    def lines(self) -> list[str]:
        """A short human summary."""
        copies = sum(1 for r in self.rebuilds if r.from_node is not None)
        out = [
            f"{len(self.failed)} failed nodes: {len(self.damaged)} shards damaged, {len(self.at_risk)} at risk, "
            f"{len(self.lost)} lost; {len(self.rebuilds) - copies} pieces to rebuild"
        ]
        if self.draining:
            out.append(f"{len(self.draining)} draining nodes: {copies} pieces of {len(self.drained)} shards to copy off them")
        if self.unplaceable:
            out.append(f"{len(self.unplaceable)} pieces have no node that keeps the rule: {self.problem or 'too few survivors'}")
        return out


def repair_plan(
    nodes: Sequence[Node],
    spec: DataSetSpec,
    placement: ShardPlacement,
    failed: Collection[str] = (),
    *,
    draining: Collection[str] = (),
    weight: str = "ephemeral-storage",
    seed: int = 0,
    settings: PlacementSettings | None = None,
) -> RepairPlan:
    """Plan the rebuild of everything ``failed`` nodes held and the copy of what ``draining`` ones hold.

    Parameters
    ----------
    nodes:
        The cluster's nodes (failed and draining ones may be listed or absent; pieces on nodes
        neither in ``nodes`` nor draining count as missing too).
    spec, weight, seed, settings:
        As for :func:`~placement.placements.place`.
    placement:
        The placement in effect before the failure.
    failed:
        Names of failed nodes: their pieces are gone.
    draining:
        Names of nodes that are leaving but still readable (scale-down, cordoned for removal):
        their pieces are copied elsewhere, never counted as lost, and they receive nothing. A
        node both failed and draining counts as failed.

    Returns
    -------
    RepairPlan
        Damaged, at-risk and lost shards and one :class:`Rebuild` per rebuildable missing piece
        and per piece to copy off a draining node. Never raises for too few survivors: it says
        so in :attr:`RepairPlan.problem` and lists the pieces it could not place.
    """
    cfg = settings or DEFAULT_SETTINGS
    gone = set(failed)
    leaving = set(draining) - gone
    survivors = [n for n in nodes if n.name not in gone and n.name not in leaving]
    holders = set(placement.nodes)
    layout = build_layout(
        survivors,
        spec,
        weight=weight,
        strict=False,
        keep=[n.name for n in survivors if n.name in holders],
        spread_cost_limit=cfg.spread_cost_limit,
    )
    shards, width = spec.shards, spec.redundancy.width
    ss, ww = min(shards, placement.shards), min(width, placement.width)
    pieces = np.full((shards, width), -1, dtype=np.int32)
    lut = np.array([*(layout.index.get(n, -1) for n in placement.nodes), -1], dtype=np.int32)
    pieces[:ss, :ww] = lut[placement.pieces[:ss, :ww]]
    # Pieces on draining nodes: readable now, leaving with the node.
    on_leaving = np.zeros((shards, width), dtype=bool)
    leaving_lut = np.array([*(n in leaving for n in placement.nodes), False], dtype=bool)
    on_leaving[:ss, :ww] = leaving_lut[placement.pieces[:ss, :ww]]
    staying_per_shard = (pieces >= 0).sum(axis=1)
    readable_per_shard = staying_per_shard + on_leaving.sum(axis=1)
    needed = spec.redundancy.needed
    damaged = np.flatnonzero(readable_per_shard < width)
    lost = np.flatnonzero(readable_per_shard < needed)
    at_risk = np.flatnonzero((readable_per_shard == needed) & (readable_per_shard < width))
    drained = np.flatnonzero(on_leaving.any(axis=1))
    before = pieces.copy()
    rows = np.setdiff1d(np.union1d(damaged, drained), lost)
    if len(rows) and layout.size:
        loads = assignments.loads_of(layout, pieces)
        assignments.fill(layout, pieces, loads, seed=seed, settings=cfg, rows=rows)
    lost_set = set(lost.tolist())
    unplaced = [(int(s), int(p)) for s, p in zip(*np.nonzero(pieces < 0), strict=True) if s not in lost_set]
    names = np.array([*layout.names, ""], dtype=object)
    old_names = np.array([*placement.nodes, ""], dtype=object)
    old = np.full((shards, width), -1, dtype=np.int32)
    old[:ss, :ww] = placement.pieces[:ss, :ww]
    rebuilds: list[tuple[int, int, int, Rebuild]] = []
    for s, p in zip(*np.nonzero((before < 0) & (pieces >= 0)), strict=True):
        to = str(names[pieces[s, p]])
        if on_leaving[s, p]:
            src = str(old_names[old[s, p]])
            rebuild = Rebuild(int(s), int(p), to, (src,), from_node=src)
        else:
            readable = tuple(
                str(names[before[s, q]]) if before[s, q] >= 0 else str(old_names[old[s, q]])
                for q in range(width)
                if before[s, q] >= 0 or on_leaving[s, q]
            )
            rebuild = Rebuild(int(s), int(p), to, readable)
        rebuilds.append((int(staying_per_shard[s]), int(s), int(p), rebuild))
    rebuilds.sort(key=lambda r: r[:3])
    return RepairPlan(
        failed=tuple(sorted(gone)),
        damaged=tuple(int(s) for s in damaged),
        at_risk=tuple(int(s) for s in at_risk),
        lost=tuple(int(s) for s in lost),
        rebuilds=tuple(r[3] for r in rebuilds),
        unplaceable=tuple(sorted(unplaced)),
        placement=to_shard_placement(layout, pieces),
        problem=layout.problem,
        draining=tuple(sorted(leaving)),
        drained=tuple(int(s) for s in drained),
    )
