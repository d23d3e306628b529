"""Times as Kubernetes writes them: RFC 3339 strings to epoch seconds and back, in one place.

The API server writes ``metav1.Time`` (``2026-11-30T08:00:00Z``) and ``metav1.MicroTime``
(``2026-11-30T08:00:00.123456Z``); kbl writes the same forms. Every module that reads or writes a
time goes through these functions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_datetime(text: str) -> datetime:
    """An RFC 3339 time (``Z`` or an offset) as a datetime; naive when the text has no zone.

    Raises
    ------
    ValueError
        If the text is not an ISO 8601 / RFC 3339 time.
    """
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_time(text: Any) -> float | None:
    """Epoch seconds of an RFC 3339 time (``Z`` or an offset; UTC when it has none), or ``None``
    if absent or malformed."""
    if not text or not isinstance(text, str):
        return None
    try:
        parsed = parse_datetime(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_time(epoch_s: float) -> str:
    """``metav1.Time``: whole seconds, UTC, ``Z``."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(epoch_s: float) -> str:
    """``metav1.MicroTime``: microseconds, UTC, ``Z`` (Leases, Events)."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


__all__ = ["format_micro_time", "format_time", "parse_datetime", "parse_time"]
