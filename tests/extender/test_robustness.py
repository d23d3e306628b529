"""Malformed and oversized bodies: a clear 400 or 413, never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extender.app import create_app
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from tests.extender import scenarios as sc
from topology.snapshots import load_snapshot

VERBS = ["/filter", "/prioritize", "/bind", "/preempt"]


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(ClusterState.from_snapshot(load_snapshot(sc.snapshot()), ExtenderSettings(max_body_bytes=64 * 1024)))


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty request body"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got an array"),
        (b"null", "expected a JSON object, got null"),
        (b"[" * 20_000 + b"]" * 20_000, "not valid JSON"),  # deeper than orjson's 1,024 levels
    ],
)
def test_unusable_bodies_get_400_with_the_reason(app: Any, verb: str, content: bytes, expected: str) -> None:
    response = sc.call(app, verb, content=content)
    assert response.status_code == 400
    assert expected in response.json()["Error"]


@pytest.mark.parametrize(
    ("verb", "body", "expected"),
    [
        ("/filter", {"Nodes": None, "NodeNames": ["a"]}, "Pod: missing or null"),
        ("/filter", {"pod": sc.pod(), "nodenames": None}, "both missing or null"),  # lower case Pod key: not what Go sends
        ("/filter", {"Pod": sc.pod(), "Nodes": None, "NodeNames": "node-0-0-0"}, "NodeNames: expected an array"),
        ("/prioritize", {"Pod": sc.pod(), "Nodes": {"items": [{"metadata": {}}]}, "NodeNames": None}, "Nodes.items[0].metadata.name"),
        ("/prioritize", {"Pod": sc.pod(), "Nodes": {"items": {}}, "NodeNames": None}, "Nodes.items: expected an array"),
        (
            "/filter",
            {"Pod": {"metadata": {"name": "p"}, "spec": {"containers": [{"resources": {"requests": {"cpu": "lots"}}}]}}, "NodeNames": []},
            "cpu",
        ),
        ("/bind", {"PodName": "p", "PodNamespace": "lab", "PodUID": "u"}, "Node: missing"),
        ("/preempt", {"Pod": sc.pod(), "NodeNameToMetaVictims": {"n": {"Pods": [{}]}}}, "UID: missing"),
        ("/preempt", {"Pod": sc.pod(), "NodeNameToVictims": {"n": {"Pods": "x"}}}, "expected an array"),
    ],
)
def test_malformed_messages_get_400_naming_the_field(app: Any, verb: str, body: dict[str, Any], expected: str) -> None:
    response = sc.call(app, verb, body)
    assert response.status_code == 400
    assert expected in response.json()["Error"]


def test_go_style_case_insensitive_wrapper_names_are_accepted(app: Any) -> None:
    body = {"pod": sc.pod(), "nodes": None, "nodeNames": ["node-0-0-0"]}
    assert sc.call(app, "/filter", body).json()["NodeNames"] == ["node-0-0-0"]


def test_oversized_body_is_refused_from_content_length_before_reading(app: Any) -> None:
    response = sc.call(app, "/filter", content=b"{}", headers={"Content-Length": str(10**9)})
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["Error"]


def test_oversized_chunked_body_is_refused_while_streaming(app: Any) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):
            sent += 1
            yield b" " * 4096

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
            return await client.post("/filter", content=chunks())

    response = asyncio.run(go())
    assert response.status_code == 413
    assert sent < 1000  # the app stopped reading past the limit


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["Pod", "Nodes", "NodeNames", "metadata", "name", "items", "Node", "UID"]), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON, verb=st.sampled_from(VERBS))
def test_no_json_body_makes_the_server_fail(app: Any, body: Any, verb: str) -> None:
    response = sc.call(app, verb, content=orjson.dumps(body))
    assert response.status_code in (200, 400)
