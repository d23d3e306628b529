"""Paginated lists (``limit``/``continue``): MemoryApi serves pages, KubeClient walks them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from kube.api import DATASETS, NODES, PODS, GoneError
from kube.client import KubeClient
from kube.memory import MemoryApi
from tests.kube.emulators import Emulator
from topology.examples import make_node


def memory_with_nodes(count: int) -> MemoryApi:
    api = MemoryApi(history=5)
    for i in range(count):
        api.put(NODES, make_node(f"n{i:02d}"))
    return api


def test_memory_pages_cover_the_list_once_in_order() -> None:
    api = memory_with_nodes(7)
    names: list[str] = []
    token = ""
    pages = 0
    while True:
        items, version, token = api.list_page(NODES, limit=3, continue_token=token)
        names += [i["metadata"]["name"] for i in items]
        pages += 1
        assert version == str(api.version)
        if not token:
            break
    assert pages == 3
    assert names == [f"n{i:02d}" for i in range(7)]
    whole, _ = api.list(NODES)
    assert [o["metadata"]["name"] for o in whole] == names


def test_memory_pages_namespaced_objects_by_namespace_then_name() -> None:
    api = MemoryApi()
    for ns, name in [("a-b", "x"), ("a", "z"), ("a", "y"), ("b", "a")]:
        api.put(PODS, {"metadata": {"name": name, "namespace": ns}})
    seen: list[tuple[str, str]] = []
    token = ""
    while True:
        items, _, token = api.list_page(PODS, limit=1, continue_token=token)
        seen += [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items]
        if not token:
            break
    assert seen == sorted(seen)
    assert len(seen) == 4


def test_an_expired_continue_token_is_gone() -> None:
    api = memory_with_nodes(3)
    _, _, token = api.list_page(NODES, limit=1)
    for i in range(10):  # history of 5: the token's version leaves the window
        api.put(NODES, make_node(f"m{i}"))
    with pytest.raises(GoneError):
        api.list_page(NODES, limit=1, continue_token=token)


class PagedCore:
    """``CoreV1Api.list_node`` served from a MemoryApi, recording what the client asked."""

    def __init__(self, api: MemoryApi) -> None:
        self.api = api
        self.calls: list[dict[str, Any]] = []

    def list_node(self, **kwargs: Any) -> SimpleNamespace:
        self.calls.append({k: v for k, v in kwargs.items() if not k.startswith("_") or k == "_continue"})
        items, version, token = self.api.list_page(NODES, limit=kwargs.get("limit"), continue_token=kwargs.get("_continue", ""))
        for item in items:
            item.setdefault("status", {})["images"] = [{"names": ["registry/image:tag"], "sizeBytes": 1}]
        body = {"kind": "NodeList", "metadata": {"resourceVersion": version, "continue": token}, "items": items}
        return SimpleNamespace(data=orjson.dumps(body))


def test_client_lists_page_by_page_and_keeps_only_what_kbl_reads() -> None:
    client = KubeClient.from_url("http://127.0.0.1:9")
    core = PagedCore(memory_with_nodes(5))
    client.core = core
    client.page_size = 2
    nodes, version = client.list(NODES)
    assert [n["metadata"]["name"] for n in nodes] == [f"n{i:02d}" for i in range(5)]
    assert version == str(core.api.version)
    assert [c.get("limit") for c in core.calls] == [2, 2, 2]
    assert core.calls[0].get("_continue") is None
    assert all(c.get("_continue") for c in core.calls[1:])
    assert all("images" not in n["status"] for n in nodes)
    assert nodes[0]["status"]["allocatable"]["cpu"] == "63770m"
    assert nodes[0]["kind"] == "Node"


def test_client_paging_against_the_emulator(emulator: Emulator) -> None:
    for i in range(3):
        emulator.post("/api/v1/nodes", make_node(f"n{i}"))
    client = KubeClient.from_url(emulator.url)
    client.page_size = 2
    nodes, _ = client.list(NODES)
    assert sorted(n["metadata"]["name"] for n in nodes) == ["n0", "n1", "n2"]


def test_typed_lists_give_the_objects_the_careful_readers_would(emulator: Emulator) -> None:
    from topology.datasets import DataSet, Replicas, dataset_object
    from topology.nodes import Node

    for i in range(3):
        node = make_node(f"n{i}", rack=f"r{i % 2}")
        node["status"]["images"] = [{"names": ["registry/image:tag"], "sizeBytes": 1}]
        emulator.post("/api/v1/nodes", node)
    odd = make_node("odd")
    odd["metadata"]["labels"]["x"] = 5  # not plainly well formed: stays a dict, the state rejects it
    emulator.post("/api/v1/nodes", odd)
    ds = dataset_object("d", namespace="x", shards=3, shard_size="1Gi", redundancy=Replicas(2))
    ds["status"] = {"placement": {"nodes": ["n0", "n1", "n2"], "shards": [[0, 1], [1, 2], [2]]}, "conditions": []}
    emulator.post("/apis/kbl.io/v1alpha1/namespaces/x/datasets", ds)
    plain = KubeClient.from_url(emulator.url)
    typed = plain.typed_reader()
    plain_nodes, _ = plain.list(NODES)
    typed_nodes: list[Any] = typed.list(NODES)[0]  # Nodes, or dicts where unusual
    expected = {n["metadata"]["name"]: Node.from_object(n) for n in plain_nodes if n["metadata"]["name"] != "odd"}
    assert {n.name: n for n in typed_nodes if isinstance(n, Node)} == expected
    assert [n["metadata"]["name"] for n in typed_nodes if isinstance(n, dict)] == ["odd"]
    (plain_ds,), _ = plain.list(DATASETS)
    (typed_ds,), _ = typed.list(DATASETS)
    assert all(isinstance(n, dict) for n in plain.list(NODES)[0])  # the reader's client itself lists raw objects
    a, b = DataSet.from_object(plain_ds), DataSet.from_object(typed_ds)
    assert a.placement is not None
    assert b.placement is not None
    assert a.placement.equals(b.placement)
    assert a.spec == b.spec
