"""Would a new node of the group help this pod? The simulation run before any growth.

A new node of a KBL's group carries the group's labels and taints in the group's zone with the
group's instance shape. A pending pod is helped by it only if every scheduling rule that does not
depend on other pods passes: its requests fit the shape, it tolerates the group's taints, its
``nodeSelector`` and required node affinity match the new node's labels, and, for
``kbl.io/locality: required``, its data will be on the new node: a DataSet whose ``nodeSelector``
selects the group follows the group (the placement reconciler places pieces on new nodes);
one that does not never will, so no new node can ever run the pod.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from placement.capacity.states import Affinity, InstanceShape, Requirement
from topology import labels
from topology.datasets import DataSet
from topology.kbls import KBL
from topology.nodes import Resources, Taint
from topology.pods import Locality, Pod

#: The verdict when a new node would take the pod.
HELPS = "helps"
_OS = "kubernetes.io/os"
_ARCH = "kubernetes.io/arch"


def required_affinity(pod_object: Mapping[str, Any]) -> Affinity:
    """The ``requiredDuringSchedulingIgnoredDuringExecution`` node selector terms of a raw pod."""
    spec = pod_object.get("spec") or {}
    node_affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = []
    for term in required.get("nodeSelectorTerms") or ():
        reqs = tuple(
            Requirement(str(e.get("key", "")), str(e.get("operator", "")), tuple(str(v) for v in e.get("values") or ()))
            for e in term.get("matchExpressions") or ()
        )
        terms.append(reqs)
    return tuple(terms)


def affinity_matches(affinity: Affinity, node_labels: Mapping[str, str]) -> bool:
    return not affinity or any(all(r.matches(node_labels) for r in term) for term in affinity)


def region_of(zone: str) -> str:
    """``us-east-1a`` -> ``us-east-1`` (AWS zone names are the region plus a letter)."""
    return zone[:-1] if zone and zone[-1].isalpha() else zone


def new_node_labels(kbl: KBL, group: str, zone: str, instance_type: str) -> dict[str, str]:
    """The labels a new node of the group carries once it joins."""
    return {
        _OS: "linux",
        _ARCH: "amd64",
        labels.ZONE: zone,
        labels.LEGACY_ZONE: zone,
        labels.REGION: region_of(zone),
        labels.LEGACY_REGION: region_of(zone),
        labels.INSTANCE_TYPE: instance_type,
        labels.LEGACY_INSTANCE_TYPE: instance_type,
        **kbl.node_group.labels,
        labels.KBL_LABEL: kbl.name,
        labels.NODE_GROUP_LABEL: group,
        labels.EKS_NODE_GROUP_LABEL: group,
    }


def new_node_taints(kbl: KBL) -> tuple[Taint, ...]:
    """The taints of the group's nodes: the KBL's wish plus the dedicated taint."""
    wish = kbl.node_group
    if wish.dedicated:
        return (*wish.taints, Taint(labels.DEDICATED_TAINT, kbl.name, "NoSchedule"))
    return tuple(wish.taints)


def follows_group(dataset: DataSet, node_labels: Mapping[str, str]) -> bool:
    """Will the DataSet's pieces be placed on a node with these labels? Only if its
    ``nodeSelector`` is set and selects it (a DataSet bound to the group)."""
    selector = dataset.spec.node_selector
    return bool(selector) and all(node_labels.get(k) == v for k, v in selector.items())


def pending_verdict(
    pod: Pod,
    shape: InstanceShape,
    node_labels: Mapping[str, str],
    taints: Sequence[Taint],
    datasets: Mapping[str, DataSet],
    *,
    affinity: Affinity = (),
) -> tuple[str, str]:
    """``(reason, message)``: :data:`HELPS` or why no new node of the group can run ``pod``."""
    if not shape.resources().fits(Resources(pod.requests.cpu_m, pod.requests.memory_b, 0, 1)):
        return "too-big", f"requests exceed one {shape.name} node"
    for taint in taints:
        if taint.effect in ("NoSchedule", "NoExecute") and not any(t.tolerates(taint) for t in pod.tolerations):
            return "taint", f"does not tolerate the group's taint {taint}"
    wrong = sorted(k for k, v in pod.node_selector.items() if node_labels.get(k) != v)
    if wrong:
        return "node-selector", f"nodeSelector {', '.join(wrong)} does not match the group's nodes"
    if not affinity_matches(affinity, node_labels):
        return "node-affinity", "required node affinity does not match the group's nodes"
    data = pod.data
    if data is not None and data.locality == Locality.REQUIRED and not data.problem:
        dataset = datasets.get(f"{data.namespace}/{data.dataset}")
        if dataset is None:
            return "no-dataset", f"requires the data of DataSet {data.namespace}/{data.dataset}, which does not exist"
        if not follows_group(dataset, node_labels):
            return "data-elsewhere", (
                f"requires local data of {dataset.key}, whose nodeSelector does not select the group: its pieces never move there"
            )
    return HELPS, "a new node of the group takes it"
