"""Karpenter NodePools as kbl node groups (Karpenter on EKS, and EKS Auto Mode).

Karpenter provisions nodes for pending pods; it has no "desired size". So a kbl node group is:

- a ``NodePool`` (``karpenter.sh/v1``, named like every kbl group, labelled
  ``kbl.io/managed-by=kbl``) whose node template requires the zone that holds the KBL's data
  (``topology.kubernetes.io/zone``), the instance type, the capacity type
  (``karpenter.sh/capacity-type``), carries the KBL's labels, ``kbl.io/node-group`` and its
  dedicated taint, references the ``EC2NodeClass`` (or Auto Mode's ``NodeClass``) named in the
  settings, has ``limits`` of ``max_size`` nodes of the instance shape, consolidates only empty
  nodes (``WhenEmpty``, with disruption budgets) and never expires a node by age
  (``expireAfter: Never``: expiry is forceful in Karpenter v1 and would ignore the data). Nodes
  that hold pieces the placement still needs are protected with ``karpenter.sh/do-not-disrupt``
  by :mod:`controller.disrupting`;
- a placeholder ``Deployment`` of pause pods at a low ``PriorityClass`` (negative value), one
  per wanted node, each requesting one node's allocatable (minus a margin), tolerating the
  dedicated taint and selecting the NodePool. Karpenter launches a node for every pending
  placeholder: ``set_size(name, n)`` keeps ``n`` placeholders, which is pre-warming. A real pod
  of the KBL preempts a placeholder (higher priority) and lands at once on the warm node; the
  evicted placeholder pends and Karpenter brings one more node, bounded by the NodePool's
  ``limits``. ``set_size(name, 0)`` removes the placeholders and Karpenter's empty-node
  consolidation removes the empty nodes; the controller moves data first (the ``kbl.io/drain``
  annotation) and never removes a node itself here.

``remove_instance`` deletes the node's ``NodeClaim`` (Karpenter cordons and drains the node, then
terminates the instance) and drops one placeholder. Images and rolls are Karpenter's: the node
image is chosen by the node class's ``amiSelectorTerms``, and Karpenter's drift replaces nodes
whose image no longer matches. ``create_image`` and ``roll_group`` therefore raise
:class:`~controller.providers.ProviderError` with code ``ManagedByKarpenter``: change the
EC2NodeClass instead (kbl does not own it, it is shared by every NodePool that references it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.providers import (
    CLUSTER_TAG,
    KBL_TAG,
    MANAGED_BY,
    MANAGED_BY_TAG,
    ZONE_TAG,
    NodeGroupInfo,
    NodeGroupSpec,
    ProviderError,
    RollStrategy,
)
from controller.providers.catalog import KNOWN_SHAPES as INSTANCE_SHAPES
from kube.api import DEPLOYMENTS, NODECLAIMS, NODEPOOLS, PRIORITYCLASSES, ApiError, ConflictError, DeletesObjects, KubeApi, Resource
from placement.capacity import InstanceShape
from topology import labels
from topology.nodes import Taint

#: Karpenter's well-known names (karpenter.sh/v1).
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
INSTANCE_FAMILY_LABEL = "karpenter.k8s.aws/instance-family"
#: kbl capacity type -> Karpenter's value of ``karpenter.sh/capacity-type``.
CAPACITY_TYPES = {"ON_DEMAND": "on-demand", "SPOT": "spot"}
#: Node class kinds a NodePool may reference: Karpenter on EKS, and EKS Auto Mode.
NODE_CLASS_GROUPS = {"EC2NodeClass": "karpenter.k8s.aws", "NodeClass": "eks.amazonaws.com"}
#: The annotations on a NodePool with the KBL (``namespace/name``, not a valid label value) and zone.
KBL_ANNOTATION = KBL_TAG
ZONE_ANNOTATION = ZONE_TAG
#: Label of the placeholder pods and Deployment (value: the node group).
PLACEHOLDER_LABEL = labels.NODE_GROUP_LABEL
ERROR_MANAGED = "ManagedByKarpenter"
_GI = 2**30


@dataclass(frozen=True, slots=True)
class KarpenterSettings:
    """What the cluster's Karpenter set-up needs from kbl; times are Karpenter durations.

    ``node_class_kind`` is ``EC2NodeClass`` (Karpenter on EKS) or ``NodeClass`` (EKS Auto Mode,
    whose built-in class is ``default``). ``instance_types`` are the types kbl may ask for (empty:
    the table of :data:`controller.providers.catalog.KNOWN_SHAPES`). ``placeholder_margin`` is the
    share of a node's allocatable a placeholder leaves free for DaemonSets.
    """

    cluster_name: str = "kbl"
    node_class_name: str = "default"
    node_class_kind: Literal["EC2NodeClass", "NodeClass"] = "EC2NodeClass"
    instance_types: tuple[str, ...] = ()
    namespace: str = "kbl-system"
    priority_class: str = "kbl-placeholder"
    priority: int = -10
    placeholder_image: str = "registry.k8s.io/pause:3.10"
    placeholder_margin: float = 0.1
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = "WhenEmpty"
    consolidate_after: str = "5m"
    budgets: tuple[Mapping[str, Any], ...] = field(default_factory=lambda: ({"nodes": "10%"},))

    @property
    def node_class_group(self) -> str:
        return NODE_CLASS_GROUPS[self.node_class_kind]


def shapes(settings: KarpenterSettings) -> list[InstanceShape]:
    """The instance shapes kbl may ask Karpenter for (settings, else the default table).

    Raises
    ------
    ProviderError
        ``UnknownInstanceType`` for a configured type the table does not know.
    """
    names = settings.instance_types or tuple(INSTANCE_SHAPES)
    unknown = [n for n in names if n not in INSTANCE_SHAPES]
    if unknown:
        raise ProviderError("UnknownInstanceType", f"no allocatable estimate for {', '.join(unknown)}")
    return [INSTANCE_SHAPES[n] for n in names]


def _shape(instance_type: str) -> InstanceShape:
    shape = INSTANCE_SHAPES.get(instance_type)
    if shape is None:  # an unknown type: a conservative small shape keeps limits and placeholders sane
        return InstanceShape(instance_type, 1930, int(6.9 * _GI), 29)
    return shape


def limits(shape: InstanceShape, max_nodes: int) -> dict[str, str]:
    """NodePool ``limits`` for ``max_nodes`` of ``shape``.

    Karpenter counts node *capacity*, above allocatable: vCPUs are allocatable rounded up to whole
    CPUs, memory is allocatable rounded up to a power of two GiB (an upper bound of the capacity of
    the usual types), so the ``max_nodes``-th node still fits and one more does not (by CPU).
    """
    n = max(max_nodes, 0)
    cpus = math.ceil(shape.cpu_m / 1000)
    memory_gi = 2 ** math.ceil(math.log2(max(shape.memory_b / _GI, 1)))
    return {"cpu": str(cpus * n), "memory": f"{memory_gi * n}Gi"}


def node_pool(spec: NodeGroupSpec, settings: KarpenterSettings) -> dict[str, Any]:
    """The whole NodePool object of a kbl node group (validated in tests against Karpenter's CRD)."""
    requirements: list[dict[str, Any]] = [
        {"key": labels.ZONE, "operator": "In", "values": [spec.zone]},
        {"key": labels.INSTANCE_TYPE, "operator": "In", "values": [spec.instance_type]},
        {"key": CAPACITY_TYPE_LABEL, "operator": "In", "values": [CAPACITY_TYPES.get(spec.capacity_type, "on-demand")]},
    ]
    template: dict[str, Any] = {
        "metadata": {"labels": {**spec.labels, labels.NODE_GROUP_LABEL: spec.name}},
        "spec": {
            "nodeClassRef": {"group": settings.node_class_group, "kind": settings.node_class_kind, "name": settings.node_class_name},
            "requirements": requirements,
            "taints": [{"key": t.key, **({"value": t.value} if t.value else {}), "effect": t.effect} for t in spec.taints],
            "expireAfter": "Never",
        },
    }
    if not spec.taints:
        del template["spec"]["taints"]
    return {
        "apiVersion": NODEPOOLS.api_version,
        "kind": NODEPOOLS.kind,
        "metadata": {
            "name": spec.name,
            "labels": {MANAGED_BY_TAG: MANAGED_BY, CLUSTER_TAG: settings.cluster_name, labels.NODE_GROUP_LABEL: spec.name},
            "annotations": {KBL_ANNOTATION: spec.kbl, ZONE_ANNOTATION: spec.zone},
        },
        "spec": {
            "template": template,
            "limits": limits(_shape(spec.instance_type), spec.max_size),
            "disruption": {
                "consolidationPolicy": settings.consolidation_policy,
                "consolidateAfter": settings.consolidate_after,
                "budgets": [dict(b) for b in settings.budgets],
            },
        },
    }


def placeholder_deployment(spec: NodeGroupSpec, settings: KarpenterSettings, replicas: int) -> dict[str, Any]:
    """The Deployment of pause pods that keeps ``replicas`` nodes of the group warm."""
    shape = _shape(spec.instance_type)
    keep = 1.0 - settings.placeholder_margin
    requests = {"cpu": f"{int(shape.cpu_m * keep)}m", "memory": str(int(shape.memory_b * keep))}
    selector = {PLACEHOLDER_LABEL: spec.name}
    tolerations = [{"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect} for t in spec.taints]
    return {
        "apiVersion": DEPLOYMENTS.api_version,
        "kind": DEPLOYMENTS.kind,
        "metadata": {
            "name": placeholder_name(spec.name),
            "namespace": settings.namespace,
            "labels": {MANAGED_BY_TAG: MANAGED_BY, CLUSTER_TAG: settings.cluster_name, **selector},
            "annotations": {KBL_ANNOTATION: spec.kbl, ZONE_ANNOTATION: spec.zone},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {MANAGED_BY_TAG: MANAGED_BY, **selector}},
                "spec": {
                    "priorityClassName": settings.priority_class,
                    "terminationGracePeriodSeconds": 0,
                    "nodeSelector": {NODEPOOL_LABEL: spec.name},
                    "tolerations": tolerations,
                    # one placeholder per node: two would share a node and warm half as much
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": selector}, "topologyKey": labels.HOSTNAME},
                    ]}},
                    "containers": [{"name": "pause", "image": settings.placeholder_image, "resources": {"requests": requests}}],
                },
            },
        },
    }


