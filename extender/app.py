"""The HTTP application: routes, status codes and encoding; the deciding happens elsewhere.

:func:`create_app` wires a :class:`~extender.state.ClusterState` to FastAPI routes:
``POST {prefix}/filter``, ``/prioritize``, ``/bind``, ``/preempt`` speaking kube-scheduler's
extender protocol (:mod:`extender.messages`), and ``GET /healthz``, ``/readyz``, ``/metrics``.
Bodies are read by :mod:`extender.bodies` (413 before the full read when too large), replies
encoded with orjson. A malformed request gets ``400`` with ``{"Error": "<what is wrong>"}``:
kube-scheduler treats any non-200 as a failed call (for filter that fails the attempt, exactly
as a set ``Error`` would; prioritize errors are ignored), and a distinct status keeps broken
callers visible in the request metrics. Handlers are ``async`` and do their (millisecond)
work inline; only ``/bind`` leaves the event loop, to call the API server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from extender import admission, messages
from extender.binding import bind
from extender.bodies import BodyError, read_json
from extender.eventing import EventRecorder
from extender.filtering import decide, preempt
from extender.framework import Cycle, Framework
from extender.metrics import CONTENT_TYPE, ExtenderMetrics
from extender.narrowing import GateController
from extender.openapi import document
from extender.ranking import Missed, rank
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from extender.wishes import Wish
from kube.api import KubeApi
from topology.errors import ObjectError, ProtocolError

log = logging.getLogger(__name__)

JSON = "application/json"


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type=JSON)


def _encoded(body: bytes) -> Response:
    return Response(body, media_type=JSON)


def create_app(
    state: ClusterState, settings: ExtenderSettings | None = None, api: KubeApi | None = None, narrowing: GateController | None = None
) -> FastAPI:
    """The extender app over ``state``.

    Parameters
    ----------
    state:
        The cache to decide from (fed elsewhere: informers, a snapshot, a harness).
    settings:
        Defaults to ``state.settings``.
    api:
        The Kubernetes API for bindings and events; ``None`` is snapshot mode (bind records
        the assignment in the cache only, events are counted and logged).
    narrowing:
        The gate controller (``settings.narrowing``): the webhook gates pods while it is alive.
    """
    settings = settings or state.settings
    events = EventRecorder(settings, api)
    metrics = ExtenderMetrics(state, events)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        events.close()

    app = FastAPI(title="kbl scheduler extender", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.kbl_state = state
    fw = Framework(state)
    app.state.framework = fw
    app.state.events = events
    app.state.metrics = metrics

    def verb(name: str, handle: Callable[[Any], Awaitable[bytes]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            with metrics.observe(name) as code:
                try:
                    body = await read_json(request, settings.max_body_bytes)
                    return _encoded(await handle(body))
                except BodyError as exc:
                    code[0] = exc.status
                    return _json({"Error": str(exc)}, exc.status)
                except (ProtocolError, ObjectError) as exc:
                    code[0] = 400
                    return _json({"Error": f"malformed {name} request: {exc}"}, 400)

        endpoint.__name__ = name
        return endpoint

    def pod_cycle(raw: Any) -> Cycle:
        """The pod's per-pod state, computed once for its filter, prioritize and preempt calls."""
        with state.lock:
            pod = fw.pod(raw)
            state.remember(pod)
            return fw.cycle(pod)

    def report(name: str, raw_pod: Any, wish: Wish) -> None:
        if wish.key is not None and wish.problem is not None:
            metrics.unusable.labels(name).inc()
            events.record(raw_pod, "KblDataWishIgnored", f"kbl could not use this pod's data annotations: {wish.problem}", "Warning")

    async def do_filter(body: Any) -> bytes:
        args = messages.parse_args(body)
        cycle = pod_cycle(args.pod)
        verdict = decide(fw, cycle, args.names, args.key)
        report("filter", args.pod, cycle.wish)
        return orjson.dumps(messages.filter_reply(args, verdict.passing, verdict.failed, verdict.unresolvable))

    async def do_prioritize(body: Any) -> bytes:
        args = messages.parse_args(body)  # parse
        cycle = pod_cycle(args.pod)  # resolve the wish (once per pod, shared with filter)
        with state.lock:
            ranking = rank(fw, cycle, args.names, key=args.key)  # costs -> normalise
            reply = fw.reply(args.names, ranking.scores, args.key)  # reply
        report("prioritize", args.pod, ranking.wish)
        if ranking.missed is not None:
            metrics.missed.inc()
            events.record(args.pod, "KblBetterDataNodeNotOffered", _missed_message(ranking.missed), "Warning")
        return reply

    async def do_bind(body: Any) -> bytes:
        request = messages.parse_bind(body)
        error = await run_in_threadpool(bind, state, api, request)
        return orjson.dumps({"Error": error})

    async def do_preempt(body: Any) -> bytes:
        request = messages.parse_preempt(body)
        return orjson.dumps(messages.preempt_reply(preempt(fw, pod_cycle(request.pod), request.victims)))

    # Plain Starlette routes: the handlers read the body themselves, so FastAPI's per-request
    # dependency and validation machinery would only add latency.
    for name, handle in (("filter", do_filter), ("prioritize", do_prioritize), ("bind", do_bind), ("preempt", do_preempt)):
        app.add_route(settings.path(name), verb(name, handle), methods=["POST"], include_in_schema=False)

    openapi_body = orjson.dumps(document(prefix=settings.url_prefix))

    async def openapi() -> Response:
        return Response(openapi_body, media_type="application/json")

    async def healthz() -> Response:
        return Response(b"ok", media_type="text/plain")

    async def readyz() -> Response:
        if state.ready:
            return Response(b"ready", media_type="text/plain")
        return Response(b"not ready: the cache has not finished its first full sync", status_code=503, media_type="text/plain")

    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    gate = narrowing.should_gate if narrowing is not None and settings.narrowing else None
    app.add_route(admission.MUTATE_PATH, admission.endpoint(state, settings, gate), methods=["POST"], include_in_schema=False)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.add_api_route(settings.path("openapi.json"), openapi, methods=["GET"], include_in_schema=False)
    return app


def _missed_message(missed: Missed) -> str:
    saved = (missed.offered_cost - missed.node_cost) / missed.worst_cost if missed.worst_cost > 0 else 0.0
    return (
        f"node {missed.node} would serve this pod's data better than every one of the {missed.offered} candidate nodes "
        f"kube-scheduler offered (best offered: {missed.best_offered}; {saved:.0%} of the all-remote read cost saved). "
        "Either an in-tree filter rejected it (resources, affinity, taints) or kube-scheduler stopped searching early: "
        "set percentageOfNodesToScore: 100 in the scheduler configuration"
    )
