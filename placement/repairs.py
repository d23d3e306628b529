"""Repair plans: what failed nodes took with them and where each missing piece is rebuilt.

After nodes fail (or leave), every shard that had a piece on them is *damaged*. With ``n``
surviving pieces and ``needed`` pieces to read it (1 for replicas, ``k`` for ``k + m`` erasure):

- *lost*: ``n < needed``, the shard cannot be rebuilt;
- *at risk*: ``n == needed``, one more failure loses it;
- otherwise merely *degraded*.

Every missing piece of a shard that is not lost gets a :class:`Rebuild`: a target node chosen by
the same bounded-load weighted rendezvous as :func:`~placement.placements.place`, among surviving
eligible nodes, never in a failure domain the shard already uses beyond the rule's cap, and a
rebuilt erasure piece keeps its index. Rebuilds are listed most urgent first (fewest survivors).
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

    For replicas any one source is enough; for erasure any ``needed`` of them.
    """

    shard: int
    piece: int
    to_node: str
    sources: tuple[str, ...]


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
        already missing count too).
    rebuilds:
        One :class:`Rebuild` per missing piece of every shard that is not lost, most urgent first.
    unplaceable:
        ``(shard, piece)`` pairs with no surviving node that keeps the failure-domain rule.
    placement:
        The placement once the rebuilds are done (lost and unplaceable pieces stay missing).
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

    def lines(self) -> list[str]:
        """A short human summary."""
        out = [
            f"{len(self.failed)} failed nodes: {len(self.damaged)} shards damaged, {len(self.at_risk)} at risk, "
            f"{len(self.lost)} lost; {len(self.rebuilds)} pieces to rebuild"
        ]
        if self.unplaceable:
            out.append(f"{len(self.unplaceable)} pieces have no node that keeps the rule: {self.problem or 'too few survivors'}")
        return out


def repair_plan(
    nodes: Sequence[Node],
    spec: DataSetSpec,
    placement: ShardPlacement,
    failed: Collection[str],
    *,
    weight: str = "ephemeral-storage",
    seed: int = 0,
    settings: PlacementSettings | None = None,
) -> RepairPlan:
    """Plan the rebuild of everything ``failed`` nodes held.

    Parameters
    ----------
    nodes:
        The cluster's nodes (failed ones may be listed or already absent; pieces on nodes not
        in ``nodes`` count as missing too).
    spec, weight, seed, settings:
        As for :func:`~placement.placements.place`.
    placement:
        The placement in effect before the failure.
    failed:
        Names of failed nodes.

    Returns
    -------
    RepairPlan
        Damaged, at-risk and lost shards and one :class:`Rebuild` per rebuildable missing piece.
        Never raises for too few survivors: it says so in :attr:`RepairPlan.problem` and lists
        the pieces it could not place.
    """
    cfg = settings or DEFAULT_SETTINGS
    gone = set(failed)
    survivors = [n for n in nodes if n.name not in gone]
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
    pieces = np.full((shards, width), -1, dtype=np.int32)
    ss, ww = min(shards, placement.shards), min(width, placement.width)
    lut = np.array([*(layout.index.get(n, -1) for n in placement.nodes), -1], dtype=np.int32)
    pieces[:ss, :ww] = lut[placement.pieces[:ss, :ww]]
    survivors_per_shard = (pieces >= 0).sum(axis=1)
    needed = spec.redundancy.needed
    damaged = np.flatnonzero(survivors_per_shard < width)
    lost = np.flatnonzero(survivors_per_shard < needed)
    at_risk = np.flatnonzero((survivors_per_shard == needed) & (survivors_per_shard < width))
    before = pieces.copy()
    rows = np.setdiff1d(damaged, lost)
    if len(rows) and layout.size:
        loads = assignments.loads_of(layout, pieces)
        assignments.fill(layout, pieces, loads, seed=seed, settings=cfg, rows=rows)
    lost_set = set(lost.tolist())
    unplaced = [(int(s), int(p)) for s, p in zip(*np.nonzero(pieces < 0), strict=True) if s not in lost_set]
    names = np.array([*layout.names, ""], dtype=object)
    rebuilds: list[tuple[int, int, int, Rebuild]] = []
    for s, p in zip(*np.nonzero((before < 0) & (pieces >= 0)), strict=True):
        srcs = tuple(str(names[i]) for i in before[s] if i >= 0)
        rebuilds.append((int(survivors_per_shard[s]), int(s), int(p), Rebuild(int(s), int(p), str(names[pieces[s, p]]), srcs)))
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
    )
