"""Example objects for demos, benchmarks and tests: clusters made from a real node object, pods.

Every synthetic node is a deep copy of a real EKS Node (``data/eks-node.json``, an
``hpc7g.16xlarge`` from a real cluster) with its name, addresses, provider id and topology labels
rewritten, so whatever reads them sees real-world object shapes (7 KB of labels, annotations,
conditions, images) rather than a minimal dict. Deterministic for a given seed.
"""

from __future__ import annotations

import copy
import json
import random
import zlib
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from topology import labels


@cache
def _template_text() -> str:
    return resources.files("topology").joinpath("data/eks-node.json").read_text(encoding="utf-8")


def node_template() -> dict[str, Any]:
    """A fresh copy of the real EKS node object."""
    obj: dict[str, Any] = json.loads(_template_text())
    return obj


def make_node(
    name: str,
    *,
    region: str = "us-east-1",
    zone: str | None = "us-east-1a",
    rack: str | None = None,
    storage_b: int | None = None,
    cpu_m: int | None = None,
    memory_b: int | None = None,
    extra_labels: Mapping[str, str] | None = None,
    taints: Iterable[Mapping[str, str]] = (),
    template: Mapping[str, Any] | None = None,
    legacy_labels_only: bool = False,
) -> dict[str, Any]:
    """One Node object made from the real template with the given identity and place.

    ``zone=None`` or ``rack=None`` leave the label out (a node with a missing level).
    ``legacy_labels_only`` keeps only ``failure-domain.beta.kubernetes.io/*`` labels.
    """
    obj = copy.deepcopy(dict(template)) if template is not None else node_template()
    meta = obj["metadata"]
    meta["name"] = name
    meta["uid"] = f"uid-{name}"
    lab: dict[str, str] = meta["labels"]
    for key in (labels.REGION, labels.ZONE, labels.LEGACY_REGION, labels.LEGACY_ZONE, labels.DEFAULT_RACK):
        lab.pop(key, None)
    lab[labels.HOSTNAME] = name
    if not legacy_labels_only:
        lab[labels.REGION] = region
    lab[labels.LEGACY_REGION] = region
    if zone is not None:
        lab[labels.LEGACY_ZONE] = zone
        if not legacy_labels_only:
            lab[labels.ZONE] = zone
    if rack is not None:
        lab[labels.DEFAULT_RACK] = rack
    lab.update(extra_labels or {})
    obj["spec"] = {"providerID": f"aws:///{zone or region}/i-{zlib.crc32(name.encode()):08x}{zlib.crc32(name[::-1].encode()):09x}"}
    taint_list = [dict(t) for t in taints]
    if taint_list:
        obj["spec"]["taints"] = taint_list
    alloc = obj["status"]["allocatable"]
    if storage_b is not None:
        alloc["ephemeral-storage"] = str(storage_b)
    if cpu_m is not None:
        alloc["cpu"] = f"{cpu_m}m"
    if memory_b is not None:
        alloc["memory"] = str(memory_b)
    for addr in obj["status"].get("addresses", []):
        if addr.get("type") in ("InternalDNS", "Hostname"):
            addr["address"] = name
    return obj


