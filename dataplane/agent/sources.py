"""Where a piece's bytes come from: the DataSet's source (S3 or a shared path) and peer agents.

Every reader streams ``bytes`` chunks of a range and says what the bytes must hash to when it
knows (:class:`Expected`), so the copier verifies before it renames.

- :class:`S3Reader`: boto3, standard retry mode (throttling ``SlowDown``/``503``, ``5xx`` and
  connection errors retried with backoff by botocore, ``max_attempts`` from the settings), and a
  multipart download as ranged GETs of ``s3_part_bytes`` each, every part retried on its own when
  its body breaks off mid-stream. The object's checksum is used when S3 offers one: a full-object
  ``ChecksumSHA256`` (``ChecksumMode=ENABLED``) or the MD5 of a single-part ``ETag``.
- :class:`PathReader`: a file on a filesystem mounted on every node.
- :class:`PeerClient`: another agent's read API with this agent's bearer token: a piece's record
  (``.../pieces/<i>/<key>/record``: sizes and segment table) and its bytes, ranged; the receiver
  checks every segment against the record as it arrives.
"""

from __future__ import annotations

import base64
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from dataplane.agent.live import UNIT_HEADER
from dataplane.agent.settings import AgentSettings
from dataplane.agent.storing import AgentError, PieceRecord
from topology.datasets import DataSource, PathSource, S3Source

#: Header carrying the SHA-256 (hex) recorded with a piece, from a peer.
SHA256_HEADER = "X-Kbl-Sha256"
#: Header carrying the original shard length of a fragment from a peer.
SHARD_BYTES_HEADER = "X-Kbl-Shard-Bytes"
#: Peers' records kept for the read API's decodes (each at most a few hundred KiB).
RECORD_CACHE_ENTRIES = 256


class SourceError(AgentError):
    """The source or a peer could not give the bytes (after retries)."""


@dataclass(frozen=True, slots=True)
class Expected:
    """What a whole object must hash to, when the source says (hex digests), and which version it is.

    ``etag`` and ``version_id`` pin ranged reads to the object as it was when it was looked at
    (S3 ``IfMatch`` / ``VersionId``): an object overwritten mid-copy fails the copy instead of
    mixing two versions' bytes.
    """

    size: int
    sha256: str = ""
    md5: str = ""
    etag: str = ""
    version_id: str = ""

    @property
    def digest(self) -> str:
        """The one digest a copy computes to check these bytes: ``sha256`` unless only an MD5 is promised."""
        return "md5" if self.md5 and not self.sha256 else "sha256"


