"""Real sockets for the reliability tests: the extender under uvicorn on 127.0.0.1, plain or TLS.

:func:`running` serves an app on an ephemeral loopback port in a background thread and stops it
on exit (TLS material comes from :func:`tests.certificates.self_signed`, for ``localhost``
and ``127.0.0.1``). :func:`raw_request` speaks HTTP/1.1 over a plain socket so a test controls
exactly which bytes are sent and when.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from benchmarks.serving import LocalServer


@contextlib.contextmanager
def running(app: Any, *, tls: tuple[str, str] | None = None) -> Iterator[int]:
    """Serve ``app`` on 127.0.0.1 until the block ends; yields the port (:class:`benchmarks.serving.LocalServer`)."""
    with LocalServer(app, tls=tls) as server:
        yield server.port


def read_reply(sock: socket.socket, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """``(status, body)`` of one HTTP/1.1 reply with a ``Content-Length``."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {data!r:.200}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (line.partition(":") for line in lines[1:]) if k.strip().lower() == "content-length")
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split(" ", 2)[1]), body[:length]
