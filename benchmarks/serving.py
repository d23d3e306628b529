"""Serving an ASGI extender app on a real loopback socket for the driver to call over HTTP.

:class:`LocalServer` binds ``127.0.0.1`` on an ephemeral port chosen by the kernel, runs uvicorn
in a daemon thread, and waits until it accepts connections; leaving the ``with`` block shuts it
down and joins the thread. Nothing else listens, nothing leaves the machine.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from topology.errors import KblError


class LocalServer:
    """An ASGI app served by uvicorn on ``127.0.0.1:<ephemeral port>`` in a thread.

    Parameters
    ----------
    app:
        The ASGI application (a FastAPI app).
    startup_timeout_s:
        How long to wait for the server to accept connections.

    Examples
    --------
    >>> with LocalServer(app) as server:  # doctest: +SKIP
    ...     httpx.post(server.url + "/filter", ...)
    """

    def __init__(self, app: Any, *, startup_timeout_s: float = 10.0) -> None:
        self.app = app
        self.startup_timeout_s = startup_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalServer:
        """Bind, start uvicorn and wait until it serves.

        Raises
        ------
        KblError
            If the server does not start within ``startup_timeout_s``.
        """
        # Port 0: the kernel picks a free port when uvicorn binds; read it back from the server.
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="auto")
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, name="kbl-bench-extender", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise KblError(f"extender server did not start within {self.startup_timeout_s} s")
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
