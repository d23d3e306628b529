"""Reading request bodies safely: size-limited before parsing, decoded with orjson.

A body larger than ``max_body_bytes`` is refused with ``413`` as soon as that is known: from
``Content-Length`` before reading anything, or while streaming a chunked body, never after
buffering it whole. JSON is decoded by orjson, which refuses nesting deeper than 1,024 levels
(a real Pod or Node nests about a dozen), so a deeply nested body is a ``400``, not a stack
overflow. Every failure is a :class:`BodyError` with the status and a message naming the problem.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from topology.errors import KblError


class BodyError(KblError):
    """A request body that cannot be used; ``status`` is 400 or 413."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The decoded JSON body of ``request``.

    Raises
    ------
    BodyError
        413 when the body exceeds ``max_bytes``; 400 when it is empty or not JSON.
    """
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise BodyError(400, f"Content-Length {length!r} is not a number") from None
        if declared > max_bytes:
            raise BodyError(413, f"request body of {declared} bytes exceeds the limit of {max_bytes} bytes (max_body_bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyError(413, f"request body exceeds the limit of {max_bytes} bytes (max_body_bytes)")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise BodyError(400, "empty request body: expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, f"request body is not valid JSON: {exc}") from None
