"""Running the extender: feeding the cache from informers and serving the app under uvicorn.

:func:`start_informers` wires one :class:`~kube.watching.Informer` per resource into
:meth:`ClusterState.apply` (events) and :meth:`ClusterState.replace` (relists), so the state
becomes ready after every resource's first full list. :func:`serve` runs the app under uvicorn
on one event loop, with TLS when a certificate and key are given (kube-scheduler's
``enableHTTPS``), and stops the informers on the way out.

The cache is tens of thousands of long-lived containers (node objects, labels, placements);
CPython's full garbage collection walks all of them, which took about 50 ms with 5,000 nodes,
a stall that lands on whichever request triggers it. Once the cache is loaded (snapshot) or
first synced (watch), :func:`freeze_heap` moves everything alive into the permanent generation
(``gc.freeze``), so later collections only walk what requests allocate.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn

from extender.app import create_app
from extender.narrowing import GateController
from extender.state import ClusterState
from kube.api import DATASETS, KBLS, NODES, PLACEMENT_SLICES, PODS, KubeApi, Resource, WatchEvent
from kube.watching import Informer, InformerSettings

log = logging.getLogger(__name__)

#: What the extender watches: topology, load, data (DataSets and the PlacementSlices of the large
#: ones' targets) and dedicated groups. Every one must have listed before the extender is ready.
WATCHED: tuple[Resource, ...] = (NODES, PODS, DATASETS, PLACEMENT_SLICES, KBLS)


def start_informers(
    state: ClusterState, api: KubeApi, resources: Sequence[Resource] = WATCHED, settings: InformerSettings | None = None
) -> list[Informer]:
    """Start one informer per resource feeding ``state``; returns them (call ``stop()`` on each)."""
    informers = []
    for resource in resources:

        def on_event(event: WatchEvent, resource: Resource = resource) -> None:
            state.apply(event, resource)

        def on_relist(items: Iterable[Mapping[str, Any]], resource: Resource = resource) -> None:
            state.replace(resource, items)

        informers.append(Informer(api, resource, on_event=on_event, on_relist=on_relist, settings=settings).start())
    return informers


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Where and how to listen; ``tls_cert``/``tls_key`` are PEM file paths (both or neither)."""

    host: str = "0.0.0.0"  # noqa: S104  (a pod serves on all interfaces; the Service decides exposure)
    port: int = 8080
    tls_cert: str | None = None
    tls_key: str | None = None
    log_level: str = "info"


def _fastest(module: str, name: str) -> str:
    """``name`` when ``module`` is installed (uvloop's event loop, httptools' HTTP parser), else ``"auto"``."""
    return name if importlib.util.find_spec(module) is not None else "auto"


def config(app: Any, options: ServerOptions) -> uvicorn.Config:
    """The uvicorn configuration: one process, one loop, no access log on the hot path; uvloop
    and httptools when installed (they are dependencies; ``auto`` falls back to asyncio/h11)."""
    return uvicorn.Config(
        app,
        loop=_fastest("uvloop", "uvloop"),
        http=_fastest("httptools", "httptools"),
        host=options.host,
        port=options.port,
        ssl_certfile=options.tls_cert,
        ssl_keyfile=options.tls_key,
        access_log=False,
        log_level=options.log_level,
        lifespan="on",
        server_header=False,
    )


def freeze_heap() -> None:
    """Collect once, then move every live object to the permanent generation (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


def freeze_when_ready(state: ClusterState, stop: threading.Event, poll_s: float = 0.5) -> threading.Thread:
    """Call :func:`freeze_heap` once ``state`` is ready (after the first full sync), in a thread."""

    def wait() -> None:
        while not stop.wait(poll_s):
            if state.ready:
                freeze_heap()
                log.info("cache synced: %d objects moved out of the collector's way", gc.get_freeze_count())
                return

    thread = threading.Thread(target=wait, daemon=True, name="freeze-when-ready")
    thread.start()
    return thread


def serve(
    state: ClusterState,
    options: ServerOptions,
    api: KubeApi | None = None,
    informers: Sequence[Informer] = (),
    narrowing: GateController | None = None,
) -> None:
    """Serve until interrupted; stops ``informers`` afterwards.

    The heap is frozen as soon as the state is ready (at once for a snapshot, after the first
    full sync for watches): see the module docstring.
    """
    app = create_app(state, api=api, narrowing=narrowing)
    server = uvicorn.Server(config(app, options))
    stop = threading.Event()
    if state.ready:
        freeze_heap()
    else:
        freeze_when_ready(state, stop)
    try:
        server.run()
    finally:
        stop.set()
        for informer in informers:
            informer.stop()
