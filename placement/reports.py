"""Placement reports: balance, domain spread, rule violations and movement of one placement.

Balance is measured per eligible node as ``ratio = load / target`` (bytes held over the node's
water-filled weight share, see :mod:`placement.layouts`), so a perfect placement has every ratio
at 1 whatever the weights::

    max/mean = max(ratio) / mean(ratio)     min/mean = min(ratio) / mean(ratio)
    CV       = std(ratio) / mean(ratio)     (population standard deviation)

Spread counts, per level (host, rack, zone), the distinct domains each shard's pieces use and the
most pieces of one shard in one domain. A violation is a shard with a missing piece, two pieces
on one node, or more than the rule's cap in one failure domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from placement.layouts import LEVELS, Layout

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Balance:
    """Load over target across nodes: ``max/mean``, ``min/mean`` and the coefficient of variation."""

    max_over_mean: float
    min_over_mean: float
    cv: float

    def __str__(self) -> str:
        return f"max/mean {self.max_over_mean:.4f}, min/mean {self.min_over_mean:.4f}, CV {100 * self.cv:.2f}%"


@dataclass(frozen=True, slots=True)
class Spread:
    """How one level's domains are used: distinct domains per shard and the worst crowding."""

    level: str
    domains: int
    min_distinct: int
    mean_distinct: float
    max_per_domain: int

    def __str__(self) -> str:
        return (
            f"{self.level}: {self.domains} domains, {self.min_distinct}-{self.mean_distinct:.2f} distinct per shard, "
            f"at most {self.max_per_domain} pieces of a shard in one"
        )


@dataclass(frozen=True, slots=True)
class PlacementReport:
    """What a planner did and how good the result is."""

    nodes: int
    failure_domain: str
    cap: int
    balance: Balance
    spread: tuple[Spread, ...]
    violations: int
    moved_pieces: int
    moved_bytes: int
    rebuilt_pieces: int
    fresh: bool

    def lines(self) -> list[str]:
        """A short human summary (the ``kbl place`` report)."""
        what = "fresh placement" if self.fresh else f"{self.moved_pieces} pieces moved ({self.moved_bytes / 2**30:,.1f} GiB)"
        if self.rebuilt_pieces:
            what += f", {self.rebuilt_pieces} missing pieces placed"
        out = [
            f"{what} over {self.nodes} eligible nodes; failure domain {self.failure_domain} (at most {self.cap} per domain)",
            f"balance (load / weight share): {self.balance}",
        ]
        out.extend(f"spread {s}" for s in self.spread)
        out.append(f"rule violations: {self.violations}")
        return out


def balance_of(layout: Layout, loads: F64) -> Balance:
    """The :class:`Balance` of per-node ``loads`` (bytes) against the layout's targets."""
    live = layout.targets > 0
    if not live.any():
        return Balance(1.0, 1.0, 0.0)
    ratio = loads[live] / layout.targets[live]
    mean = float(ratio.mean())
    if mean <= 0:
        return Balance(0.0, 0.0, 0.0)
    return Balance(float(ratio.max()) / mean, float(ratio.min()) / mean, float(ratio.std()) / mean)


def distinct_per_row(dom: I64) -> I64:
    """Distinct non-negative values per row."""
    s = np.sort(dom, axis=1)
    valid = s >= 0
    new = np.ones(s.shape, dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    out: I64 = (new & valid).sum(axis=1).astype(np.int64)
    return out


def max_same_per_row(dom: I64) -> I64:
    """Most occurrences of one non-negative value per row."""
    best = np.zeros(len(dom), dtype=np.int64)
    for q in range(dom.shape[1]):
        same = ((dom == dom[:, q : q + 1]) & (dom >= 0)).sum(axis=1)
        best = np.maximum(best, np.where(dom[:, q] >= 0, same, 0))
    return best


def spread_of(layout: Layout, pieces: I32) -> tuple[Spread, ...]:
    """Domain spread of ``pieces`` at host, rack and zone."""
    out = []
    present = pieces >= 0
    for level in LEVELS:
        ids = layout.levels[level]
        dom = np.where(present, ids[np.maximum(pieces, 0)], -1) if layout.size else np.full(pieces.shape, -1)
        distinct = distinct_per_row(dom)
        out.append(
            Spread(
                level=level,
                domains=len(np.unique(ids)),
                min_distinct=int(distinct.min()) if len(distinct) else 0,
                mean_distinct=float(distinct.mean()) if len(distinct) else 0.0,
                max_per_domain=int(max_same_per_row(dom).max()) if len(dom) else 0,
            )
        )
    return tuple(out)


def violating_shards(layout: Layout, pieces: I32) -> I64:
    """Indexes of shards that break the rule or miss a piece (pieces index ``layout.names``)."""
    present = pieces >= 0
    missing = ~present.all(axis=1)
    if layout.size == 0:
        out: I64 = np.flatnonzero(missing | present.any(axis=1)).astype(np.int64)
        return out
    node_rep = max_same_per_row(np.where(present, pieces, -1).astype(np.int64)) > 1
    dom = np.where(present, layout.domains[np.maximum(pieces, 0)], -1)
    crowded = max_same_per_row(dom) > layout.cap
    result: I64 = np.flatnonzero(missing | node_rep | crowded).astype(np.int64)
    return result
