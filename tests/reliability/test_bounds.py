"""Inputs are bounded: oversized bodies are cut before they are read in full, deep or huge JSON
and oversized annotations get a clear answer, never a crash or a hang.

The 413 proofs use a real socket to uvicorn on 127.0.0.1: the reply must arrive while the client
is still holding back (or still trickling) the body, so the server cannot have buffered it.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from extender.app import create_app
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from tests.extender import scenarios as sc
from tests.reliability.calling import AsgiCaller, reply_problem
from tests.reliability.servers import read_reply, running
from topology.snapshots import load_snapshot

LIMIT = 256 * 1024


def _app(max_body_bytes: int = LIMIT) -> Any:
    return create_app(ClusterState.from_snapshot(load_snapshot(sc.snapshot()), ExtenderSettings(max_body_bytes=max_body_bytes)))


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with running(_app()) as p:
        yield p


@pytest.fixture(scope="module")
def caller() -> Iterator[AsgiCaller]:
    c = AsgiCaller(_app(max_body_bytes=ExtenderSettings().max_body_bytes))
    yield c
    c.close()


def test_declared_oversized_body_gets_413_before_a_single_body_byte_is_sent(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {10**9}\r\n\r\n".encode())
        status, body = read_reply(sock, timeout_s=5)  # we never send the gigabyte
    assert status == 413
    assert b"exceeds the limit" in body


def test_streamed_oversized_body_is_cut_while_the_client_is_still_sending(port: int) -> None:
    chunk = b" " * (32 * 1024)
    total_chunks = 320  # 10 MiB if the server kept reading
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        answered = False
        for _ in range(total_chunks):
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break  # the server already answered and closed
            sent += len(chunk)
            readable, _, _ = select.select([sock], [], [], 0.02)
            if readable:
                answered = True
                break
        status, _ = read_reply(sock, timeout_s=5)
    assert status == 413
    assert answered or sent < total_chunks * len(chunk)
    assert sent <= LIMIT + 8 * len(chunk), f"the server read {sent} bytes past a {LIMIT}-byte limit before answering"


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_deeply_nested_json_anywhere_in_the_body_is_a_400_or_ignored_never_a_crash(caller: AsgiCaller, depth: int) -> None:
    deep = b"[" * depth + b"]" * depth
    body = b'{"Pod": {"metadata": {"name": "p", "labels": {"x": "y"}, "deep": ' + deep + b'}}, "Nodes": null, "NodeNames": ["node-0-0-0"]}'
    status, data = caller.post("/filter", body)
    assert status in (200, 400)
    assert reply_problem("filter", orjson.loads(body) if status == 200 else None, status, data) is None


def test_fifty_thousand_candidate_names_are_answered_in_full(caller: AsgiCaller) -> None:
    names = [f"ghost-{i}" for i in range(50_000)] + ["node-0-0-0"]
    request = sc.names_args(sc.pod(locality="required"), names)
    status, data = caller.post("/filter", orjson.dumps(request))
    assert reply_problem("filter", request, status, data) is None
    reply = orjson.loads(data)
    assert reply["NodeNames"] == ["node-0-0-0"]
    assert len(reply["FailedAndUnresolvableNodes"]) == 50_000


@pytest.mark.parametrize(
    ("shards", "reason"),
    [
        ("0-99999999999999999999", "out of range"),
        (",".join(str(i % 2) for i in range(30_000)), None),  # 60 KB of valid indexes (shards 0 and 1), under the 64 KB cap
        ("x" * 300_000, "kbl.io/shards"),  # larger than Kubernetes allows for all annotations together
    ],
    ids=["astronomic-range", "huge-list", "huge-garbage"],
)
def test_oversized_or_absurd_shard_annotations_are_bounded_and_explained(caller: AsgiCaller, shards: str, reason: str | None) -> None:
    request = sc.names_args(sc.pod(shards=shards, locality="required"), ["node-0-0-0", "node-0-1-0"])
    status, data = caller.post("/filter", orjson.dumps(request))
    assert status == 200
    assert reply_problem("filter", request, status, data) is None
    reply = orjson.loads(data)
    if reason is None:
        assert reply["NodeNames"] == ["node-0-0-0"]  # it holds shards 0 and 1; node-0-1-0 holds 2 and 3
    else:
        assert reply["NodeNames"] == []
        assert all(reason in why for why in reply["FailedAndUnresolvableNodes"].values())


def test_a_huge_annotation_map_is_read_without_trouble(caller: AsgiCaller) -> None:
    pod = sc.pod()
    pod["metadata"]["annotations"].update({f"example.com/k{i}": "v" * 100 for i in range(5_000)})
    request = sc.names_args(pod, ["node-0-0-0"])
    status, data = caller.post("/prioritize", orjson.dumps(request))
    assert status == 200
    assert reply_problem("prioritize", request, status, data) is None


@pytest.mark.parametrize("field", ["shards", "dataset_name", "kbl"])
def test_a_pod_annotation_quoted_in_a_reason_is_clipped_so_the_reply_does_not_grow_with_it(field: str) -> None:
    # Regression: a 64 KB annotation was quoted whole in the reason of every offered node, so one
    # pod made a 5,000-node filter reply of 320 MB. Reasons now quote at most 256 characters.
    app = create_app(ClusterState.from_snapshot(load_snapshot(sc.snapshot(extra_nodes=[sc.dedicated_node("ded-a", "alpha")]))))
    caller = AsgiCaller(app)
    try:
        huge = "x" * 60_000
        pod = {
            "shards": sc.pod(locality="required", shards=huge),
            "dataset_name": sc.pod(locality="required", dataset_name=huge),
            "kbl": sc.pod(locality="required", kbl=huge),
        }[field]
        request = sc.names_args(pod, [*(f"ghost-{i}" for i in range(1_000)), "ded-a", "node-0-0-0"])
        status, data = caller.post("/filter", orjson.dumps(request))
    finally:
        caller.close()
    assert reply_problem("filter", request, status, data) is None
    assert len(data) < 1_002 * 400, f"{len(data)} bytes for 1,002 candidates"
