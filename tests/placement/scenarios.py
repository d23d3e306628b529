"""Builders of raw Kubernetes objects for controller and capacity tests (KBLs, pods, datasets)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from topology.datasets import Replicas, dataset_object
from topology.examples import make_node

T0 = 1_795_000_000.0  # a fixed epoch for simulated clocks


def kbl_object(
    name: str,
    *,
    namespace: str = "default",
    instance_types: Sequence[str] = ("m6i.xlarge",),
    max_size: int = 10,
    min_size: int = 0,
    stages: Sequence[Mapping[str, Any]] = (),
    annotations: Mapping[str, str] | None = None,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "kbl.io/v1alpha1",
        "kind": "KBL",
        "metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations or {})},
        "spec": {"nodeGroup": {"mode": "dedicated", "instanceTypes": list(instance_types), "minSize": min_size, "maxSize": max_size}},
    }
    if stages:
        obj["spec"]["blueprint"] = {"stages": [dict(s) for s in stages]}
    if status:
        obj["status"] = dict(status)
    return obj


def pod_object(
    name: str,
    *,
    kbl: str,
    namespace: str = "default",
    cpu: str = "1",
    memory: str = "2Gi",
    dataset: str | None = None,
    shards: str | None = None,
    node: str | None = None,
    unschedulable: bool = True,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    ann = {"kbl.io/kbl": kbl, **(annotations or {})}
    if dataset:
        ann["kbl.io/dataset"] = dataset
    if shards:
        ann["kbl.io/shards"] = shards
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "annotations": ann, "labels": dict(labels or {})},
        "spec": {
            "schedulerName": "kbl-scheduler",
            "containers": [{"name": "main", "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
            "tolerations": [{"key": "kbl.io/dedicated", "operator": "Equal", "value": kbl, "effect": "NoSchedule"}],
        },
        "status": {"phase": "Pending"},
    }
    if node:
        obj["spec"]["nodeName"] = node
        obj["status"] = {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    elif unschedulable:
        obj["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
    return obj


def placed_dataset(name: str, holders: Sequence[Sequence[str]], *, namespace: str = "default", replicas: int = 2) -> dict[str, Any]:
    """A DataSet whose shard ``i`` lives on ``holders[i]`` (node names)."""
    nodes = sorted({n for row in holders for n in row})
    obj = dataset_object(name, namespace=namespace, shards=len(holders), shard_size="10Gi", redundancy=Replicas(replicas))
    obj["status"] = {"placement": {"nodes": nodes, "shards": [[nodes.index(n) for n in row] for row in holders]}}
    return obj


def base_nodes() -> list[dict[str, Any]]:
    """Six general nodes: two per zone in us-east-1a/b/c."""
    out = []
    for z in "abc":
        for i in range(2):
            out.append(make_node(f"gen-{z}{i}", zone=f"us-east-1{z}", rack=f"rack-{i}"))
    return out
