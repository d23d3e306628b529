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


def test_what_a_caller_sent_or_got_never_changes_a_stored_object_nor_a_watch_event() -> None:
    """Isolation as over the wire (every write and read is a JSON round trip, issue 24): the
    sent object, the patch, the answers and the watched events are the caller's own; a patch
    never changes the object an earlier event carried."""
    api = MemoryApi()
    _, version = api.list(NODES)
    sent = make_node("n")
    got = api.put(NODES, sent)
    sent["metadata"]["labels"]["mutated"] = "sent"
    got["metadata"]["labels"]["mutated"] = "got"
    patch = {"status": {"placement": {"shards": [[0, 1, 2]]}}}
    answer = api.patch_status(NODES, "n", patch)
    patch["status"]["placement"]["shards"][0][0] = 99
    answer["status"]["placement"]["shards"][0][1] = 99
    for e in api.watch(NODES, resource_version=version):
        e.object["metadata"]["labels"]["mutated"] = "watched"
    stored = api.get(NODES, "n")
    assert stored is not None
    assert "mutated" not in stored["metadata"]["labels"]
    assert stored["status"]["placement"]["shards"] == [[0, 1, 2]]
    first, second = list(api.watch(NODES, resource_version=version))
    assert "placement" not in (first.object.get("status") or {})  # the ADDED event still shows the object before the patch
    assert second.object["status"]["placement"]["shards"] == [[0, 1, 2]]
    assert first.object["metadata"]["resourceVersion"] != second.object["metadata"]["resourceVersion"]
    stored["metadata"]["labels"]["mutated"] = "read"
    assert "mutated" not in (api.get(NODES, "n") or {})["metadata"]["labels"]