def make_cluster_nodes(
    *,
    zones: int = 3,
    racks_per_zone: int = 4,
    hosts_per_rack: int = 5,
    region: str = "us-east-1",
    storage_b: int = 2 * 10**12,
    weights: str = "equal",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Node objects for a ``zones x racks x hosts`` cluster.

    Parameters
    ----------
    weights:
        ``"equal"``: every node has ``storage_b`` allocatable storage. ``"mixed"``: storage is
        drawn from 1x, 2x and 4x ``storage_b / 2`` (seeded), as in a cluster grown over time.
    seed:
        Seed for the mixed weights.

    Returns
    -------
    list[dict]
        Raw Node objects named ``node-<zone>-<rack>-<host>``.
    """
    rng = random.Random(seed)
    template = node_template()
    out = []
    letters = "abcdefghijklmnopqrstuvwxyz"
    for z in range(zones):
        zone = f"{region}{letters[z % 26]}" + (str(z // 26) if z >= 26 else "")
        for r in range(racks_per_zone):
            for h in range(hosts_per_rack):
                storage = storage_b if weights == "equal" else rng.choice((1, 2, 4)) * storage_b // 2
                out.append(
                    make_node(f"node-{z}-{r}-{h}", region=region, zone=zone, rack=f"rack-{r}", storage_b=storage, template=template)
                )
    return out


def make_pod(
    name: str,
    *,
    namespace: str = "default",
    dataset: str | None = None,
    shards: str | None = None,
    locality: str | None = None,
    kbl: str | None = None,
    cpu: str = "1",
    memory: str = "1Gi",
    scheduler: str | None = "kbl-scheduler",
    tolerations: Iterable[Mapping[str, Any]] = (),
    node_name: str | None = None,
    uid: str | None = None,
    image: str = "public.ecr.aws/docker/library/busybox:1.36",
    container: str = "main",
    pod_labels: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    restart_policy: str | None = None,
    created: str | None = "2026-01-01T00:00:00Z",
    unschedulable: bool = False,
) -> dict[str, Any]:
    """A Pod object as the API server serves it (camelCase, status, creation timestamp).

    ``dataset``, ``shards``, ``locality`` and ``kbl`` become the kbl annotations when given;
    the pod is ``Running`` on ``node_name`` when given, else ``Pending`` (with kube-scheduler's
    ``PodScheduled=False/Unschedulable`` condition when ``unschedulable``). ``created=None``
    leaves the creation timestamp out.
    """
    annotations: dict[str, str] = {}
    for key, value in ((labels.POD_DATASET, dataset), (labels.POD_SHARDS, shards), (labels.POD_LOCALITY, locality), (labels.POD_KBL, kbl)):
        if value is not None:
            annotations[key] = value
    spec: dict[str, Any] = {
        "containers": [{"name": container, "image": image, "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
        "tolerations": [dict(t) for t in tolerations],
    }
    if scheduler is not None:
        spec["schedulerName"] = scheduler
    if node_name is not None:
        spec["nodeName"] = node_name
    if node_selector is not None:
        spec["nodeSelector"] = dict(node_selector)
    if restart_policy is not None:
        spec["restartPolicy"] = restart_policy
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}"}
    if pod_labels is not None:
        meta["labels"] = dict(pod_labels)
    meta["annotations"] = annotations
    if created is not None:
        meta["creationTimestamp"] = created
    status: dict[str, Any] = {"phase": "Running" if node_name else "Pending"}
    if unschedulable and not node_name:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def make_kbl(
    name: str,
    *,
    namespace: str = "default",
    instance_types: Sequence[str] = ("m6i.xlarge",),
    max_size: int = 10,
    min_size: int | None = 0,
    stages: Sequence[Mapping[str, Any]] = (),
    annotations: Mapping[str, str] | None = None,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A KBL object with a dedicated node group (``min_size=None`` leaves ``minSize`` out),
    a blueprint when ``stages`` are given, and ``annotations`` / ``status`` when given."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    group: dict[str, Any] = {"mode": "dedicated", "instanceTypes": list(instance_types)}
    if min_size is not None:
        group["minSize"] = min_size
    group["maxSize"] = max_size
    obj: dict[str, Any] = {"apiVersion": labels.API_VERSION, "kind": "KBL", "metadata": meta, "spec": {"nodeGroup": group}}
    if stages:
        obj["spec"]["blueprint"] = {"stages": [dict(s) for s in stages]}
    if status:
        obj["status"] = dict(status)
    return obj


def as_list(objects: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Wrap objects in a ``v1 List``, the shape ``kubectl get -o json`` prints."""
    return {"apiVersion": "v1", "kind": "List", "items": [dict(o) for o in objects], "metadata": {"resourceVersion": ""}}
