"""The bench's API server: the real KubeClient (and so the agents' informers) over HTTP against MemoryApi."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from benchmarks.apiserving import ApiServer
from kube.api import DATASETS, NODE_HOLDINGS, NODES, ConflictError
from kube.client import KubeClient
from kube.memory import MemoryApi


@pytest.fixture
def served() -> Iterator[tuple[MemoryApi, KubeClient]]:
    api = MemoryApi()
    server = ApiServer(api, token="t").start()
    client = KubeClient.from_url(server.url)
    yield api, client
    client.close()
    server.close()


def test_lists_pages_gets_creates_and_patches_status_as_the_api_server_does(served: tuple[MemoryApi, KubeClient]) -> None:
    api, client = served
    for i in range(3):
        api.put(NODES, {"metadata": {"name": f"n{i}", "labels": {"zone": "a" if i else "b"}}})
    client.page_size = 2
    items, version = client.list(NODES)
    assert [o["metadata"]["name"] for o in items] == ["n0", "n1", "n2"]
    assert version == str(api.version)
    assert [o["metadata"]["name"] for o in client.list(NODES, label_selector="zone=a")[0]] == ["n1", "n2"]
    assert client.get(NODES, "n1")["metadata"]["name"] == "n1"  # type: ignore[index]
    assert client.get(NODES, "nope") is None
    client.create(NODE_HOLDINGS, {"metadata": {"name": "n1"}, "status": {"endpoint": "x"}})
    with pytest.raises(ConflictError):
        client.create(NODE_HOLDINGS, {"metadata": {"name": "n1"}})
    patched = client.patch_status(NODE_HOLDINGS, "n1", {"status": {"freeBytes": 5}})
    assert patched["status"] == {"endpoint": "x", "freeBytes": 5}
    client.create_event({"kind": "DataSet", "metadata": {"name": "d", "namespace": "ml"}}, reason="Why", message="because")
    assert api.events[-1]["reason"] == "Why"


def test_watch_streams_the_events_of_one_resource_after_a_version(served: tuple[MemoryApi, KubeClient]) -> None:
    api, client = served
    seen: list[tuple[str, str]] = []
    start = str(api.version)

    def watch() -> None:
        for event in client.watch(DATASETS, resource_version=start, timeout_s=2):
            seen.append((event.type, event.object["metadata"]["name"]))

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.2)
    api.create(DATASETS, {"metadata": {"name": "d1"}}, namespace="ml")
    api.put(NODES, {"metadata": {"name": "other"}})  # another resource: not in this stream
    api.patch(DATASETS, "d1", {"spec": {"shards": 1}}, namespace="ml")
    api.delete(DATASETS, "d1", "ml")
    thread.join(10)
    assert seen == [("ADDED", "d1"), ("MODIFIED", "d1"), ("DELETED", "d1")]
