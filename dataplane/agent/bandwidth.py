"""The agent's hydration bandwidth: one token bucket shared by every copy.

Reads served to pods and peers never take from it; only hydration (copies from peers, the
source, erasure rebuilds) does, so a node busy repairing still serves its pods.
"""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """``rate`` bytes per second with a bucket ``burst`` bytes deep (``rate <= 0``: unbounded).

    :meth:`take` blocks until the bytes are available; a request larger than the bucket waits
    for the whole amount (the bucket may go into debt), so large chunks are never starved.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._tokens = float(self.burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> float:
        """Consume ``nbytes``; returns the seconds waited."""
        if self.rate <= 0 or nbytes <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= nbytes
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)
        return wait