class Reader(Protocol):
    """A source of shard objects by name."""

    def stat(self, name: str) -> Expected: ...

    def read(self, name: str, start: int = 0, end: int | None = None, *, pin: Expected | None = None) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of object ``name`` (``end=None``: to the end), of version ``pin`` when given."""
        ...


class PathReader:
    """Shard files under a directory (``spec.source.path``)."""

    def __init__(self, source: PathSource, *, chunk_bytes: int = 1 << 20) -> None:
        self.source = source
        self.chunk_bytes = chunk_bytes

    def _path(self, name: str) -> Path:
        return Path(self.source.locate(name))

    def stat(self, name: str) -> Expected:
        try:
            st = self._path(name).stat()
            return Expected(st.st_size, etag=f"{st.st_size}-{st.st_mtime_ns}")
        except OSError as exc:
            raise SourceError(f"source {self._path(name)}: {exc.strerror or exc}") from None

    def read(self, name: str, start: int = 0, end: int | None = None, *, pin: Expected | None = None) -> Iterator[bytes]:
        try:
            f = open(self._path(name), "rb")  # noqa: SIM115 - closed below, in the generator
        except OSError as exc:
            raise SourceError(f"source {self._path(name)}: {exc.strerror or exc}") from None
        with f:
            f.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                block = f.read(self.chunk_bytes if left is None else min(self.chunk_bytes, left))
                if not block:
                    break
                if left is not None:
                    left -= len(block)
                yield block


class S3Reader:
    """Shard objects in S3 (or an S3-compatible store) through boto3."""

    def __init__(
        self, source: S3Source, *, part_bytes: int = 8 << 20, max_attempts: int = 8, timeout_s: float = 30.0, client: Any = None
    ) -> None:
        self.source = source
        self.part_bytes = part_bytes
        self.max_attempts = max_attempts
        self.gets = 0
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
                region_name=source.region or None,
            )
            client = boto3.session.Session().client("s3", endpoint_url=source.endpoint_url, config=config)
        self.client = client

    def _key(self, name: str) -> str:
        return f"{self.source.prefix}{name}"

    def stat(self, name: str) -> Expected:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self.client.head_object(Bucket=self.source.bucket, Key=self._key(name), ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as exc:
            raise SourceError(f"{self.source.locate(name)}: {exc}") from None
        sha = ""
        raw = head.get("ChecksumSHA256") or ""
        if raw and "-" not in raw and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            sha = base64.b64decode(raw).hex()
        etag = str(head.get("ETag") or "")
        bare = etag.strip('"')
        md5 = bare if len(bare) == 32 and "-" not in bare else ""
        # Only a full-object SHA-256 is checked; MD5 only when that is all S3 offers (one digest per copy).
        return Expected(int(head["ContentLength"]), sha, "" if sha else md5, etag, str(head.get("VersionId") or ""))

    def read(self, name: str, start: int = 0, end: int | None = None, *, pin: Expected | None = None) -> Iterator[bytes]:
        if end is None or pin is None:
            pin = pin or self.stat(name)
            end = pin.size if end is None else end
        pos = start
        while pos < end:
            stop = min(end, pos + self.part_bytes)
            yield self._part(name, pos, stop, pin)
            pos = stop

    def _part(self, name: str, start: int, stop: int, pin: Expected) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        last: Exception | None = None
        pinned: dict[str, str] = {}
        if pin.version_id:
            pinned["VersionId"] = pin.version_id
        if pin.etag:
            pinned["IfMatch"] = pin.etag
        for attempt in range(self.max_attempts):
            try:
                self.gets += 1
                got = self.client.get_object(Bucket=self.source.bucket, Key=self._key(name), Range=f"bytes={start}-{stop - 1}", **pinned)
                body: bytes = got["Body"].read()
            except ClientError as exc:  # botocore already retried what is retryable
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in ("PreconditionFailed", "412"):
                    raise SourceError(
                        f"{self.source.locate(name)} changed while it was copied (ETag {pin.etag} no longer matches)"
                    ) from None
                raise SourceError(f"{self.source.locate(name)} bytes {start}-{stop - 1}: {exc}") from None
            except (BotoCoreError, OSError) as exc:  # the body broke off mid-stream: this part again
                last = exc
                time.sleep(min(2.0, 0.05 * 2**attempt))
                continue
            if len(body) != stop - start:
                last = SourceError(f"short part: {len(body)} of {stop - start} bytes")
                continue
            return body
        raise SourceError(f"{self.source.locate(name)} bytes {start}-{stop - 1}: {last}")


def reader_for(source: DataSource, settings: AgentSettings) -> Reader:
    if isinstance(source, PathSource):
        return PathReader(source, chunk_bytes=max(settings.chunk_bytes, settings.segment_bytes))
    return S3Reader(source, part_bytes=settings.s3_part_bytes, max_attempts=settings.s3_max_attempts, timeout_s=settings.peer_timeout_s)


class PeerClient:
    """Calls to other agents' read API, authenticated with this agent's bearer token.

    ``token`` is called per request (a projected token rotates on disk). ``verify`` is the CA
    bundle for HTTPS peers (or ``False`` for loopback tests).
    """

    def __init__(self, token: Callable[[], str], *, timeout_s: float = 30.0, verify: str | bool | ssl.SSLContext = True) -> None:
        self.token = token
        self.client = httpx.Client(timeout=timeout_s, verify=verify)
        #: Records read for the read API's decodes, by URL: (read at, record), newest last, bounded.
        self._records: OrderedDict[str, tuple[float, PieceRecord]] = OrderedDict()
        self._records_lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token()}"}
        if extra:
            headers.update(extra)
        return headers

    def _url(self, endpoint: str, ns: str, name: str, shard: int, key: str) -> str:
        return f"{endpoint.rstrip('/')}/v1/namespaces/{ns}/datasets/{name}/pieces/{shard}/{key}"

    def record(self, endpoint: str, ns: str, name: str, shard: int, key: str, *, cache_s: float = 0.0) -> PieceRecord:
        """A peer's record of its piece: sizes and the segment table every byte is checked against.

        ``cache_s``: reuse a record read that recently (the read API decodes every ranged read of
        an erasure-coded shard from k fragments: without it each read would fetch k-1 tables, up
        to half a MiB each for 50 GiB fragments). A stream that fails its check drops the record
        (:meth:`forget`); a copy reads it afresh.
        """
        url = self._url(endpoint, ns, name, shard, key) + "/record"
        if cache_s > 0:
            with self._records_lock:
                hit = self._records.get(url)
                if hit is not None and time.monotonic() - hit[0] < cache_s:
                    self._records.move_to_end(url)
                    return hit[1]
        try:
            response = self.client.get(url, headers=self._headers())
        except httpx.HTTPError as exc:
            raise SourceError(f"peer {endpoint}: {exc}") from None
        if response.status_code != 200:
            raise SourceError(f"peer {endpoint}: piece {shard}/{key}: HTTP {response.status_code}")
        try:
            record = PieceRecord.from_json(response.content)
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"peer {endpoint}: piece {shard}/{key}: bad record: {exc}") from None
        if cache_s > 0:
            with self._records_lock:
                self._records[url] = (time.monotonic(), record)
                while len(self._records) > RECORD_CACHE_ENTRIES:
                    self._records.popitem(last=False)
        return record

    def forget(self, endpoint: str, ns: str, name: str, shard: int, key: str) -> None:
        """Drop a cached record (its piece failed a check, or went away)."""
        with self._records_lock:
            self._records.pop(self._url(endpoint, ns, name, shard, key) + "/record", None)

    def piece(self, endpoint: str, ns: str, name: str, shard: int, key: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``[start, end)`` of a peer's local piece (the caller checks them against the record).

        Raises :class:`SourceError` when the peer refuses or the stream breaks off.
        """
        headers = self._headers({"Range": f"bytes={start}-{'' if end is None else end - 1}"} if start or end is not None else None)
        try:
            request = self.client.build_request("GET", self._url(endpoint, ns, name, shard, key), headers=headers)
            response = self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise SourceError(f"peer {endpoint}: {exc}") from None
        if response.status_code not in (200, 206):
            response.close()
            raise SourceError(f"peer {endpoint}: piece {shard}/{key}: HTTP {response.status_code}")

        return _raw_chunks(response, endpoint)

    def live(self, endpoint: str, ns: str, name: str, shard: int, key: str) -> tuple[int, Iterator[bytes]]:
        """A fragment a peer is encoding for this node, streamed as it is encoded (:mod:`.live`):
        ``(segment unit, framed bytes)``. Raises :class:`SourceError` when the peer has none to stream."""
        try:
            request = self.client.build_request("GET", self._url(endpoint, ns, name, shard, key) + "/live", headers=self._headers())
            response = self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise SourceError(f"peer {endpoint}: {exc}") from None
        if response.status_code != 200:
            response.close()
            raise SourceError(f"peer {endpoint}: no stream of fragment {shard}/{key}: HTTP {response.status_code}")
        try:
            unit = int(response.headers.get(UNIT_HEADER) or 0)
        except ValueError:
            unit = 0
        if unit <= 0:
            response.close()
            raise SourceError(f"peer {endpoint}: fragment {shard}/{key}: no segment unit in the stream")

        return unit, _raw_chunks(response, endpoint)

    def shard_range(self, endpoint: str, ns: str, name: str, shard: int, range_header: str | None) -> httpx.Response:
        """A peer's local shard (``?local=true``), streamed, Range passed through."""
        url = f"{endpoint.rstrip('/')}/v1/namespaces/{ns}/datasets/{name}/shards/{shard}"
        headers = self._headers({"Range": range_header} if range_header else None)
        try:
            request = self.client.build_request("GET", url, headers=headers, params={"local": "true"})
            return self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise SourceError(f"peer {endpoint}: {exc}") from None


def _raw_chunks(response: httpx.Response, endpoint: str) -> Iterator[bytes]:
    """A peer's streamed body, 1 MiB at a time; a broken stream is a :class:`SourceError`; closed at the end."""
    try:
        yield from response.iter_raw(1 << 20)
    except httpx.HTTPError as exc:
        raise SourceError(f"peer {endpoint}: {exc}") from None
    finally:
        response.close()
