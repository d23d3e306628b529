"""Running the extender: feeding the cache from informers and serving the app under uvicorn.

:func:`start_informers` wires one :class:`~placement.watching.Informer` per resource into
:meth:`ClusterState.apply` (events) and :meth:`ClusterState.replace` (relists), so the state
becomes ready after every resource's first full list. :func:`serve` runs the app under uvicorn
on one event loop, with TLS when a certificate and key are given (kube-scheduler's
``enableHTTPS``), and stops the informers on the way out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn

from extender.app import create_app
from extender.state import ClusterState
from placement.kubeapi import DATASETS, KBLS, NODES, PODS, KubeApi, Resource, WatchEvent
from placement.watching import Informer, InformerSettings

log = logging.getLogger(__name__)

#: What the extender watches: topology, load, data and dedicated groups.
WATCHED: tuple[Resource, ...] = (NODES, PODS, DATASETS, KBLS)


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


def config(app: Any, options: ServerOptions) -> uvicorn.Config:
    """The uvicorn configuration: one process, one loop, no access log on the hot path."""
    return uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        ssl_certfile=options.tls_cert,
        ssl_keyfile=options.tls_key,
        access_log=False,
        log_level=options.log_level,
        lifespan="on",
        server_header=False,
    )


def serve(state: ClusterState, options: ServerOptions, api: KubeApi | None = None, informers: Sequence[Informer] = ()) -> None:
    """Serve until interrupted; stops ``informers`` afterwards."""
    app = create_app(state, api=api)
    server = uvicorn.Server(config(app, options))
    try:
        server.run()
    finally:
        for informer in informers:
            informer.stop()
