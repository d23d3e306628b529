"""Placement settings: the knobs of the pure planners, in one frozen dataclass with defaults.

Every planner (:func:`~placement.placements.place`, :func:`~placement.rebalances.rebalance`,
:func:`~placement.repairs.repair_plan`) takes an optional :class:`PlacementSettings`; the defaults
are the ones the benchmarks in BENCHMARKS.md were measured with. Tolerances are fractions of a
node's target load (``0.05`` = within +-5% of its weight share).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PlacementSettings:
    """Knobs of the placement planners.

    Attributes
    ----------
    fill_slack:
        While assigning new pieces (a fresh placement, rebuilds, pieces of removed nodes) a node
        accepts pieces up to ``target * (1 + fill_slack)`` bytes; beyond that the piece goes to
        the next node in its rendezvous order (bounded-load consistent hashing). A huge value
        turns the bound off (plain weighted rendezvous, the straw2-like baseline).
    fresh_tolerance:
        Balance band of a fresh placement: after assignment, pieces move until every node is
        within ``target * (1 +- fresh_tolerance)`` (when the failure-domain rule allows).
    stable_tolerance:
        Balance band of ``place(previous=...)``: only pieces needed to restore the invariants
        and bring every node within ``target * (1 +- stable_tolerance)`` move (issue 3: +-5%).
    candidates:
        How many best-ranked nodes per shard the assignment considers before falling back to a
        full scan (bounds memory on thousands of nodes: ``shards x candidates`` indexes).
    chunk_rows:
        Shards hashed at once against every node (bounds the ``chunk_rows x nodes`` score
        matrix, 8 bytes per entry).
    max_rounds:
        Upper bound on balancing rounds per call (each round moves many pieces at once).
    fill_spread:
        When set, a fill that completes an existing placement (a repair, the pieces of removed
        nodes) also gives no node more than ``fill_spread`` times the missing bytes divided by
        the eligible nodes (at least one piece) beyond its current load, so copies spread over
        many receivers instead of filling the emptiest nodes first; fresh placements are
        unchanged. ``None`` (default): only ``fill_slack`` bounds it. The placement reconciler
        sets it: a copy's time is per receiving node.
    min_band_pieces:
        Nodes outside ``target * (1 +- tolerance)`` give or take, and a balancing move may leave
        either end up to this many pieces (the DataSet's largest) from its target even where the
        tolerance is narrower, as long as the two nodes end closer to their targets: with about
        ten pieces per node +-5% is half a piece, and a node one piece above its target could
        give nothing, so nodes that joined stayed nearly empty (issue 24). ``0``: the plain band.
    hierarchical:
        ``True``: assign and balance by descents of the failure-domain tree
        (:mod:`placement.trees`, hierarchical rendezvous, ``O(levels x bucket size)`` per piece);
        ``False``: rank every node for every shard (the exact algorithm, kept as the oracle);
        ``None`` (default): the tree when ``shards x eligible nodes`` exceeds
        ``exact_pairs_limit``.
    exact_pairs_limit:
        Above this many ``shards x nodes`` pairs ``hierarchical=None`` descends the tree.
    spread_cost_limit:
        Spread pieces over the levels above the failure domain (racks, zones) when that moves
        no node's target by more than this fraction of its weight share; ``None`` never spreads
        above the failure domain (see :mod:`placement.layouts`).
    """

    fill_slack: float = 0.01
    fresh_tolerance: float = 0.01
    stable_tolerance: float = 0.05
    candidates: int = 64
    chunk_rows: int = 4096
    max_rounds: int = 64
    spread_cost_limit: float | None = 0.25
    fill_spread: float | None = None
    min_band_pieces: float = 1.0
    hierarchical: bool | None = None
    exact_pairs_limit: float = 2e8

    def __post_init__(self) -> None:
        if not self.fill_slack >= 0:
            raise ValueError("fill_slack must be >= 0")
        if not 0 <= self.fresh_tolerance < 1 or not 0 <= self.stable_tolerance < 1:
            raise ValueError("tolerances must be in [0, 1)")
        if not self.min_band_pieces >= 0 or not self.exact_pairs_limit >= 0:
            raise ValueError("min_band_pieces and exact_pairs_limit must be >= 0")
        if self.candidates < 1 or self.chunk_rows < 1 or self.max_rounds < 1:
            raise ValueError("candidates, chunk_rows and max_rounds must be positive")


DEFAULT_SETTINGS = PlacementSettings()
