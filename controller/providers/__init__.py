"""Cloud node groups behind one narrow interface: only the calls the controller makes.

:class:`NodeGroupProvider` is implemented by :mod:`.eks` (EKS managed node groups), :mod:`.asg`
(self-managed Auto Scaling groups), :mod:`.queueing` (requests sent over SQS to ``kbl worker``)
and :mod:`.fake` (a stateful fake with a simulated clock). Every call is idempotent: creating a
group that exists returns it, resizing sets an absolute size, removing a gone instance or
deleting a gone group succeeds. Only groups tagged ``kbl.io/managed-by=kbl`` are ever listed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from placement.capacity.packing import eni_max_pods, estimate_allocatable
from placement.capacity.states import GroupState, InstanceShape
from topology import labels
from topology.errors import KblError
from topology.nodes import Taint

#: Tags every kbl-managed group carries.
MANAGED_BY_TAG = labels.MANAGED_BY_TAG
MANAGED_BY = "kbl"
KBL_TAG = labels.KBL_TAG
ZONE_TAG = labels.ZONE_TAG
CLUSTER_TAG = labels.CLUSTER_TAG
#: Cluster Autoscaler's auto-discovery tag; kbl groups must not carry it.
CA_ENABLED_TAG = "k8s.io/cluster-autoscaler/enabled"

RollStrategy = Literal["next-nodes", "rolling"]


class ProviderError(KblError):
    """A cloud call failed; ``code`` is the AWS error code, ``retryable`` says if backoff may help."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        self.code = code
        self.retryable = retryable
        super().__init__(f"{code}: {message}")


class CapacityUnavailableError(ProviderError):
    """The cloud has no capacity of the asked instance type in the zone right now."""


@dataclass(frozen=True, slots=True)
class NodeGroupSpec:
    """A node group to create. ``kbl`` is ``namespace/name``; ``zone`` the plain AZ."""

    name: str
    kbl: str
    zone: str
    instance_type: str
    desired: int
    max_size: int
    capacity_type: str = "ON_DEMAND"
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    #: Every type the group may launch, in the order the cloud is to try them (cheapest first);
    #: empty means ``(instance_type,)``.
    instance_types: tuple[str, ...] = ()

    @property
    def types(self) -> tuple[str, ...]:
        return self.instance_types or (self.instance_type,)


#: A node group as the cloud reports it: the planner's record (one type on both sides).
NodeGroupInfo = GroupState


class NodeGroupProvider(Protocol):
    """The cloud calls the controller makes (see the module docstring for the guarantees)."""

    def list_groups(self) -> list[NodeGroupInfo]:
        """Every kbl-managed group of the cluster."""
        ...

    def instance_types(self) -> list[InstanceShape]:
        """The instance types this cloud offers, with their allocatable estimates (the planner's
        catalog, as karpenter's ``GetInstanceTypes``)."""
        ...

    def describe_group(self, name: str) -> NodeGroupInfo | None:
        """One group, or ``None`` if it does not exist."""
        ...

    def create_group(self, spec: NodeGroupSpec, token: str) -> NodeGroupInfo:
        """Create (or return the existing) group; ``token`` is the idempotency token."""
        ...

    def set_size(self, name: str, desired: int) -> None:
        """Set the desired size (absolute, so retries and duplicates are harmless)."""
        ...

    def remove_instance(self, name: str, provider_id: str) -> None:
        """Terminate one named instance of the group and decrement its desired size."""
        ...

    def delete_group(self, name: str) -> None:
        """Delete the group (a gone group is fine)."""
        ...

    def create_image(self, provider_id: str, image_name: str, tags: Mapping[str, str]) -> str:
        """Image an instance (no reboot); returns the image id (the existing one for a known name)."""
        ...

    def roll_group(self, name: str, image_id: str, strategy: RollStrategy, token: str) -> str:
        """Point the group's launch template at ``image_id``; returns the new template version."""
        ...


@runtime_checkable
class DetachesFromClusterAutoscaler(Protocol):
    """Providers whose groups the cloud tags for Cluster Autoscaler discovery (EKS) can untag them."""

    def detach_from_cluster_autoscaler(self, name: str) -> list[str]:
        """Remove the discovery tags from the group's Auto Scaling groups; returns their names."""
        ...


