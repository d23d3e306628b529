"""Builders of raw Kubernetes objects for controller and capacity tests (KBLs, pods, datasets)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from topology.datasets import Replicas, dataset_object
from topology.examples import make_kbl, make_node, make_pod
from topology.labels import DEDICATED_TAINT, POD_DATASET, POD_KBL, POD_SHARDS

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
    return make_kbl(
        name,
        namespace=namespace,
        instance_types=instance_types,
        max_size=max_size,
        min_size=min_size,
        stages=stages,
        annotations=dict(annotations or {}),
        status=status,
    )


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
    obj = make_pod(
        name,
        namespace=namespace,
        kbl=kbl,
        cpu=cpu,
        memory=memory,
        node_name=node,
        tolerations=[{"key": DEDICATED_TAINT, "operator": "Equal", "value": kbl, "effect": "NoSchedule"}],
        pod_labels=dict(labels or {}),
        created=None,
        unschedulable=unschedulable,
    )
    ann = {POD_KBL: kbl, **(annotations or {})}
    if dataset:
        ann[POD_DATASET] = dataset
    if shards:
        ann[POD_SHARDS] = shards
    obj["metadata"]["annotations"] = ann
    if node:
        obj["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
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
