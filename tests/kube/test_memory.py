"""The in-memory Kubernetes API behaves like the API server where the controller depends on it."""

from __future__ import annotations

import pytest

from kube.api import NODES, PODS, ApiError, GoneError
from kube.memory import MemoryApi
from tests.placement.scenarios import pod_object
from topology.examples import make_node


def test_merge_patch_deletes_nulls_and_honours_a_resource_version_precondition() -> None:
    api = MemoryApi()
    stored = api.put(NODES, make_node("n"))
    api.patch(NODES, "n", {"metadata": {"annotations": {"a": "1"}}})
    out = api.patch(NODES, "n", {"metadata": {"annotations": {"a": None}}})
    assert "a" not in out["metadata"]["annotations"]
    with pytest.raises(ApiError) as err:
        api.patch(NODES, "n", {"metadata": {"resourceVersion": stored["metadata"]["resourceVersion"], "labels": {"x": "y"}}})
    assert err.value.status == 409


def test_watch_from_a_version_older_than_the_history_is_gone() -> None:
    api = MemoryApi(history=3)
    for i in range(6):
        api.put(NODES, make_node(f"n{i}"))
    with pytest.raises(GoneError):
        list(api.watch(NODES, resource_version="1"))
    _, version = api.list(NODES)
    api.put(NODES, make_node("late"))
    assert [e.object["metadata"]["name"] for e in api.watch(NODES, resource_version=version)] == ["late"]


def test_eviction_respects_a_disruption_budget() -> None:
    api = MemoryApi()
    for i in range(2):
        api.put(PODS, pod_object(f"db{i}", kbl="x", node="n", labels={"app": "db"}))
    api.pdbs.append(({"app": "db"}, 1))
    assert api.evict("default", "db0") is True
    assert api.evict("default", "db1") is False
    assert api.get(PODS, "db1") is not None
