"""S3 sources through boto3 against moto in server mode over real HTTP (via a faulty proxy).

Checksums (a full-object SHA-256 and a single-part ETag checked; a corrupted body refused),
multipart objects read as ranged GETs, throttling (503 SlowDown) and 5xx retried. The placement
is written by the test (the reconciler is not what these tests claim to test).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from dataplane.agent.coding import Codec
from dataplane.agent.running import start_agents
from dataplane.agent.sources import S3Reader, SourceError
from kube.api import NODES
from tests.dataplane.agent.cluster import NS, TOKEN, ReviewingApi, dataset, node, put_dataset, ready_on, wait_for
from topology.datasets import S3Source

BUCKET = "kbl-agent-tests"
SLOWDOWN = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'
INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>'
)


class FaultyProxy:
    """An HTTP proxy in front of moto: the next ``throttle`` GETs get 503 SlowDown, the next
    ``errors`` GETs get 500, and GET bodies of keys containing ``corrupt`` (when set) have one byte flipped."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.throttle = 0
        self.errors = 0
        self.corrupt = ""
        self.faults = 0
        self.gets = 0
        self.bytes_served = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "GET" and "Range" in self.headers:
                    proxy.gets += 1
                    if proxy.throttle or proxy.errors:
                        status, text = (503, SLOWDOWN) if proxy.throttle else (500, INTERNAL)
                        if proxy.throttle:
                            proxy.throttle -= 1
                        else:
                            proxy.errors -= 1
                        proxy.faults += 1
                        self.send_response(status)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(text)))
                        self.end_headers()
                        self.wfile.write(text)
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection", "accept-encoding")}
                r = httpx.request(self.command, proxy.upstream + self.path, headers=headers, content=body, timeout=30)
                content = r.content
                if self.command == "GET":
                    proxy.bytes_served += len(content)
                if proxy.corrupt and proxy.corrupt in self.path and self.command == "GET" and content:
                    content = bytes([content[0] ^ 0xFF]) + content[1:]
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding", "server", "date"):
                        self.send_header(k, v)
                sent = r.headers.get("content-length", "0") if self.command == "HEAD" else str(len(content))
                self.send_header("Content-Length", sent)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_HEAD = do_PUT = do_POST = _forward  # noqa: N815 - http.server's handler names

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def s3(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, FaultyProxy]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.session.Session().client("s3", endpoint_url=moto_server, region_name="us-east-1")
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    proxy = FaultyProxy(moto_server)
    yield client, proxy
    proxy.close()


def upload(client: Any, key: str, data: bytes, *, multipart: bool = False) -> None:
    if not multipart:
        client.put_object(Bucket=BUCKET, Key=key, Body=data, ChecksumAlgorithm="SHA256")
        return
    part = 5 * 1024 * 1024
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    parts = []
    for n, start in enumerate(range(0, len(data), part), start=1):
        etag = client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=n, Body=data[start : start + part])["ETag"]
        parts.append({"ETag": etag, "PartNumber": n})
    client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})


def test_s3_reader_reads_multipart_objects_as_ranged_gets_and_retries_throttling_and_5xx(s3: tuple[Any, FaultyProxy]) -> None:
    client, proxy = s3
    data = os.urandom(6 * 1024 * 1024 + 11)
    upload(client, "t/multi.bin", data, multipart=True)
    reader = S3Reader(S3Source(BUCKET, "t/", "us-east-1", proxy.url), part_bytes=1024 * 1024, max_attempts=6)
    assert reader.stat("multi.bin").size == len(data)
    proxy.throttle, proxy.errors = 2, 1
    got = b"".join(reader.read("multi.bin"))
    assert got == data
    assert proxy.faults == 3, "two SlowDown and one 500 met and retried"
    assert reader.gets == 7  # 6 MiB + 11 bytes in 1 MiB ranged GETs
    assert b"".join(reader.read("multi.bin", 1000, 2000)) == data[1000:2000]
    single = os.urandom(100_000)
    upload(client, "t/one.bin", single)
    expected = reader.stat("one.bin")
    assert expected.sha256 == hashlib.sha256(single).hexdigest() or expected.md5 == hashlib.md5(single, usedforsecurity=False).hexdigest()


