"""The agent's read API (FastAPI): shards to readers, pieces to peers, health and metrics.

- ``GET /v1/namespaces/{ns}/datasets/{name}/shards/{i}``: the whole shard, ``Range: bytes=a-b``
  (single ranges: ``206`` + ``Content-Range``; ``416`` when unsatisfiable; several ranges are
  answered whole with ``200``, as RFC 9110 allows). A replica is read from local disk, else
  from the nearest holder (same zone first), else from the DataSet's source; an erasure-coded
  shard is decoded from ``k`` fragments, local ones first. ``?local=true`` answers from local
  disk only (``404`` otherwise): what peers ask each other, so a read never bounces.
- ``GET /v1/namespaces/{ns}/datasets/{name}/pieces/{i}/{key}``: a local piece for a peer
  (``key`` is ``replica`` or the fragment index), with its SHA-256 in ``X-Kbl-Sha256`` and the
  original shard length in ``X-Kbl-Shard-Bytes``: the receiver verifies before it renames.
- ``/healthz`` (alive), ``/readyz`` (DataSets and holdings listed once), ``/metrics``
  (Prometheus; counters only, no data, so it is not authenticated).

Every data route needs ``Authorization: Bearer <token>`` accepted by the agent's
:class:`~dataplane.agent.authenticating.Authenticator`; anything else gets ``401``. The identity
it yields must then be allowed by the :class:`~dataplane.agent.authorizing.Authorizer`:
``get datasets`` for shards, ``get datasets/pieces`` for pieces; ``403`` with the reason otherwise.
"""

# No `from __future__ import annotations`: FastAPI reads the route annotations, some of them local.

import logging
import re
from collections.abc import Iterator, Mapping
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dataplane.agent.authenticating import Authenticator, Identity
from dataplane.agent.authorizing import READ_PIECES, READ_SHARDS, Authorizer, Permission
from dataplane.agent.coding import CodingError, codec
from dataplane.agent.hydrating import Hydrator
from dataplane.agent.sources import SHA256_HEADER, SHARD_BYTES_HEADER, SourceError
from topology.datasets import DataSet, Erasure
from topology.holdings import REPLICA

