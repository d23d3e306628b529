"""Cluster scenarios and kube-scheduler-shaped payloads for the extender tests.

Nodes are copies of the real EKS node object (:mod:`topology.examples`); requests are built the
way kube-scheduler marshals ``ExtenderArgs``: PascalCase wrapper fields, the unused one ``null``,
a ``NodeList`` with ``metadata`` and ``items``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from topology import labels
from topology.datasets import Replicas, dataset_object
from topology.examples import as_list, make_cluster_nodes, make_node, make_pod

NAMESPACE = "lab"
DATASET = "genome"
SHARD_SIZE = 10 * 2**30
#: shards 0-1 on node-0-0-0 and node-1-0-0; shards 2-3 on node-0-1-0 and node-1-1-0.
PLACEMENT_NODES = ["node-0-0-0", "node-1-0-0", "node-0-1-0", "node-1-1-0"]
PLACEMENT_SHARDS = [[0, 1], [0, 1], [2, 3], [2, 3]]


def nodes(*, extra: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """12 real-shaped nodes: 2 zones x 2 racks x 3 hosts, named ``node-<zone>-<rack>-<host>``."""
    return [*make_cluster_nodes(zones=2, racks_per_zone=2, hosts_per_rack=3), *extra]


def dataset(name: str = DATASET, *, placed: bool = True) -> dict[str, Any]:
    obj = dataset_object(name, namespace=NAMESPACE, shards=4, shard_size=SHARD_SIZE, redundancy=Replicas(2))
    if placed:
        obj["status"] = {"placement": {"nodes": PLACEMENT_NODES, "shards": PLACEMENT_SHARDS}}
    return obj


def dedicated_node(name: str, kbl: str, *, zone: str = "us-east-1a", rack: str = "rack-0") -> dict[str, Any]:
    """A node of KBL ``kbl``'s dedicated group (label and taint)."""
    return make_node(
        name,
        zone=zone,
        rack=rack,
        extra_labels={labels.KBL_LABEL: kbl},
        taints=[{"key": labels.DEDICATED_TAINT, "value": kbl, "effect": "NoSchedule"}],
    )


def pod(
    name: str = "reader",
    *,
    dataset_name: str | None = DATASET,
    shards: str | None = "0-1",
    locality: str | None = None,
    kbl: str | None = None,
    cpu: str = "1",
    memory: str = "1Gi",
    tolerations: Sequence[Mapping[str, Any]] = (),
    node_name: str | None = None,
    uid: str | None = None,
) -> dict[str, Any]:
    """A Pod as the API server serves it (:func:`topology.examples.make_pod` in the scenario's namespace)."""
    return make_pod(
        name,
        namespace=NAMESPACE,
        dataset=dataset_name,
        shards=shards,
        locality=locality,
        kbl=kbl,
        cpu=cpu,
        memory=memory,
        tolerations=tolerations,
        node_name=node_name,
        uid=uid,
    )


def snapshot(
    *,
    extra_nodes: Sequence[dict[str, Any]] = (),
    pods: Sequence[dict[str, Any]] = (),
    datasets: Sequence[dict[str, Any]] | None = None,
    kbls: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A ``kubectl get -o json`` List of the scenario."""
    return as_list([*nodes(extra=extra_nodes), *(datasets if datasets is not None else [dataset()]), *pods, *kbls])


def names_args(pod_obj: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """``ExtenderArgs`` as sent with ``nodeCacheCapable: true``."""
    return {"Pod": dict(pod_obj), "Nodes": None, "NodeNames": list(names)}


def nodes_args(pod_obj: Mapping[str, Any], node_objs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``ExtenderArgs`` as sent with ``nodeCacheCapable: false`` (a full NodeList)."""
    return {"Pod": dict(pod_obj), "Nodes": {"metadata": {}, "items": [dict(n) for n in node_objs]}, "NodeNames": None}


def call(
    app: FastAPI,
    path: str,
    body: Any = None,
    *,
    content: bytes | None = None,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """One request through ``httpx.ASGITransport`` (in-process, same code path as a socket)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://extender") as client:
            data = content if content is not None else (orjson.dumps(body) if body is not None else None)
            return await client.request(method, path, content=data, headers={"Content-Type": "application/json", **(headers or {})})

    return asyncio.run(go())


def scores(response: httpx.Response) -> dict[str, int]:
    assert response.status_code == 200, response.text
    out: dict[str, int] = {}
    for entry in response.json():
        assert set(entry) == {"Host", "Score"}
        assert isinstance(entry["Score"], int)
        assert 0 <= entry["Score"] <= 10
        out[entry["Host"]] = entry["Score"]
    return out
