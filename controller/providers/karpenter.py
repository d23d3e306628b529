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
- a placeholder ``Deployment`` of pause pods at a low ``PriorityClass`` (negative value), at
  most one per node (pod anti-affinity), tolerating the dedicated taint and selecting the
  NodePool. A placeholder requests almost nothing (``placeholder_cpu``, ``placeholder_memory``):
  it does not reserve a node's room, it *keeps a node of the pool*. A node with a placeholder is
  not empty, so Karpenter's ``WhenEmpty`` consolidation leaves it; a pending placeholder makes
  Karpenter launch a node only where no node of the pool (joined or launching) is free of one.

**One meaning of size.** A group's size is its number of nodes, as for an Auto Scaling group:
``describe_group().desired`` is the larger of the placeholder count and the pool's live
NodeClaims (joined or launching, not being deleted), and ``set_size(n)`` keeps ``n``
placeholders, so the pool holds ``max(n, what the real pods need)`` nodes. Karpenter provisions
for every pending pod that fits a NodePool, whatever its scheduler: the KBL's pods, steered to
their pool by the documented pod spec (``nodeSelector: {kbl.io/kbl: <name>}`` and a toleration of
``kbl.io/dedicated=<name>:NoSchedule``), get nodes from Karpenter directly, and the placeholders
pend beside them and land on the same nodes (they fit beside any pod), so the two never add up:
nodes = max(placeholders, nodes the pods need), never the sum. The planner's scale-down never
evicts a placeholder (label ``kbl.io/placeholder``): evicted, it would pend and bring a node back.

Instance types: :meth:`KarpenterProvider.instance_types` reads the region's catalog through EC2's
``DescribeInstanceTypes`` when the provider is given an EC2 client (the one Karpenter itself
resolves its types from), else the table of :mod:`.catalog` (offline replay only). The NodePool
offers the type the planner chose and every other type of the KBL's wish list that the catalog
knows (``node.kubernetes.io/instance-type In [...]``); its ``limits`` are ``nodes: maxSize`` plus
the CPU and memory of ``maxSize`` nodes of the largest offered type.

``remove_instance`` deletes the node's ``NodeClaim`` (Karpenter cordons and drains the node, then
terminates the instance) and keeps at most one placeholder per remaining live NodeClaim. Images and rolls are Karpenter's: the node
image is chosen by the node class's ``amiSelectorTerms``, and Karpenter's drift replaces nodes
whose image no longer matches. ``create_image`` and ``roll_group`` therefore raise
:class:`~controller.providers.ProviderError` with code ``ManagedByKarpenter``: change the
EC2NodeClass instead (kbl does not own it, it is shared by every NodePool that references it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

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
    ec2_instance_types,
)
from controller.providers.awscalls import aws_call
from controller.providers.catalog import KNOWN_SHAPES as INSTANCE_SHAPES
from controller.providers.retrying import Backoff
from kube.api import DEPLOYMENTS, KBLS, NODECLAIMS, NODEPOOLS, PRIORITYCLASSES, ApiError, ConflictError, DeletesObjects, KubeApi, Resource
from placement.capacity import InstanceShape
from topology import labels
from topology.errors import ObjectError
from topology.kbls import KBL
from topology.nodes import Taint
from topology.times import parse_time

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

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
    whose built-in class is ``default``). ``instance_types`` restricts the types kbl may ask for
    (empty: every type of the catalog). ``placeholder_cpu`` and ``placeholder_memory`` are a
    placeholder's requests (Kubernetes quantities): small, so it fits beside any pod of the node
    it keeps.
    """

    cluster_name: str = "kbl"
    node_class_name: str = "default"
    node_class_kind: Literal["EC2NodeClass", "NodeClass"] = "EC2NodeClass"
    instance_types: tuple[str, ...] = ()
    namespace: str = "kbl-system"
    priority_class: str = "kbl-placeholder"
    priority: int = -10
    placeholder_image: str = "registry.k8s.io/pause:3.10"
    placeholder_cpu: str = "10m"
    placeholder_memory: str = "16Mi"
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"] = "WhenEmpty"
    consolidate_after: str = "5m"
    budgets: tuple[Mapping[str, Any], ...] = field(default_factory=lambda: ({"nodes": "10%"},))

    @property
    def node_class_group(self) -> str:
        return NODE_CLASS_GROUPS[self.node_class_kind]


def shapes(settings: KarpenterSettings, catalog: Mapping[str, InstanceShape] | None = None) -> list[InstanceShape]:
    """The instance shapes kbl may ask Karpenter for: ``catalog`` (the region's, else the default
    table), restricted to ``settings.instance_types`` when set.

    Raises
    ------
    ProviderError
        ``UnknownInstanceType`` for a configured type the catalog does not know.
    """
    known = dict(catalog) if catalog is not None else dict(INSTANCE_SHAPES)
    names = settings.instance_types or tuple(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ProviderError("UnknownInstanceType", f"no allocatable estimate for {', '.join(unknown)}")
    return [known[n] for n in names]


def _shape(instance_type: str, catalog: Mapping[str, InstanceShape] | None = None) -> InstanceShape:
    shape = (catalog or {}).get(instance_type) or INSTANCE_SHAPES.get(instance_type)
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
    return {"cpu": str(cpus * n), "memory": f"{memory_gi * n}Gi", "nodes": str(n)}


def offered_types(spec: NodeGroupSpec, wished: Sequence[str] = ()) -> list[str]:
    """The instance types the NodePool offers: the planner's choice first, then every other wished type."""
    return [spec.instance_type, *sorted({w for w in wished if w and w != spec.instance_type})]