log = logging.getLogger(__name__)

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class UnsatisfiableRangeError(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single ``Range`` header, ``None`` for the whole.

    Raises :class:`UnsatisfiableRangeError` for a range that starts past the end (``416``).
    """
    if not header or "," in header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise UnsatisfiableRangeError()
        return max(0, size - n), size
    start = int(first)
    end = size if not last else min(size, int(last) + 1)
    if start >= size or (last and int(last) < start):
        raise UnsatisfiableRangeError()
    return start, end


def _chunks(data: bytes, chunk: int) -> Iterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


def build_app(hydrator: Hydrator, auth: Authenticator, authorizer: Authorizer) -> FastAPI:
    """The read API of one agent."""
    app = FastAPI(title="kbl node agent", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = hydrator.metrics
    store = hydrator.store
    chunk = hydrator.settings.chunk_bytes

    def caller(authorization: Annotated[str | None, Header()] = None) -> Identity:
        scheme, _, token = (authorization or "").partition(" ")
        user = auth.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            metrics.auth_refused.inc()
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": 'Bearer realm="kbl-agent"'})
        return user

    Caller = Annotated[Identity, Depends(caller)]  # noqa: N806 - a local type alias, as FastAPI reads it

    def authorize(user: Identity, ns: str, name: str, permission: Permission) -> None:
        decision = authorizer.authorize(user, ns, name, permission)
        if not decision.allowed:
            metrics.authz_refused.inc()
            raise HTTPException(403, decision.reason)

    def dataset_of(ns: str, name: str) -> DataSet:
        with hydrator.lock:
            found = hydrator.view.datasets.get(f"{ns}/{name}")
        if found is None:
            raise HTTPException(404, f"DataSet {ns}/{name} not found")
        return found

    def file_stream(path: object, start: int, end: int) -> Iterator[bytes]:
        with open(str(path), "rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                block = f.read(min(chunk, left))
                if not block:
                    break
                left -= len(block)
                yield block

    def ranged(size: int, range_header: str | None, body: object, what: str) -> Response:
        """A 200/206/416 response for ``body(start, end) -> Iterator[bytes]``."""
        try:
            bounds = parse_range(range_header, size)
        except UnsatisfiableRangeError:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        start, end = bounds if bounds is not None else (0, size)
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start)}
        status = 200
        if bounds is not None:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        metrics.served_bytes.labels(what).inc(end - start)
        assert callable(body)
        return StreamingResponse(body(start, end), status_code=status, headers=headers, media_type="application/octet-stream")

    @app.get("/healthz")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz")
    def readyz() -> PlainTextResponse:
        if not hydrator.view.synced:
            return PlainTextResponse("not synced", status_code=503)
        return PlainTextResponse("ok")

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/namespaces/{ns}/datasets/{name}/pieces/{shard}/{key}")
    def piece(ns: str, name: str, shard: int, key: str, user: Caller) -> Response:
        authorize(user, ns, name, READ_PIECES)
        dataset = dataset_of(ns, name)
        with hydrator.lock:
            state = hydrator.local.get(dataset.key)
            record = state.ready.get((shard, key)) if state is not None and state.uid == dataset.spec.uid else None
        if record is None:
            raise HTTPException(404, f"piece {shard}/{key} of {ns}/{name} is not ready here")
        path = store.layout.piece_path(ns, name, dataset.spec.shard_name(shard), shard, key)
        metrics.served_bytes.labels("piece").inc(record.size)
        headers = {SHA256_HEADER: record.sha256, SHARD_BYTES_HEADER: str(record.shard_bytes), "Content-Length": str(record.size)}
        return StreamingResponse(file_stream(path, 0, record.size), headers=headers, media_type="application/octet-stream")

    @app.get("/v1/namespaces/{ns}/datasets/{name}/shards/{shard}")
    def shard_read(  # noqa: PLR0917 - FastAPI route parameters
        ns: str,
        name: str,
        shard: int,
        request: Request,
        user: Caller,
        local: Annotated[bool, Query()] = False,
    ) -> Response:
        authorize(user, ns, name, READ_SHARDS)
        dataset = dataset_of(ns, name)
        spec = dataset.spec
        if not 0 <= shard < spec.shards:
            raise HTTPException(404, f"{ns}/{name} has no shard {shard}")
        range_header = request.headers.get("range")
        with hydrator.lock:
            state = hydrator.local.get(dataset.key)
            ready = dict(state.ready) if state is not None and state.uid == spec.uid else {}
        if not isinstance(spec.redundancy, Erasure):
            record = ready.get((shard, REPLICA))
            if record is not None:
                path = store.layout.piece_path(ns, name, spec.shard_name(shard), shard, REPLICA)
                return ranged(record.size, range_header, lambda a, b: file_stream(path, a, b), "shard-local")
            if local:
                raise HTTPException(404, f"shard {shard} of {ns}/{name} is not on this node")
            return remote_replica(dataset, shard, range_header)
        if local:
            raise HTTPException(404, "an erasure-coded shard is never whole on one node")
        data = reassemble(dataset, shard, ready)
        return ranged(len(data), range_header, lambda a, b: _chunks(data[a:b], chunk), "shard-decoded")

    def remote_replica(dataset: DataSet, shard: int, range_header: str | None) -> Response:
        spec = dataset.spec
        my_zone = hydrator.zone_of(hydrator.node)
        holders = sorted(hydrator._holders(dataset, shard, REPLICA), key=lambda h: hydrator.zone_of(h[0]) != my_zone)
        for _node, endpoint in holders:
            try:
                response = hydrator.peers.shard_range(endpoint, spec.namespace, spec.name, shard, range_header)
            except SourceError:
                continue
            if response.status_code in (200, 206, 416):
                headers = {k: v for k, v in response.headers.items() if k.lower() in ("content-range", "content-length", "accept-ranges")}

                def relay(r: object = response) -> Iterator[bytes]:
                    import httpx

                    assert isinstance(r, httpx.Response)
                    try:
                        yield from r.iter_bytes()
                    finally:
                        r.close()

                metrics.served_bytes.labels("shard-peer").inc(int(response.headers.get("content-length") or 0))
                return StreamingResponse(relay(), status_code=response.status_code, headers=headers, media_type="application/octet-stream")
            response.close()
        if spec.source is None:
            raise HTTPException(503, f"no ready holder of shard {shard} and no source")
        reader = hydrator.reader(dataset)
        name = spec.shard_name(shard)
        try:
            size = reader.stat(name).size
        except SourceError as exc:
            raise HTTPException(502, str(exc)) from None
        return ranged(size, range_header, lambda a, b: reader.read(name, a, b), "shard-source")

    def reassemble(dataset: DataSet, shard: int, ready: Mapping[tuple[int, str], object]) -> bytes:
        spec = dataset.spec
        red = spec.redundancy
        assert isinstance(red, Erasure)
        c = codec(red.k, red.m)
        fragments: list[bytes] = []
        for p in range(red.k + red.m):
            if (shard, str(p)) in ready and len(fragments) < red.k:
                path = store.layout.piece_path(spec.namespace, spec.name, spec.shard_name(shard), shard, str(p))
                try:
                    fragments.append(path.read_bytes())
                except OSError:
                    continue
        if len(fragments) < red.k:
            have = {(shard, str(p)) for p in range(red.k + red.m) if (shard, str(p)) in ready}
            for key, _node, endpoint in hydrator._fragment_holders(dataset, shard, "", zone=None):
                if len(fragments) >= red.k:
                    break
                if (shard, key) in have:
                    continue
                try:
                    fragments.append(hydrator.peers.piece_bytes(endpoint, spec.namespace, spec.name, shard, key))
                except SourceError:
                    continue
        if len(fragments) >= red.k:
            try:
                return c.decode(fragments)
            except CodingError as exc:
                log.warning("%s: decoding shard %d: %s", dataset.key, shard, exc)
        if spec.source is not None:
            reader = hydrator.reader(dataset)
            try:
                return b"".join(reader.read(spec.shard_name(shard)))
            except SourceError as exc:
                raise HTTPException(502, str(exc)) from None
        raise HTTPException(503, f"only {len(fragments)} of the {red.k} fragments of shard {shard} are reachable")

    return app
