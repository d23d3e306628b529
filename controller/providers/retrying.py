"""Retrying cloud calls: exponential backoff with full jitter for throttling and 5xx answers.

``delay(n) = uniform(0, min(cap_s, base_s * 2**n))`` before retry ``n`` (full jitter spreads the
retries of many callers so they do not throttle again in step). Only errors the cloud marks as
transient are retried; everything else is raised at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from controller.providers import ProviderError

T = TypeVar("T")

#: AWS error codes that mean "slow down" or "try again".
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "ServerException",
    }
)


@dataclass(slots=True)
class Backoff:
    """Retry policy; ``sleep`` and ``rng`` are injectable so tests run on a simulated clock."""

    attempts: int = 6
    base_s: float = 0.2
    cap_s: float = 20.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    sleep: Callable[[float], None] = time.sleep

    def delay_s(self, attempt: int) -> float:
        return self.rng.uniform(0.0, min(self.cap_s, self.base_s * 2**attempt))

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying retryable :class:`ProviderError` up to ``attempts`` times.

        Raises
        ------
        ProviderError
            The last error when attempts are exhausted, or the first non-retryable one.
        """
        for attempt in range(self.attempts):
            try:
                return fn()
            except ProviderError as exc:
                if not exc.retryable or attempt == self.attempts - 1:
                    raise
                self.sleep(self.delay_s(attempt))
        raise AssertionError("unreachable")  # pragma: no cover


def is_retryable(code: str, http_status: int) -> bool:
    """Throttling codes and any 5xx answer are transient."""
    return code in RETRYABLE_CODES or http_status >= 500
