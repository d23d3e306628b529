"""The agent's read API (FastAPI): shards to readers, pieces to peers, health and metrics.

- ``GET /v1/namespaces/{ns}/datasets/{name}/shards/{i}``: the whole shard, ``Range: bytes=a-b``
  (single ranges: ``206`` + ``Content-Range``; ``416`` when unsatisfiable; several ranges are
  answered whole with ``200``, as RFC 9110 allows). A replica is read from local disk, else
  from the nearest holder (same zone first), else from the DataSet's source; an erasure-coded
  shard is decoded from ``k`` fragments, local ones first, **only the segments the range
  touches**, the ``k`` fragments read concurrently. ``?local=true`` answers from local disk only
  (``404`` otherwise): what peers ask each other, so a read never bounces.
- ``GET /v1/namespaces/{ns}/datasets/{name}/pieces/{i}/{key}``: a local piece for a peer
  (``key`` is ``replica`` or the fragment index; ``Range`` allowed), ready or staged for that
  peer by this zone's encoder; ``.../pieces/{i}/{key}/record``: its record (sizes, segment
  table), which the receiver checks every segment against as it arrives. Pieces sent to peers
  share the agent's sending token bucket.

**Every byte served is checked first.** Local bytes are read a segment at a time and each
segment is compared with its xxh3-64 from the piece's record before it is sent; a fragment is
checked before it is decoded. A segment that fails is never sent: the piece is quarantined at
once (reported ``corrupt``, fetched again, the reconciler sees it), and the read goes on from a
good copy (a peer's replica, the source, other fragments) when there is one. If none is left
after the status line went out, the connection is cut: the reader sees a short body, never
wrong bytes with a ``200``.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dataplane.agent.authenticating import Authenticator, Identity
from dataplane.agent.authorizing import READ_PIECES, READ_SHARDS, Authorizer, Permission
from dataplane.agent.coding import CodingError, codec
from dataplane.agent.hydrating import Hydrator
from dataplane.agent.live import UNIT_HEADER, StreamError
from dataplane.agent.sources import SHA256_HEADER, SHARD_BYTES_HEADER, SourceError
from dataplane.agent.storing import ChecksumError, PieceRecord, read_segments
from dataplane.agent.streaming import checked_segments, zip_parallel
from topology.datasets import DataSet, Erasure
from topology.holdings import REPLICA

log = logging.getLogger(__name__)

#: Seconds a peer's record is reused by the decodes of ranged reads (dropped at once when its piece fails a check).
RECORD_CACHE_S = 30.0

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


def build_app(hydrator: Hydrator, auth: Authenticator, authorizer: Authorizer) -> FastAPI:
    """The read API of one agent."""
    app = FastAPI(title="kbl node agent", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = hydrator.metrics
    store = hydrator.store

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

    def ready_record(dataset: DataSet, slot: tuple[int, str]) -> PieceRecord | None:
        with hydrator.lock:
            state = hydrator.local.get(dataset.key)
            return state.ready.get(slot) if state is not None and state.uid == dataset.spec.uid else None

    def local_piece(dataset: DataSet, shard: int, key: str) -> tuple[Path, PieceRecord, bool] | None:
        """``(path, record, staged)`` of a piece this node can send: ready here, or staged for a peer."""
        spec = dataset.spec
        record = ready_record(dataset, (shard, key))
        if record is not None:
            return store.layout.piece_path(spec.namespace, spec.name, spec.shard_name(shard), shard, key), record, False
        staged = hydrator.staged_record(dataset, shard, key)
        if staged is not None:
            return staged[0], staged[1], True
        return None

    def ranged(size: int, range_header: str | None, body: Callable[[int, int], Iterator[bytes]], what: str) -> Response:
        """A 200/206/416 response for ``body(start, end)``; the body's first item is read before the status goes out."""
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
        stream = body(start, end)
        try:
            first = next(stream, b"")  # a failure here is still an error status, not a broken 200
        except ChecksumError as exc:
            raise HTTPException(503, f"no verified copy of these bytes is reachable: {exc}") from None
        except OSError as exc:  # released or cleaned up between the look-up and the read
            raise HTTPException(404, f"{what} no longer here: {exc.strerror or exc}") from None
        metrics.served_bytes.labels(what).inc(end - start)
        return StreamingResponse(_prepend(first, stream), status_code=status, headers=headers, media_type="application/octet-stream")

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

    @app.get("/v1/namespaces/{ns}/datasets/{name}/pieces/{shard}/{key}/record")
    def piece_record(ns: str, name: str, shard: int, key: str, user: Caller) -> Response:
        authorize(user, ns, name, READ_PIECES)
        dataset = dataset_of(ns, name)
        found = local_piece(dataset, shard, key)
        if found is None:
            raise HTTPException(404, f"piece {shard}/{key} of {ns}/{name} is not ready here")
        metrics.records_served.inc()
        return Response(found[1].to_json(), media_type="application/json")

    @app.get("/v1/namespaces/{ns}/datasets/{name}/pieces/{shard}/{key}/live")
    def piece_live(ns: str, name: str, shard: int, key: str, user: Caller) -> Response:
        """A fragment this node is encoding for the caller, streamed as it is encoded (:mod:`.live`); one follower."""
        authorize(user, ns, name, READ_PIECES)
        dataset = dataset_of(ns, name)
        fragment = hydrator.live_fragment(dataset, shard, key)
        if fragment is None:
            raise HTTPException(404, f"fragment {shard}/{key} of {ns}/{name} is not being encoded here")
        try:
            frames = fragment.attach()
        except StreamError as exc:
            raise HTTPException(404, str(exc)) from None

        def body() -> Iterator[bytes]:
            try:
                for data in frames:
                    hydrator.send_bucket.take(len(data))
                    metrics.served_bytes.labels("piece-streamed").inc(len(data))
                    yield data
            finally:
                frames.close()

        return StreamingResponse(body(), headers={UNIT_HEADER: str(fragment.unit)}, media_type="application/octet-stream")

    @app.get("/v1/namespaces/{ns}/datasets/{name}/pieces/{shard}/{key}")
    def piece(ns: str, name: str, shard: int, key: str, request: Request, user: Caller) -> Response:  # noqa: PLR0917 - FastAPI route parameters
        authorize(user, ns, name, READ_PIECES)
        dataset = dataset_of(ns, name)
        found = local_piece(dataset, shard, key)
        if found is None:
            raise HTTPException(404, f"piece {shard}/{key} of {ns}/{name} is not ready here")
        path, record, staged = found

        def body(start: int, end: int) -> Iterator[bytes]:
            try:
                for data in verified_bytes(path, record, start, end):
                    hydrator.send_bucket.take(len(data))
                    yield data
            except FileNotFoundError:
                raise  # released (or a staged fragment cleaned up) mid-read: the peer copies from another holder
            except ChecksumError as exc:
                metrics.corrupt_on_read.inc()
                if not staged:
                    hydrator.quarantine(dataset, (shard, key), "on a read by a peer")
                raise exc from None  # the peer sees the stream break off and copies from another holder

        response = ranged(record.size, request.headers.get("range"), body, "piece")
        response.headers[SHA256_HEADER] = record.sha256
        response.headers[SHARD_BYTES_HEADER] = str(record.shard_bytes)
        return response

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
        if not isinstance(spec.redundancy, Erasure):
            record = ready_record(dataset, (shard, REPLICA))
            if record is not None:
                path = store.layout.piece_path(ns, name, spec.shard_name(shard), shard, REPLICA)
                return ranged(
                    record.size,
                    range_header,
                    lambda a, b: local_replica(dataset, shard, path, record, start=a, end=b, local=local),
                    "shard-local",
                )
            if local:
                raise HTTPException(404, f"shard {shard} of {ns}/{name} is not on this node")
            return remote_replica(dataset, shard, range_header)
        if local:
            raise HTTPException(404, "an erasure-coded shard is never whole on one node")
        size = shard_size(dataset, shard)
        return ranged(size, range_header, lambda a, b: decoded(dataset, shard, a, b), "shard-decoded")

    def local_replica(
        dataset: DataSet, shard: int, path: Path, record: PieceRecord, *, start: int, end: int, local: bool
    ) -> Iterator[bytes]:
        """The local replica, checked segment by segment; after a bad segment, the rest from a good copy."""
        pos = start
        try:
            for data in verified_bytes(path, record, start, end):
                yield data
                pos += len(data)
        except ChecksumError:
            metrics.corrupt_on_read.inc()
            hydrator.quarantine(dataset, (shard, REPLICA), "on a read")
            if local:
                raise
            yield from remote_bytes(dataset, shard, pos, end)
        except FileNotFoundError:  # released while it was read: the rest from a holder that still has it
            if local:
                raise
            yield from remote_bytes(dataset, shard, pos, end)

    def remote_bytes(dataset: DataSet, shard: int, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of a replica from a peer's local copy (checked there), else the source."""
        spec = dataset.spec
        for endpoint in replica_holders(dataset, shard):
            try:
                response = hydrator.peers.shard_range(endpoint, spec.namespace, spec.name, shard, f"bytes={start}-{end - 1}")
            except SourceError:
                continue
            if response.status_code not in (200, 206):
                response.close()
                continue
            got = 0
            try:
                for data in response.iter_raw(1 << 20):
                    yield data
                    got += len(data)
            except httpx.HTTPError:
                start += got  # what was relayed stays relayed; the rest from the next holder
                continue
            finally:
                response.close()
            if start + got == end:
                return
            start += got
        if spec.source is None:
            raise ChecksumError(f"shard {shard}: no holder with a good copy and no source")
        reader = hydrator.reader(dataset)
        try:
            yield from reader.read(spec.shard_name(shard), start, end)
        except SourceError as exc:
            raise ChecksumError(f"shard {shard}: {exc}") from None

    def replica_holders(dataset: DataSet, shard: int) -> list[str]:
        my_zone = hydrator.zone_of(hydrator.node)
        found = hydrator._holders(dataset, shard, REPLICA) or hydrator._holders(dataset, shard, REPLICA, fresh=True)
        holders = sorted(found, key=lambda h: hydrator.zone_of(h[0]) != my_zone)
        return [endpoint for _node, endpoint in holders]

    def remote_replica(dataset: DataSet, shard: int, range_header: str | None) -> Response:
        spec = dataset.spec
        for endpoint in replica_holders(dataset, shard):
            try:
                response = hydrator.peers.shard_range(endpoint, spec.namespace, spec.name, shard, range_header)
            except SourceError:
                continue
            if response.status_code in (200, 206, 416):
                headers = {k: v for k, v in response.headers.items() if k.lower() in ("content-range", "content-length", "accept-ranges")}

                def relay(r: httpx.Response = response) -> Iterator[bytes]:
                    try:
                        yield from r.iter_raw(1 << 20)
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

    # ------------------------------------------------------------ erasure reads
    def fragment_sources(dataset: DataSet, shard: int, exclude: set[str], *, fresh: bool = False) -> list[FragmentSource]:
        """Every reachable fragment of a shard, local ones first, then the nearest holders' (one per index)."""
        spec = dataset.spec
        red = spec.redundancy
        assert isinstance(red, Erasure)
        out: list[FragmentSource] = []
        for p in range(red.k + red.m):
            key = str(p)
            record = ready_record(dataset, (shard, key))
            if record is not None and f"local:{key}" not in exclude:
                path = store.layout.piece_path(spec.namespace, spec.name, spec.shard_name(shard), shard, key)
                out.append(FragmentSource(key, record, path=path))
        have = {f.key for f in out}
        for key, node, endpoint in hydrator._fragment_holders(dataset, shard, "", zone=None, fresh=fresh):
            if key in have or f"{node}:{key}" in exclude:
                continue
            try:
                record = hydrator.peers.record(endpoint, spec.namespace, spec.name, shard, key, cache_s=RECORD_CACHE_S)
            except SourceError:
                continue
            out.append(FragmentSource(key, record, node=node, endpoint=endpoint))
            have.add(key)
        return out

    def shard_size(dataset: DataSet, shard: int) -> int:
        spec = dataset.spec
        sources = fragment_sources(dataset, shard, set()) or fragment_sources(dataset, shard, set(), fresh=True)
        if sources:
            return sources[0].record.shard_bytes
        if spec.source is not None:
            try:
                return hydrator.reader(dataset).stat(spec.shard_name(shard)).size
            except SourceError as exc:
                raise HTTPException(502, str(exc)) from None
        raise HTTPException(503, f"no fragment of shard {shard} is reachable and there is no source")

    def decoded(dataset: DataSet, shard: int, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of an erasure-coded shard: only the segments they touch, decoded from ``k``
        checked fragments read concurrently; a fragment that fails is dropped (quarantined if local) and
        the decode goes on from the next segment with another."""
        spec = dataset.spec
        red = spec.redundancy
        assert isinstance(red, Erasure)
        c = codec(red.k, red.m)
        exclude: set[str] = set()
        pos = start
        while pos < end:
            sources = fragment_sources(dataset, shard, exclude)[: red.k]
            if len(sources) < red.k:  # the peers' holdings may be a second old: ask them again
                sources = fragment_sources(dataset, shard, exclude, fresh=True)[: red.k]
            if len(sources) < red.k:
                break
            seg = sources[0].record.segment_bytes
            segments = range(pos // seg, (end - 1) // seg + 1)
            streams = [fragment_stream(dataset, shard, f, segments) for f in sources]
            rows = zip_parallel(streams)
            j = segments.start
            try:
                for row in rows:
                    data = c.decode(row)
                    metrics.decoded_segments.inc()
                    lo = max(pos, j * seg) - j * seg
                    hi = min(end, j * seg + len(data)) - j * seg
                    piece_ = data[lo:hi]
                    yield piece_
                    pos += len(piece_)
                    j += 1
                if pos >= end:
                    return
                exclude.update(f.name for f in sources)  # a short stream: try the others
            except (ChecksumError, SourceError, CodingError) as exc:
                bad = getattr(exc, "fragment", None)
                log.warning("%s: decoding shard %d: %s", dataset.key, shard, exc)
                if isinstance(bad, FragmentSource):
                    exclude.add(bad.name)
                    metrics.corrupt_on_read.inc()
                    if bad.path is not None:
                        hydrator.quarantine(dataset, (shard, bad.key), "on a decode")
                else:
                    exclude.update(f.name for f in sources)
            finally:
                rows.close()
        if pos < end and spec.source is not None:
            try:
                yield from hydrator.reader(dataset).read(spec.shard_name(shard), pos, end)
                return
            except SourceError as exc:
                raise ChecksumError(f"shard {shard}: {exc}") from None
        if pos < end:
            raise ChecksumError(f"shard {shard}: fewer than {red.k} good fragments are reachable")

    def fragment_stream(dataset: DataSet, shard: int, f: FragmentSource, segments: range) -> Iterator[bytes]:
        """Segments of one fragment, checked; an error carries the fragment it came from."""
        spec = dataset.spec
        geometry = f.record.geometry
        segments = range(segments.start, min(segments.stop, geometry.count))
        try:
            if f.path is not None:
                for _j, data in read_segments(f.path, f.record, segments):
                    yield data
            else:
                a = geometry.bounds(segments.start)[0]
                b = geometry.bounds(segments.stop - 1)[1]
                chunks = hydrator.peers.piece(f.endpoint, spec.namespace, spec.name, shard, f.key, start=a, end=b)
                yield from checked_segments(chunks, f.record, segments, f"fragment {shard}/{f.key} from {f.node}")
        except (ChecksumError, SourceError, OSError) as exc:
            if f.endpoint:
                hydrator.peers.forget(f.endpoint, spec.namespace, spec.name, shard, f.key)
            err = ChecksumError(str(exc))
            err.fragment = f  # type: ignore[attr-defined]
            raise err from None

    return app


@dataclass(frozen=True, slots=True)
class FragmentSource:
    """One fragment a decode can read: local (``path``) or a peer's (``endpoint``)."""

    key: str
    record: PieceRecord
    path: Path | None = None
    node: str = ""
    endpoint: str = ""

    @property
    def name(self) -> str:
        return f"{self.node or 'local'}:{self.key}"


def verified_bytes(path: Path, record: PieceRecord, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of a local piece, every segment they touch checked before a byte of it is sent."""
    geometry = record.geometry
    for j, data in read_segments(path, record, geometry.span(start, end)):
        a, _ = geometry.bounds(j)
        lo = max(start, a) - a
        hi = min(end, a + len(data)) - a
        yield data if (lo, hi) == (0, len(data)) else data[lo:hi]


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest
