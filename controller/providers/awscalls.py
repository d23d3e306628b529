"""Calling boto3 the kbl way: AWS errors turned into :class:`ProviderError`, retried with backoff.

One function, :func:`aws_call`, wraps every boto3 operation the adapters make, so throttling and
5xx answers are retried the same way everywhere and callers see one error type with the AWS code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from controller.providers import CapacityUnavailableError, ProviderError
from controller.providers.retrying import Backoff, is_retryable

CAPACITY_CODES = frozenset({"InsufficientInstanceCapacity", "InsufficientCapacity", "UnfulfillableCapacity"})


def translate(exc: ClientError) -> ProviderError:
    """A botocore ``ClientError`` as a :class:`ProviderError` carrying the AWS code."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in CAPACITY_CODES:
        return CapacityUnavailableError(code, message, retryable=False)
    return ProviderError(code, message, retryable=is_retryable(code, status))


def aws_call(backoff: Backoff, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """``fn(**kwargs)`` with AWS errors translated and transient ones retried.

    Raises
    ------
    ProviderError
        With the AWS error code, after retries for throttling and 5xx.
    """

    def once() -> Any:
        try:
            return fn(**kwargs)
        except ClientError as exc:
            raise translate(exc) from exc
        except BotoCoreError as exc:  # connection errors are transient
            raise ProviderError(type(exc).__name__, str(exc), retryable=True) from exc

    return backoff.call(once)


def has_code(exc: ProviderError, *codes: str) -> bool:
    return exc.code in codes