@runtime_checkable
class ProtectsInstances(Protocol):
    """Providers whose groups are Auto Scaling groups (ASG, EKS managed) protect joined instances
    from scale-in, so that lowering a desired size can only take an instance that never joined
    (one that holds no data); an instance leaves only through ``remove_instance``, which lifts
    the protection of that one drained instance and terminates it."""

    def protect_instances(self, name: str, provider_ids: list[str]) -> None:
        """Set scale-in protection on these instances of the group (idempotent)."""
        ...


@runtime_checkable
class RollsInstances(Protocol):
    """Providers that can say which of a group's instances run an older launch-template version
    than the group's (ASG); the controller then replaces them one at a time through the safe path
    (:mod:`controller.rolling`)."""

    def outdated_instances(self, name: str) -> list[str]:
        """The EC2 instance ids of the group not launched from the group's current version."""
        ...


@runtime_checkable
class CreatesGreenGroups(Protocol):
    """Providers whose groups the cloud replaces itself on a version update (EKS managed groups)
    roll data-holding groups blue/green (:mod:`controller.bluegreen`): a new group like the old
    one on the new image, then the old one emptied through the safe path and deleted."""

    def create_green_group(self, name: str, green: str, image_id: str, token: str) -> NodeGroupInfo:
        """Create (or return the existing) group ``green`` as a copy of group ``name`` (its subnets,
        labels, taints, instance types, capacity type, maximum size, tags and launch template)
        launching ``image_id``, with no node yet; ``token`` is the idempotency token."""
        ...


def instance_id(provider_id: str) -> str:
    """The EC2 instance id of a node's ``spec.providerID`` (``aws:///us-east-1a/i-0abc``).

    Raises
    ------
    ProviderError
        If the provider id does not end in an instance id.
    """
    tail = provider_id.rstrip("/").rsplit("/", 1)[-1]
    if not tail.startswith("i-"):
        raise ProviderError("InvalidProviderID", f"{provider_id!r} does not name an EC2 instance")
    return tail


def kbl_tags(cluster_name: str) -> dict[str, str]:
    """The two tags on everything kbl creates in the cloud (groups, launch templates, images and
    their snapshots); the IAM policies in ``manifests/iam/`` require them at creation and on
    every later change."""
    return {MANAGED_BY_TAG: MANAGED_BY, CLUSTER_TAG: cluster_name}


def group_tags(spec: NodeGroupSpec, cluster_name: str) -> dict[str, str]:
    """The tags of a kbl-managed group and its launch template (never the Cluster Autoscaler
    discovery tags)."""
    return {**kbl_tags(cluster_name), KBL_TAG: spec.kbl, ZONE_TAG: spec.zone}


def ec2_instance_types(call: Callable[..., Any], ec2: Any) -> list[InstanceShape]:
    """Every instance type of the region from ``ec2.describe_instance_types`` (paged), with
    allocatable estimated as the EKS bootstrap reserves it and the VPC CNI's pod limit (at most
    110 pods below 30 vCPUs, 250 above, as EKS recommends).

    ``call(fn, **kwargs)`` is the provider's retrying call.
    """
    out: list[InstanceShape] = []
    token: str | None = None
    while True:
        page = call(ec2.describe_instance_types, **({"NextToken": token} if token else {}))
        for raw in page.get("InstanceTypes", []):
            vcpus = int((raw.get("VCpuInfo") or {}).get("DefaultVCpus") or 0)
            memory_mib = int((raw.get("MemoryInfo") or {}).get("SizeInMiB") or 0)
            if not vcpus or not memory_mib:
                continue
            net = raw.get("NetworkInfo") or {}
            enis, ips = int(net.get("MaximumNetworkInterfaces") or 0), int(net.get("Ipv4AddressesPerInterface") or 0)
            ceiling = 110 if vcpus < 30 else 250
            pods = min(eni_max_pods(enis, ips), ceiling) if enis and ips else ceiling
            out.append(estimate_allocatable(str(raw["InstanceType"]), vcpus, memory_mib, pods))
        token = page.get("NextToken")
        if not token:
            return sorted(out, key=lambda s: s.name)
