"""Utilization feedback: grow above ``high``, shrink below ``low`` (hysteresis), with a cooldown."""

from __future__ import annotations

import math

from placement.capacity.states import CapacitySettings, GroupPlan, Utilization, float_annotation, status_time
from topology import labels

#: ``status.nodeGroups[]`` key of the last utilization-driven resize (epoch seconds).
LAST_SCALE_KEY = "lastUtilizationScale"


def utilization_target(plan: GroupPlan, util: Utilization, now_s: float, settings: CapacitySettings) -> None:
    """Grow above ``high``, shrink below ``low`` (hysteresis), at most once per cooldown.

    The value compared is the metric named by ``kbl.io/scale-on`` (default: the larger of CPU and
    memory). Growing asks for ``ceil(n * value / high)`` nodes; shrinking for ``n - 1``.
    """
    kbl = plan.kbl
    on = kbl.annotations.get(labels.SCALE_ON, "")
    value = {"cpu": util.cpu, "memory": util.memory, "prometheus": util.metric}.get(on)
    if not on:
        value = max((v for v in (util.cpu, util.memory) if v is not None), default=None)
    if value is None:
        return
    high = float_annotation(kbl, labels.SCALE_UP_ABOVE, settings.utilization_high)
    low = float_annotation(kbl, labels.SCALE_DOWN_BELOW, settings.utilization_low)
    last = status_time(kbl, plan.name, LAST_SCALE_KEY)
    if last is not None and now_s - last < settings.utilization_cooldown_s:
        plan.utilization = plan.current  # hold the size during the cooldown
        return
    n = len(plan.nodes)
    if value > high and n:
        plan.utilization = max(math.ceil(n * value / high), n + 1)
        plan.reasons.append(f"utilization {value:.2f} above {high:.2f}")
    elif value < low and n:
        plan.utilization = -(n - 1) - 1  # marker: shrink allowed to n - 1 (negative means "at most")
        plan.reasons.append(f"utilization {value:.2f} below {low:.2f}")
    else:
        plan.utilization = plan.current  # in the band: hold