def test_agents_hydrate_from_s3_byte_identical_and_refuse_a_corrupted_body(s3: tuple[Any, FaultyProxy], tmp_path: Path) -> None:
    client, proxy = s3
    shards = {0: os.urandom(300_001), 1: os.urandom(6 * 1024 * 1024 + 1)}
    upload(client, "ds/part-000.bin", shards[0])
    upload(client, "ds/part-001.bin", shards[1], multipart=True)
    api = ReviewingApi({})
    api.put(NODES, node("n1", "a"))
    api.put(NODES, node("n2", "a"))
    agents = start_agents(
        api,
        ["n1", "n2"],
        tmp_path / "nodes",
        token=TOKEN,
        settings={"report_min_interval_s": 0.1, "resync_s": 0.2, "s3_part_bytes": 1 << 20, "retry_max_s": 1.0},
    )
    try:
        proxy.corrupt = "part-000"  # the single-part object: S3 gives its SHA-256
        source = {"s3": {"bucket": BUCKET, "prefix": "ds/", "region": "us-east-1", "endpointUrl": proxy.url}}
        put_dataset(api, dataset("s3ds", shards=2, size=300_001, redundancy={"replicas": 1}, nodes=["n1"], rows=[[0], [0]], source=source))
        wait_for(
            "a checksum failure reported",
            lambda: any(
                e["reason"] == "HydrationFailed" and any(w in e["message"] for w in ("checksum", "sha256", "md5")) for e in api.events
            ),
        )
        folder = tmp_path / "nodes" / "n1" / NS / "s3ds"
        assert not (folder / "part-000.bin").exists(), "a corrupted body never reaches its final name"
        proxy.corrupt = ""
        wait_for("both shards ready", lambda: ready_on(api, "n1", "s3ds", "replica") == {0, 1}, 30)
        for s, data in shards.items():
            assert (folder / f"part-{s:03d}.bin").read_bytes() == data
        # An erasure-coded DataSet from the same objects: fragments encoded from S3.
        put_dataset(
            api,
            dataset(
                "s3ec",
                shards=1,
                size=300_001,
                redundancy={"erasure": {"data": 1, "parity": 1}},
                nodes=["n1", "n2"],
                rows=[[0, 1]],
                source=source,
            ),
        )
        wait_for("fragments", lambda: ready_on(api, "n1", "s3ec", "0") == {0} and ready_on(api, "n2", "s3ec", "1") == {0}, 30)
        r = httpx.get(
            f"{agents[1].endpoint}/v1/namespaces/{NS}/datasets/s3ec/shards/0", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        assert r.content == shards[0]
    finally:
        for a in agents:
            a.stop()


def test_a_copy_is_pinned_to_the_object_version_it_started_with(s3: tuple[Any, FaultyProxy]) -> None:
    """An object overwritten between two ranged GETs fails the read (S3 answers 412 to IfMatch): the
    copy never mixes the old version's first part with the new one's second."""
    client, proxy = s3
    old, new = os.urandom(3 * 1024 * 1024), os.urandom(3 * 1024 * 1024)
    upload(client, "pin/obj.bin", old)
    reader = S3Reader(S3Source(BUCKET, "pin/", "us-east-1", proxy.url), part_bytes=1024 * 1024, max_attempts=2)
    pin = reader.stat("obj.bin")
    parts = reader.read("obj.bin", pin=pin)
    assert next(parts) == old[: 1024 * 1024]
    upload(client, "pin/obj.bin", new)
    with pytest.raises(SourceError, match="changed while it was copied"):
        next(parts)
    assert b"".join(reader.read("obj.bin")) == new, "a fresh read gets the new version whole"


def test_an_erasure_coded_shard_is_read_from_s3_once_per_zone_and_encoded_once(s3: tuple[Any, FaultyProxy], tmp_path: Path) -> None:
    """4+2 over six agents in two zones: one encoder per zone reads the shard and encodes its zone's
    fragments, streamed to their holders as it encodes or staged for them; the others fetch theirs
    from it. S3 serves at most one shard's bytes per zone."""
    client, proxy = s3
    size = 3 * 1024 * 1024 + 123
    data = {s: os.urandom(size) for s in range(2)}
    for s, blob in data.items():
        upload(client, f"enc/part-{s:03d}.bin", blob)
    api = ReviewingApi({})
    zones = {"e1": "a", "e2": "a", "e3": "a", "e4": "b", "e5": "b", "e6": "b"}
    for name, z in zones.items():
        api.put(NODES, node(name, z))
    agents = start_agents(
        api,
        list(zones),
        tmp_path / "nodes",
        token=TOKEN,
        settings={"report_min_interval_s": 0.1, "resync_s": 0.1, "s3_part_bytes": 1 << 20, "retry_max_s": 1.0},
    )
    try:
        proxy.bytes_served = 0
        source = {"s3": {"bucket": BUCKET, "prefix": "enc/", "region": "us-east-1", "endpointUrl": proxy.url}}
        rows = [[0, 1, 2, 3, 4, 5], [3, 4, 5, 0, 1, 2]]
        put_dataset(
            api,
            dataset(
                "enc", shards=2, size=size, redundancy={"erasure": {"data": 4, "parity": 2}}, nodes=list(zones), rows=rows, source=source
            ),
        )
        names = list(zones)
        for s, row in enumerate(rows):
            for p, i in enumerate(row):
                wait_for(f"fragment {p} of {s} on {names[i]}", lambda i=i, p=p, s=s: s in ready_on(api, names[i], "enc", str(p)), 60)  # type: ignore[misc]
        assert proxy.bytes_served <= 2 * 2 * size, f"S3 served {proxy.bytes_served} bytes for 2 shards in 2 zones"
        staged = sum(a.metrics.staged_fragments._value.get() for a in agents)
        streamed = sum(a.metrics.registry.get_sample_value("kbl_agent_streamed_fragments_total", {"outcome": "done"}) or 0 for a in agents)
        assert staged + streamed == 2 * 2 * 2, "each zone's encoder encoded the two other fragments of its zone, per shard"
        assert sum(a.metrics.source_requests._value.get() for a in agents) == 2 * 2, "one source read per zone and shard"
        codec = Codec(4, 2)
        for s, row in enumerate(rows):
            r = httpx.get(
                f"{agents[row[0]].endpoint}/v1/namespaces/{NS}/datasets/enc/shards/{s}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
            assert r.status_code == 200
            assert r.content == data[s]
            for p, i in enumerate(row):
                fragment = (tmp_path / "nodes" / names[i] / NS / "enc" / ".pieces" / f"{s}.{p}").read_bytes()
                segments = [codec.encode(data[s][i : i + (1 << 20)])[p] for i in range(0, size, 1 << 20)]
                assert fragment == b"".join(segments), "a fragment file is its fragment segments, in order"
        wait_for("staging emptied once every holder has its fragment", lambda: not any(a.hydrator.staged for a in agents), 30)
    finally:
        for a in agents:
            a.stop()
