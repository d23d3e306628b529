"""The extender serves an OpenAPI document that describes exactly the verbs it answers."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from openapi_spec_validator import validate

from extender.app import create_app
from extender.openapi import VERBS, document
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from tests.extender import scenarios as sc
from topology.snapshots import load_snapshot


@pytest.mark.parametrize("prefix", ["", "/kbl"])
def test_served_document_is_valid_openapi_naming_every_verb_under_the_prefix(prefix: str) -> None:
    asyncio.run(_check_served(prefix))


async def _check_served(prefix: str) -> None:
    settings = ExtenderSettings(url_prefix=prefix)
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()), settings)
    app = create_app(state, settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kbl") as client:
        reply = await client.get(f"{prefix}/openapi.json")
        assert reply.status_code == 200
        served = orjson.loads(reply.content)
        validate(served)
        assert sorted(served["paths"]) == sorted(f"{prefix}/{verb}" for verb in VERBS)
        for path in served["paths"]:
            probe = await client.post(path, content=b"{not json")
            assert probe.status_code == 400, path


def test_document_schemas_resolve_and_scores_are_bounded_to_the_protocol_range() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    score = schemas["HostPriorityList"]["items"]["properties"]["Score"]
    assert (score["minimum"], score["maximum"]) == (0, 10)
    refs = {ref.rsplit("/", 1)[-1] for ref in _refs(doc)}
    assert refs <= set(schemas)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []
