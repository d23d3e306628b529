"""Rebalances: bounded rounds that bring a placement back to the rule and to its weight shares.

Like a storage balancer, :func:`rebalance` starts from the current placement and moves only what
must move: pieces on gone or ineligible nodes and pieces that break the failure-domain rule are
relocated first (always), then pieces move from nodes above ``target * (1 + tolerance)`` to nodes
below ``target * (1 - tolerance)`` (see :func:`placement.assignments.balance`), at most
``max_moves_per_round`` of them per call. Call it again for the next round until
:attr:`PlacementResult.moves <placement.placements.PlacementResult.moves>` is empty.
"""

from __future__ import annotations

from collections.abc import Sequence

from placement.placements import PlacementResult, plan
from placement.settings import DEFAULT_SETTINGS, PlacementSettings
from topology.datasets import DataSetSpec, ShardPlacement
from topology.nodes import Node


def rebalance(
    nodes: Sequence[Node],
    spec: DataSetSpec,
    current: ShardPlacement,
    *,
    weight: str = "ephemeral-storage",
    tolerance: float = 0.05,
    max_moves_per_round: int | None = None,
    seed: int = 0,
    settings: PlacementSettings | None = None,
) -> PlacementResult:
    """One balancing round from ``current``.

    Parameters
    ----------
    nodes, spec, weight, seed, settings:
        As for :func:`~placement.placements.place`.
    current:
        The placement now in effect.
    tolerance:
        Band around each node's target load (fraction; ``0.05`` = +-5%).
    max_moves_per_round:
        Most balancing moves in this round (``None``: as many as needed). Pieces that must move
        because their node is gone or ineligible or because they break the rule always move and
        do not count against it.

    Returns
    -------
    PlacementResult
        The new placement, its moves from ``current`` and a report.

    Raises
    ------
    PlacementError
        If the redundancy cannot be honoured on these nodes.
    ValueError
        If ``tolerance`` is outside ``[0, 1)`` or ``max_moves_per_round`` is negative.
    """
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    if max_moves_per_round is not None and max_moves_per_round < 0:
        raise ValueError(f"max_moves_per_round must be >= 0, got {max_moves_per_round}")
    return plan(
        nodes,
        spec,
        current,
        weight=weight,
        seed=seed,
        tolerance=tolerance,
        budget=max_moves_per_round,
        settings=settings or DEFAULT_SETTINGS,
    )