def node_pool(
    spec: NodeGroupSpec, settings: KarpenterSettings, wished: Sequence[str] = (), catalog: Mapping[str, InstanceShape] | None = None
) -> dict[str, Any]:
    """The whole NodePool object of a kbl node group (validated in tests against Karpenter's CRD).

    ``wished``: the KBL's other acceptable instance types (offered beside ``spec.instance_type``);
    ``catalog``: shapes by name, for the limits.
    """
    offered = offered_types(spec, wished)
    largest = max((_shape(t, catalog) for t in offered), key=lambda s: (s.cpu_m, s.memory_b))
    requirements: list[dict[str, Any]] = [
        {"key": labels.ZONE, "operator": "In", "values": [spec.zone]},
        {"key": labels.INSTANCE_TYPE, "operator": "In", "values": offered},
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
            "limits": limits(largest, spec.max_size),
            "disruption": {
                "consolidationPolicy": settings.consolidation_policy,
                "consolidateAfter": settings.consolidate_after,
                "budgets": [dict(b) for b in settings.budgets],
            },
        },
    }


def placeholder_deployment(spec: NodeGroupSpec, settings: KarpenterSettings, replicas: int) -> dict[str, Any]:
    """The Deployment of pause pods that keeps ``replicas`` nodes of the group (one per node)."""
    requests = {"cpu": settings.placeholder_cpu, "memory": settings.placeholder_memory}
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
                "metadata": {"labels": {MANAGED_BY_TAG: MANAGED_BY, labels.PLACEHOLDER: "true", **selector}},
                "spec": {
                    "priorityClassName": settings.priority_class,
                    "terminationGracePeriodSeconds": 0,
                    "nodeSelector": {NODEPOOL_LABEL: spec.name},
                    "tolerations": tolerations,
                    # one placeholder per node: each keeps its own node of the pool
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
    pool_limits = (pool.get("spec") or {}).get("limits") or {}
    cpu_limit = int(str(pool_limits.get("cpu", "0")) or 0)
    instance_type = (reqs.get(labels.INSTANCE_TYPE) or [""])[0]
    per_node = math.ceil(_shape(instance_type).cpu_m / 1000)
    if "nodes" in pool_limits:
        per_node, cpu_limit = 1, int(str(pool_limits["nodes"]) or 0)
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
        The Kubernetes API (Karpenter's objects live there).
    settings:
        Node class, placeholder and disruption settings.
    ec2:
        A boto3 EC2 client: the instance types come from ``DescribeInstanceTypes`` (read once).
        ``None``: the default table (offline replay, where no cloud is asked).
    backoff:
        Retries of the EC2 call.
    """

    def __init__(
        self, kube: KubeApi, settings: KarpenterSettings | None = None, *, ec2: EC2Client | None = None, backoff: Backoff | None = None
    ) -> None:
        self.kube = kube
        self.settings = settings or KarpenterSettings()
        self.ec2 = ec2
        self.backoff = backoff or Backoff()
        self._catalog: dict[str, InstanceShape] | None = None

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
    def catalog(self) -> dict[str, InstanceShape]:
        """Every instance type of the region by name (``DescribeInstanceTypes``, read once), or the
        default table without an EC2 client."""
        if self._catalog is None:
            if self.ec2 is None:
                return dict(INSTANCE_SHAPES)
            ec2 = self.ec2
            self._catalog = {s.name: s for s in ec2_instance_types(lambda fn, **kw: aws_call(self.backoff, fn, **kw), ec2)}
        return self._catalog

    def instance_types(self) -> list[InstanceShape]:
        """The shapes kbl may ask Karpenter for: the region's catalog, restricted by ``settings.instance_types``."""
        return shapes(self.settings, self.catalog())

    def _replicas(self, name: str) -> int:
        found = self.kube.get(DEPLOYMENTS, placeholder_name(name), namespace=self.settings.namespace)
        return int(((found or {}).get("spec") or {}).get("replicas") or 0)

    def _live_claims(self, pool: str | None = None) -> dict[str, list[Mapping[str, Any]]]:
        """The NodeClaims not being deleted (joined or launching), by NodePool."""
        claims, _ = self.kube.list(NODECLAIMS, label_selector=f"{NODEPOOL_LABEL}={pool}" if pool is not None else None)
        out: dict[str, list[Mapping[str, Any]]] = {}
        for claim in claims:
            meta = claim.get("metadata") or {}
            owner = (meta.get("labels") or {}).get(NODEPOOL_LABEL)
            if owner and not meta.get("deletionTimestamp"):
                out.setdefault(str(owner), []).append(claim)
        return out

    def _info(self, pool: Mapping[str, Any], claims: Sequence[Mapping[str, Any]]) -> NodeGroupInfo:
        """The group; ``desired`` is its size in nodes: the larger of the placeholders and the live NodeClaims;
        ``requested_at_s`` the creation of the oldest NodeClaim not registered yet."""
        spec = spec_of(pool)
        meta = pool.get("metadata") or {}
        status = "DELETING" if meta.get("deletionTimestamp") else "ACTIVE"
        unanswered = [
            born
            for c in claims
            if not (c.get("status") or {}).get("nodeName")
            and (born := parse_time(str((c.get("metadata") or {}).get("creationTimestamp") or ""))) is not None
        ]
        return NodeGroupInfo(
            name=spec.name, kbl=spec.kbl, zone=spec.zone, instance_type=spec.instance_type,
            desired=max(self._replicas(spec.name), len(claims)), min_size=0, max_size=spec.max_size, status=status,
            image=self.settings.node_class_name, tags={**(meta.get("labels") or {}), **(meta.get("annotations") or {})},
            requested_at_s=min(unanswered) if unanswered else None,
        )

    def list_groups(self) -> list[NodeGroupInfo]:
        pools, _ = self.kube.list(NODEPOOLS, label_selector=f"{MANAGED_BY_TAG}={MANAGED_BY}")
        claims = self._live_claims() if pools else {}
        return [self._info(p, claims.get(str((p.get("metadata") or {}).get("name")), [])) for p in pools]

    def describe_group(self, name: str) -> NodeGroupInfo | None:
        pool = self.kube.get(NODEPOOLS, name)
        if pool is None or ((pool.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_TAG) != MANAGED_BY:
            return None
        return self._info(pool, self._live_claims(name).get(name, []))

    def wished_types(self, kbl_key: str) -> list[str]:
        """The KBL's wished instance types that the catalog knows (empty when it wishes none or is gone)."""
        namespace, _, name = kbl_key.partition("/")
        found = self.kube.get(KBLS, name, namespace=namespace) if name else None
        if found is None:
            return []
        try:
            wished = KBL.from_object(found).node_group.instance_types
        except ObjectError:
            return []
        known = self.catalog()
        allowed = set(self.settings.instance_types) or set(known)
        return [t for t in wished if t in known and t in allowed]

    # ------------------------------------------------------------------ writing
    def create_group(self, spec: NodeGroupSpec, token: str) -> NodeGroupInfo:
        """Create (or bring up to date) the NodePool, the PriorityClass and ``spec.desired``
        placeholders. ``token`` is unused: the object names make every step idempotent."""
        del token
        if spec.capacity_type not in CAPACITY_TYPES:
            raise ProviderError("InvalidParameterException", f"capacity type {spec.capacity_type!r}")
        self._ensure(PRIORITYCLASSES, priority_class(self.settings), None)
        pool = self._ensure(NODEPOOLS, node_pool(spec, self.settings, self.wished_types(spec.kbl), self.catalog()), None)
        self._ensure(DEPLOYMENTS, placeholder_deployment(spec, self.settings, spec.desired), self.settings.namespace, keep=("replicas",))
        return self._info(pool, self._live_claims(spec.name).get(spec.name, []))

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
        """Keep ``desired`` placeholders: the pool holds at least ``desired`` nodes (one placeholder
        each), and more only while the KBL's pods need more."""
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
        """Delete the NodeClaim of the node ``provider_id`` (Karpenter drains and terminates it),
        first lowering the placeholders to at most one per remaining live NodeClaim, so the
        placeholder the drain evicts finds a node without one instead of bringing a new node."""
        claims = self._live_claims(name).get(name, [])
        leaving = [c for c in claims if (c.get("status") or {}).get("providerID") == provider_id]
        if not leaving:
            return  # already gone (or being deleted)
        replicas = self._replicas(name)
        if replicas > len(claims) - 1:
            self.set_size(name, max(len(claims) - 1, 0))
        self.kube_writer.delete(NODECLAIMS, leaving[0]["metadata"]["name"])

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