def placeholder_name(group: str) -> str:
    """The placeholder Deployment's name (at most 63 characters)."""
    return f"{group[:51]}-placeholder"


def priority_class(settings: KarpenterSettings) -> dict[str, Any]:
    """The low PriorityClass of placeholders: any real pod preempts them; never preempts itself."""
    return {
        "apiVersion": PRIORITYCLASSES.api_version,
        "kind": PRIORITYCLASSES.kind,
        "metadata": {"name": settings.priority_class, "labels": {MANAGED_BY_TAG: MANAGED_BY}},
        "value": settings.priority,
        "preemptionPolicy": "Never",
        "globalDefault": False,
        "description": "kbl placeholder pods: capacity Karpenter keeps warm for a KBL; real pods preempt them",
    }


def spec_of(pool: Mapping[str, Any], desired: int = 0) -> NodeGroupSpec:
    """The :class:`NodeGroupSpec` a kbl NodePool was built from (inverse of :func:`node_pool`)."""
    meta = pool.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    template = (pool.get("spec") or {}).get("template") or {}
    tspec = template.get("spec") or {}
    reqs = {r.get("key"): list(r.get("values") or []) for r in tspec.get("requirements") or []}
    capacity = {v: k for k, v in CAPACITY_TYPES.items()}.get((reqs.get(CAPACITY_TYPE_LABEL) or ["on-demand"])[0], "ON_DEMAND")
    node_labels = dict((template.get("metadata") or {}).get("labels") or {})
    node_labels.pop(labels.NODE_GROUP_LABEL, None)
    taints = tuple(Taint(str(t.get("key")), str(t.get("value") or ""), str(t.get("effect"))) for t in tspec.get("taints") or [])
    cpu_limit = int(str(((pool.get("spec") or {}).get("limits") or {}).get("cpu", "0")) or 0)
    instance_type = (reqs.get(labels.INSTANCE_TYPE) or [""])[0]
    per_node = math.ceil(_shape(instance_type).cpu_m / 1000)
    return NodeGroupSpec(
        name=str(meta.get("name", "")),
        kbl=str(annotations.get(KBL_ANNOTATION, "")),
        zone=str(annotations.get(ZONE_ANNOTATION) or (reqs.get(labels.ZONE) or [""])[0]),
        instance_type=instance_type,
        desired=desired,
        max_size=cpu_limit // per_node if per_node else 0,
        capacity_type=capacity,
        labels=node_labels,
        taints=taints,
    )


