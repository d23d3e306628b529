"""Decisions about where things go, and the side that carries them out.

Pure planners (no I/O imports, enforced by ``.importlinter``): replica and erasure placement over
failure domains, rebalancing with minimal movement, repair plans, durability checks and capacity
plans. The I/O side executes them: the Kubernetes API behind :mod:`kube.api`, the
companion controller and the cloud providers.
"""

from placement.durability import DomainLoss, DurabilityReport, NodeFailureLoss, SafetyVerdict, durability, removal_is_safe
from placement.placements import Move, PlacementResult, place
from placement.rebalances import rebalance
from placement.repairs import Rebuild, RepairPlan, repair_plan
from placement.reports import Balance, PlacementReport, Spread
from placement.settings import PlacementSettings

__all__ = [
    "Balance",
    "DomainLoss",
    "DurabilityReport",
    "Move",
    "NodeFailureLoss",
    "PlacementReport",
    "PlacementResult",
    "PlacementSettings",
    "Rebuild",
    "RepairPlan",
    "SafetyVerdict",
    "Spread",
    "durability",
    "place",
    "rebalance",
    "removal_is_safe",
    "repair_plan",
]
