"""KubeClient (the official client underneath) against kmock's emulator over real HTTP."""

from __future__ import annotations

import pytest

from kube.api import DATASETS, NODES, PODS, ApiError, GoneError
from kube.client import KubeClient
from tests.extender import scenarios as sc
from tests.kube.emulators import Emulator
from topology.examples import make_node

SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def test_lists_core_and_custom_resources_as_raw_objects_with_kind(emulator: Emulator) -> None:
    emulator.post("/api/v1/nodes", make_node("n1"))
    emulator.post(f"/api/v1/namespaces/{sc.NAMESPACE}/pods", sc.pod("p1"))
    emulator.post(f"/apis/kbl.io/v1alpha1/namespaces/{sc.NAMESPACE}/datasets", sc.dataset())
    client = KubeClient.from_url(emulator.url)
    nodes, _ = client.list(NODES)
    assert [n["metadata"]["name"] for n in nodes] == ["n1"]
    assert nodes[0]["status"]["allocatable"]["cpu"] == "63770m"  # the real object, untouched
    pods, _ = client.list(PODS)
    assert pods[0]["kind"] == "Pod"
    datasets, _ = client.list(DATASETS)
    assert datasets[0]["kind"] == "DataSet"
    assert datasets[0]["status"]["placement"]["nodes"] == sc.PLACEMENT_NODES
    assert client.get(DATASETS, sc.DATASET, namespace=sc.NAMESPACE) is not None
    assert client.get(NODES, "missing") is None


def test_patch_is_a_json_merge_patch_and_status_goes_to_the_subresource(emulator: Emulator) -> None:
    emulator.post(f"/apis/kbl.io/v1alpha1/namespaces/{sc.NAMESPACE}/datasets", sc.dataset(placed=False))
    client = KubeClient.from_url(emulator.url)
    out = client.patch(DATASETS, sc.DATASET, {"metadata": {"labels": {"a": "b"}}}, namespace=sc.NAMESPACE)
    assert out["metadata"]["labels"] == {"a": "b"}
    patches = emulator.requests("patch")
    assert patches[0].headers["Content-Type"] == "application/merge-patch+json"
    client.patch_status(DATASETS, sc.DATASET, {"status": {"placement": {"nodes": ["x"], "shards": []}}}, namespace=sc.NAMESPACE)
    assert emulator.requests("patch")[1].url.path.endswith(f"/datasets/{sc.DATASET}/status")


def test_binding_goes_to_the_pods_binding_subresource_with_the_uid(emulator: Emulator) -> None:
    emulator.post(f"/api/v1/namespaces/{sc.NAMESPACE}/pods", sc.pod("p1"))
    # the emulator does not implement subresources: answer as the API server does (a Status)
    emulator.kmock[f"post /api/v1/namespaces/{sc.NAMESPACE}/pods/p1/binding"] << SUCCESS
    client = KubeClient.from_url(emulator.url)
    client.create_binding(sc.NAMESPACE, "p1", "uid-p1", "node-0-0-0")
    posts = [r for r in emulator.requests("post") if r.url.path.endswith("/binding")]
    assert posts[0].url.path == f"/api/v1/namespaces/{sc.NAMESPACE}/pods/p1/binding"
    assert posts[0].data["target"] == {"apiVersion": "v1", "kind": "Node", "name": "node-0-0-0"}
    assert posts[0].data["metadata"]["uid"] == "uid-p1"


def test_eviction_refused_by_a_disruption_budget_is_false_not_an_error(emulator: Emulator) -> None:
    emulator.kmock[f"post /api/v1/namespaces/{sc.NAMESPACE}/pods/held/eviction"] << 429
    emulator.kmock[f"post /api/v1/namespaces/{sc.NAMESPACE}/pods/free/eviction"] << SUCCESS
    emulator.kmock[f"post /api/v1/namespaces/{sc.NAMESPACE}/pods/gone/eviction"] << 404
    client = KubeClient.from_url(emulator.url)
    assert client.evict(sc.NAMESPACE, "held") is False
    assert client.evict(sc.NAMESPACE, "free") is True
    assert client.evict(sc.NAMESPACE, "gone") is True  # already gone counts as evicted
    eviction = next(r for r in emulator.requests("post") if r.url.path.endswith("/free/eviction"))
    assert eviction.data["apiVersion"] == "policy/v1"


def test_events_are_core_v1_events_about_the_pod(emulator: Emulator) -> None:
    client = KubeClient.from_url(emulator.url)
    client.create_event(sc.pod("p1"), reason="KblTest", message="hello", type="Warning")
    event = next(r for r in emulator.requests("post") if "/events" in r.url.path).data
    assert event["involvedObject"]["name"] == "p1"
    assert event["involvedObject"]["uid"] == "uid-p1"
    assert (event["reason"], event["type"], event["message"]) == ("KblTest", "Warning", "hello")


def test_error_statuses_map_to_api_errors_and_gone(emulator: Emulator) -> None:
    emulator.kmock["get /api/v1/nodes"] << 403
    emulator.kmock["get /api/v1/pods"] << 410
    client = KubeClient.from_url(emulator.url)
    with pytest.raises(ApiError) as denied:
        client.list(NODES)
    assert denied.value.status == 403
    with pytest.raises(GoneError):
        client.list(PODS)


def test_unreachable_api_server_is_status_zero() -> None:
    client = KubeClient.from_url("http://127.0.0.1:9")
    with pytest.raises(ApiError) as failed:
        client.list(NODES)
    assert failed.value.status == 0
