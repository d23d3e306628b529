"""Progress: each DataSet's bytes-ready rate, as the reconciler observes it between passes, and the
estimated time to ``Ready`` it gives (``status.estimatedReadyTime``).

The rate is an exponentially weighted mean of samples ``max(0, ready_now - ready_then) / dt``
taken at least ``sample_s`` apart; a sample ``dt`` seconds after the previous one weighs
``1 - exp(-dt / smoothing_s)`` (so the mean forgets at the same pace whatever the pass rhythm,
and a stall drives it down within a few ``smoothing_s``). Unknown until two observations
``sample_s`` apart. Pure: the loop passes the clock.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from topology.times import format_time, parse_time


@dataclass(slots=True)
class _Rate:
    ready: int
    at: float
    per_s: float | None = None


class ProgressMeter:
    """Smoothed bytes-ready rate per DataSet key (module docstring)."""

    def __init__(self, *, smoothing_s: float = 300.0, sample_s: float = 10.0) -> None:
        self.smoothing_s = smoothing_s
        self.sample_s = sample_s
        self._rates: dict[str, _Rate] = {}

    def observe(self, key: str, ready: int, now: float) -> float | None:
        """Record ``ready`` bytes at ``now``; the smoothed rate in bytes per second (``None``: unknown)."""
        found = self._rates.get(key)
        if found is None:
            self._rates[key] = _Rate(ready, now)
            return None
        dt = now - found.at
        if dt < self.sample_s or dt <= 0:
            return found.per_s
        sample = max(0, ready - found.ready) / dt
        weight = 1.0 - math.exp(-dt / self.smoothing_s)
        found.per_s = sample if found.per_s is None else found.per_s + weight * (sample - found.per_s)
        found.ready, found.at = ready, now
        return found.per_s

    def forget(self, keep: Collection[str]) -> None:
        for key in [k for k in self._rates if k not in keep]:
            del self._rates[key]


def estimated_ready(remaining: int, rate: float | None, now: float) -> float | None:
    """When the last byte should be ready (epoch seconds): ``None`` when nothing remains or the rate
    is unknown or zero."""
    if remaining <= 0 or not rate or rate <= 0:
        return None
    return now + remaining / rate


def eta_text(eta: float | None, previous: object, now: float, *, slack_s: float = 60.0, slack: float = 0.1) -> str | None:
    """``status.estimatedReadyTime`` to write: ``previous`` kept while the new estimate is within
    ``max(slack_s, slack * time left)`` of it (an ETA that only wiggles writes nothing), else the
    new one; ``None`` (removed) when unknown."""
    if eta is None:
        return None
    before = parse_time(previous) if isinstance(previous, str) else None
    if before is not None and abs(eta - before) <= max(slack_s, slack * max(0.0, eta - now)):
        return str(previous)
    return format_time(eta)


__all__ = ["ProgressMeter", "estimated_ready", "eta_text"]
