"""Helpers of the agent tests: sources, DataSets with a placement written by the test, waiting.

The placement in these tests is written by the test itself (what the placement reconciler
would write): the reconciler is not what they test.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kube.api import DATASETS, NODE_HOLDINGS, ROLE_BINDINGS, ROLES, TOKEN_REVIEWS, KubeApi
from kube.memory import MemoryApi
from topology import labels
from topology.holdings import NodeHoldings

TOKEN = "reader-token-0123456789"
NS = "ml"


def write_source(folder: Path, shards: int, size: int, *, name: str = "part-{index:03d}.bin", seed: int = 7) -> dict[int, bytes]:
    """``shards`` random files of ``size`` bytes under ``folder``; returns their bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(shards):
        data = hashlib.sha256(f"{seed}-{i}".encode()).digest() * (size // 32) + os.urandom(size % 32)
        (folder / name.format(index=i)).write_bytes(data)
        out[i] = data
    return out


def node(name: str, zone: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": {labels.HOSTNAME: name, labels.ZONE: zone}},
    }


def dataset(
    name: str,
    *,
    shards: int,
    size: int,
    redundancy: Mapping[str, Any],
    nodes: Sequence[str],
    rows: Sequence[Sequence[int]],
    source: Mapping[str, Any] | None,
    shard_key: str = "part-{index:03d}.bin",
    uid: str = "uid-1",
    transfers: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A DataSet object with ``status.placement`` as the reconciler would write it."""
    spec: dict[str, Any] = {
        "shards": shards,
        "shardSize": str(size),
        "redundancy": dict(redundancy),
        "failureDomain": "host",
        "shardKey": shard_key,
    }
    if source is not None:
        spec["source"] = dict(source)
    status: dict[str, Any] = {"placement": {"nodes": list(nodes), "shards": [list(r) for r in rows]}}
    if transfers:
        status["transfers"] = [dict(t) for t in transfers]
    return {
        "apiVersion": labels.API_VERSION,
        "kind": "DataSet",
        "metadata": {"name": name, "namespace": NS, "uid": uid},
        "spec": spec,
        "status": status,
    }


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def holdings(api: KubeApi, node_name: str) -> NodeHoldings | None:
    obj = api.get(NODE_HOLDINGS, node_name)
    return NodeHoldings.from_object(obj) if obj else None


def ready_on(api: KubeApi, node_name: str, ds: str, key: str) -> frozenset[int]:
    h = holdings(api, node_name)
    mine = h.of(f"{NS}/{ds}") if h else None
    return mine.ready.get(key, frozenset()) if mine else frozenset()


class ReviewingApi(MemoryApi):
    """MemoryApi whose TokenReview create answers like the API server: authenticated for known tokens."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        super().__init__()
        self.tokens = dict(tokens)
        self.reviews: list[dict[str, Any]] = []

    def create(self, resource: Any, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        if resource != TOKEN_REVIEWS:
            return super().create(resource, obj, namespace=namespace)
        self.reviews.append(dict(obj))
        spec = obj.get("spec") or {}
        user = self.tokens.get(str(spec.get("token")))
        if user is None:
            return {**obj, "status": {"authenticated": False, "error": "invalid bearer token"}}
        namespace = user.split(":")[2] if user.startswith("system:serviceaccount:") else ""
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"] if namespace else []
        who = {"username": user, "uid": f"uid-{user}", "groups": [*groups, "system:authenticated"]}
        return {**obj, "status": {"authenticated": True, "user": who, "audiences": list(spec.get("audiences") or [])}}


def grant_dataset_reads(api: MemoryApi, namespace: str, service_account: str, *, role: str = "dataset-reader") -> None:
    """A Role allowing ``get`` on DataSets in ``namespace``, bound to a ServiceAccount there (as a user would)."""
    rule = {"apiGroups": ["kbl.io"], "resources": ["datasets"], "verbs": ["get", "list", "watch"]}
    rbac = "rbac.authorization.k8s.io/v1"
    api.put(ROLES, {"apiVersion": rbac, "kind": "Role", "metadata": {"name": role, "namespace": namespace}, "rules": [rule]})
    binding = {
        "apiVersion": rbac,
        "kind": "RoleBinding",
        "metadata": {"name": f"{role}-{service_account}", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }
    api.put(ROLE_BINDINGS, binding)


def put_dataset(api: MemoryApi, obj: Mapping[str, Any]) -> None:
    meta = obj["metadata"]
    if api.get(DATASETS, meta["name"], namespace=meta["namespace"]) is None:
        api.create(DATASETS, obj, namespace=meta["namespace"])
    else:
        api.replace(DATASETS, meta["name"], obj, namespace=meta["namespace"])