class KarpenterProvider:
    """kbl node groups as Karpenter NodePools plus placeholder pods (see the module docstring).

    Parameters
    ----------
    kube:
        The Kubernetes API (Karpenter's objects live there; no cloud credentials are needed).
    settings:
        Node class, placeholder and disruption settings.
    """

    def __init__(self, kube: KubeApi, settings: KarpenterSettings | None = None) -> None:
        self.kube = kube
        self.settings = settings or KarpenterSettings()

    @property
    def kube_writer(self) -> DeletesObjects:
        """The API for deletes (a snapshot cannot delete: planning from one never gets here).

        Raises
        ------
        ProviderError
            ``ReadOnly`` when the API cannot delete.
        """
        if not isinstance(self.kube, DeletesObjects):
            raise ProviderError("ReadOnly", "this Kubernetes API cannot delete objects (a snapshot?)")
        return self.kube

    # ------------------------------------------------------------------ reading
    def instance_types(self) -> list[InstanceShape]:
        """The shapes kbl may ask Karpenter for (``settings.instance_types`` or the default table)."""
        return shapes(self.settings)

    def _replicas(self, name: str) -> int:
        found = self.kube.get(DEPLOYMENTS, placeholder_name(name), namespace=self.settings.namespace)
        return int(((found or {}).get("spec") or {}).get("replicas") or 0)

    def _info(self, pool: Mapping[str, Any]) -> NodeGroupInfo:
        spec = spec_of(pool)
        meta = pool.get("metadata") or {}
        status = "DELETING" if meta.get("deletionTimestamp") else "ACTIVE"
        return NodeGroupInfo(
            name=spec.name, kbl=spec.kbl, zone=spec.zone, instance_type=spec.instance_type,
            desired=self._replicas(spec.name), min_size=0, max_size=spec.max_size, status=status,
            image=self.settings.node_class_name, tags={**(meta.get("labels") or {}), **(meta.get("annotations") or {})},
        )

    def list_groups(self) -> list[NodeGroupInfo]:
        pools, _ = self.kube.list(NODEPOOLS, label_selector=f"{MANAGED_BY_TAG}={MANAGED_BY}")
        return [self._info(p) for p in pools]

    def describe_group(self, name: str) -> NodeGroupInfo | None:
        pool = self.kube.get(NODEPOOLS, name)
        if pool is None or ((pool.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_TAG) != MANAGED_BY:
            return None
        return self._info(pool)

    # ------------------------------------------------------------------ writing
    def create_group(self, spec: NodeGroupSpec, token: str) -> NodeGroupInfo:
        """Create (or bring up to date) the NodePool, the PriorityClass and ``spec.desired``
        placeholders. ``token`` is unused: the object names make every step idempotent."""
        del token
        if spec.capacity_type not in CAPACITY_TYPES:
            raise ProviderError("InvalidParameterException", f"capacity type {spec.capacity_type!r}")
        self._ensure(PRIORITYCLASSES, priority_class(self.settings), None)
        pool = self._ensure(NODEPOOLS, node_pool(spec, self.settings), None)
        self._ensure(DEPLOYMENTS, placeholder_deployment(spec, self.settings, spec.desired), self.settings.namespace, keep=("replicas",))
        return self._info(pool)

    def _ensure(self, resource: Resource, obj: dict[str, Any], namespace: str | None, keep: Sequence[str] = ()) -> dict[str, Any]:
        """Create ``obj``; when it exists, replace its spec if it differs (``keep``: spec fields
        of the live object left as they are)."""
        try:
            return self.kube.create(resource, obj, namespace=namespace)
        except ConflictError:
            pass
        name = obj["metadata"]["name"]
        live = self.kube.get(resource, name, namespace=namespace)
        if live is None:
            raise ProviderError("Conflict", f"{resource.kind} {name} exists and vanished; retry", retryable=True)
        if ((live.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_TAG) != MANAGED_BY:
            raise ProviderError("NotManagedByKbl", f"{resource.kind} {name} exists and is not kbl's: rename or remove it")
        wanted = dict(obj)
        if "spec" in obj:
            wanted["spec"] = {**obj["spec"], **{k: live.get("spec", {}).get(k) for k in keep if k in live.get("spec", {})}}
        if all(live.get(k) == v for k, v in wanted.items() if k not in ("metadata", "apiVersion", "kind")):
            return live
        wanted["metadata"] = {**obj["metadata"], "resourceVersion": (live.get("metadata") or {}).get("resourceVersion")}
        try:
            return self.kube.replace(resource, name, wanted, namespace=namespace)
        except ConflictError as exc:
            raise ProviderError("Conflict", str(exc), retryable=True) from None

    def set_size(self, name: str, desired: int) -> None:
        """Keep ``desired`` placeholders (each one node Karpenter keeps warm for the group)."""
        if self.describe_group(name) is None:
            raise ProviderError("ResourceNotFoundException", f"no kbl NodePool {name}")
        try:
            self.kube.patch(DEPLOYMENTS, placeholder_name(name), {"spec": {"replicas": max(desired, 0)}}, namespace=self.settings.namespace)
        except ApiError as exc:
            if exc.status != 404:
                raise
            pool = self.kube.get(NODEPOOLS, name) or {}
            self._ensure(DEPLOYMENTS, placeholder_deployment(spec_of(pool), self.settings, desired), self.settings.namespace)

    def remove_instance(self, name: str, provider_id: str) -> None:
        """Delete the NodeClaim of the node ``provider_id`` (Karpenter drains it) and one placeholder."""
        claims, _ = self.kube.list(NODECLAIMS, label_selector=f"{NODEPOOL_LABEL}={name}")
        for claim in claims:
            if (claim.get("status") or {}).get("providerID") == provider_id:
                self.kube_writer.delete(NODECLAIMS, claim["metadata"]["name"])
                break
        else:
            return  # already gone
        replicas = self._replicas(name)
        if replicas > 0:
            self.set_size(name, replicas - 1)

    def delete_group(self, name: str) -> None:
        """Delete the placeholders and the NodePool (Karpenter then removes its nodes)."""
        if self.describe_group(name) is None:
            return
        self.kube_writer.delete(DEPLOYMENTS, placeholder_name(name), namespace=self.settings.namespace)
        self.kube_writer.delete(NODEPOOLS, name)

    def create_image(self, provider_id: str, image_name: str, tags: Mapping[str, str]) -> str:
        raise ProviderError(ERROR_MANAGED, "Karpenter picks node images with the node class's amiSelectorTerms: pin the AMI there")

    def roll_group(self, name: str, image_id: str, strategy: RollStrategy, token: str) -> str:
        raise ProviderError(ERROR_MANAGED, "Karpenter replaces drifted nodes itself when the node class's amiSelectorTerms change")
