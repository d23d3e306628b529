"""The one harness that serves an ASGI app on a real loopback socket, for tests and benchmarks.

:class:`LocalServer` runs uvicorn (configured exactly as ``kbl serve`` does, by
:func:`extender.serving.config`: uvloop, httptools, optional TLS) on ``127.0.0.1`` in a daemon
thread, on an ephemeral port the kernel picks at bind time (no race between choosing and
binding), and waits until it accepts connections; leaving the ``with`` block shuts it down and
joins the thread. :func:`free_port` is for the few callers that must name a port before a
*separate process* binds it (``kbl serve`` as a subprocess). Nothing else listens, nothing
leaves the machine.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from extender.serving import ServerOptions, config
from topology.errors import KblError


def free_port() -> int:
    """A port the kernel just gave out on 127.0.0.1 (ephemeral range), for another process to bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalServer:
    """An ASGI app served by uvicorn on ``127.0.0.1:<ephemeral port>`` in a thread.

    Parameters
    ----------
    app:
        The ASGI application (a FastAPI app).
    tls:
        ``(cert, key)`` PEM file paths to serve HTTPS, or ``None`` for plain HTTP.
    startup_timeout_s:
        How long to wait for the server to accept connections.

    Examples
    --------
    >>> with LocalServer(app) as server:  # doctest: +SKIP
    ...     httpx.post(server.url + "/filter", ...)
    """

    def __init__(self, app: Any, *, tls: tuple[str, str] | None = None, startup_timeout_s: float = 15.0) -> None:
        self.app = app
        self.tls = tls
        self.startup_timeout_s = startup_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https`` when serving TLS)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> LocalServer:
        """Bind, start uvicorn and wait until it serves.

        Raises
        ------
        KblError
            If the server does not start within ``startup_timeout_s``.
        """
        cert, key = self.tls if self.tls else (None, None)
        # Port 0: the kernel picks a free port when uvicorn binds; read it back from the server.
        options = ServerOptions(host="127.0.0.1", port=0, tls_cert=cert, tls_key=key, log_level="warning")
        server = uvicorn.Server(config(self.app, options))
        self._server = server
        self._thread = threading.Thread(target=server.run, name="kbl-local-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise KblError(f"local server did not start within {self.startup_timeout_s} s")
            time.sleep(0.01)
        self.port = int(server.servers[0].sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit, join its thread and close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
