"""Locality levels and what reading across them costs.

Two places in the cluster share a *locality level*: the smallest failure domain containing both
(same node, same rack, same zone, same region, or nothing: remote). :class:`LocalityCosts` puts a
configurable price on one byte read across each level; the defaults reflect that a rack hop is
cheap, a zone hop costs bandwidth and money (cloud cross-AZ transfer), and a region hop much more.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import IntEnum


class Level(IntEnum):
    """The smallest domain two places share; lower is closer."""

    NODE = 0
    RACK = 1
    ZONE = 2
    REGION = 3
    REMOTE = 4

    @property
    def label(self) -> str:
        return self.name.lower()


LEVELS: tuple[Level, ...] = tuple(Level)


@dataclass(frozen=True, slots=True)
class LocalityCosts:
    """Relative cost of reading one byte across each locality level (unitless, >= 0).

    Costs must not decrease with distance: ``node <= rack <= zone <= region <= remote``.
    """

    node: float = 0.0
    rack: float = 1.0
    zone: float = 4.0
    region: float = 16.0
    remote: float = 64.0

    def __post_init__(self) -> None:
        values = self.as_tuple()
        if any(v < 0 for v in values):
            raise ValueError("locality costs must be >= 0")
        if any(a > b for a, b in itertools.pairwise(values)):
            raise ValueError("locality costs must not decrease with distance (node <= rack <= zone <= region <= remote)")

    def as_tuple(self) -> tuple[float, float, float, float, float]:
        return (self.node, self.rack, self.zone, self.region, self.remote)

    def of(self, level: Level) -> float:
        """The cost of one byte read across ``level``."""
        return self.as_tuple()[int(level)]
