"""What the capacity planner reads: instance shapes, node groups, utilization, the settings.

:class:`GroupState` is the one node-group record: the pure planner reads it and the cloud
providers return it (``controller.providers.NodeGroupInfo`` is this type).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from placement.capacity.actions import Action, PendingVerdict
from topology.clusters import Cluster
from topology.datasets import DataSet
from topology.errors import KblError
from topology.holdings import NodeHoldings
from topology.kbls import KBL
from topology.nodes import Node, Resources
from topology.pods import Pod
from topology.times import parse_time


class CapacityError(KblError):
    """Capacity cannot be planned as asked (for example no wished instance type fits a pod)."""


@dataclass(frozen=True, slots=True)
class InstanceShape:
    """What one node of an instance type offers to pods (allocatable, not raw capacity)."""

    name: str
    cpu_m: int
    memory_b: int
    pods: int = 58

    def resources(self) -> Resources:
        return Resources(cpu_m=self.cpu_m, memory_b=self.memory_b, pods=self.pods)


@dataclass(frozen=True, slots=True)
class CapacitySettings:
    """Knobs of the capacity planner; times in seconds, fractions in 0..1."""

    max_nodes_total: int = 200
    default_instance_type: str = "m6i.xlarge"
    default_node_ready_s: float = 120.0
    prewarm_factor: float = 1.2
    prewarm_margin_s: float = 30.0
    scale_down_delay_after_up_s: float = 120.0
    scale_down_min_node_age_s: float = 60.0
    utilization_cooldown_s: float = 300.0
    utilization_high: float = 0.8
    utilization_low: float = 0.3
    keep_full_redundancy: bool = True
    default_hydration_bps: float = 200e6  # per node, until NodeHoldings growth has been measured
    #: Requested nodes that have not joined this long after the request are given up (Cluster
    #: Autoscaler's ``--max-node-provision-time``, 15 min by default).
    max_node_provision_s: float = 900.0
    #: Backoff of a group whose launches failed: ``initial * 2**(failures - 1)`` up to ``max``
    #: (Cluster Autoscaler's ``--initial-node-group-backoff-duration`` 5 min and
    #: ``--max-node-group-backoff-duration`` 30 min).
    backoff_initial_s: float = 300.0
    backoff_max_s: float = 1800.0
    #: An ongoing capacity issue without a time (EKS node-group health issues, which can outlive
    #: their cause) gives a short group up only this long after its last scale-up.
    undated_issue_grace_s: float = 180.0


#: AWS error codes that mean "no capacity of this type here now": the group is given up and the
#: next launch option tried (instance type, then capacity type, then zone). From EC2 launch
#: errors as Auto Scaling scaling activities report them, and EKS node-group health issues.
CAPACITY_ERROR_CODES = frozenset({
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "Unsupported",
    "UnfulfillableCapacity",
    "capacity-not-available",
    "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow",
    "AsgInstanceLaunchFailures",
    "InsufficientFreeAddresses",
    "Ec2SubnetInvalidConfiguration",
})


@dataclass(frozen=True, slots=True)
class LaunchFailure:
    """A failed launch the cloud reported for a group: ``code`` (one of
    :data:`CAPACITY_ERROR_CODES` or another AWS code), when (epoch seconds; ``None`` for an
    ongoing condition without a time, as EKS health issues) and the instance type if known."""

    code: str
    message: str = ""
    at_s: float | None = None
    instance_type: str = ""

    @property
    def capacity(self) -> bool:
        return self.code in CAPACITY_ERROR_CODES


@dataclass(frozen=True, slots=True)
class GroupState:
    """A cloud node group as the provider reports it (``zone`` is the plain AZ name).

    The planner reads the first eight fields and the last three; ``image``,
    ``launch_template_version`` and ``tags`` are the provider's (imaging and rolls).
    ``instance_types`` are every type the group may launch, in the order the cloud tries them
    (``instance_type`` is the first); ``failures`` the launch failures the cloud reports.
    """

    name: str
    kbl: str
    zone: str
    instance_type: str
    desired: int
    min_size: int = 0
    max_size: int = 0
    status: str = "ACTIVE"
    image: str = ""
    launch_template_version: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    instance_types: tuple[str, ...] = ()
    capacity_type: str = "ON_DEMAND"
    failures: tuple[LaunchFailure, ...] = ()
    #: Instances the cloud has launched for the group (joined or not), when it says (an Auto
    #: Scaling group's ``Instances``); a capacity error gives up only the rest.
    launched: int | None = None
    #: When the group's oldest unanswered node request was made, when the cloud says (Karpenter's
    #: NodeClaims not yet registered: Karpenter grows a pool for pending pods by itself, with no
    #: scale-up of ours to date it); the max-node-provision-time counts from there.
    requested_at_s: float | None = None

    @property
    def types(self) -> tuple[str, ...]:
        """Every instance type of the group (``instance_types``, else the one ``instance_type``)."""
        return self.instance_types or ((self.instance_type,) if self.instance_type else ())


@dataclass(frozen=True, slots=True)
class JobProgress:
    """A batch/v1 Job's progress: ``succeeded`` of ``completions``, started and completed when
    (epoch seconds, ``None`` if not yet)."""

    namespace: str
    name: str
    succeeded: int = 0
    completions: int = 1
    start_s: float | None = None
    completion_s: float | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def fraction(self) -> float:
        """``succeeded / completions`` in 0..1 (1 once the Job has completed)."""
        if self.completion_s is not None:
            return 1.0
        return min(1.0, self.succeeded / self.completions) if self.completions > 0 else 0.0

    def reaches_at(self, fraction: float, now_s: float) -> float:
        """When the Job reaches ``fraction`` at its rate so far (linear: start + elapsed *
        fraction / done); in the past once reached, ``inf`` before any progress is seen."""
        done = self.fraction
        if self.start_s is None or done <= 0:
            return math.inf
        end = self.completion_s if self.completion_s is not None else now_s
        return self.start_s + max(0.0, end - self.start_s) * fraction / done

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> JobProgress:
        """From a raw batch/v1 Job (``spec.completions`` defaults to ``spec.parallelism`` or 1)."""
        meta, spec, status = (obj.get(k) or {} for k in ("metadata", "spec", "status"))
        completions = spec.get("completions") or spec.get("parallelism") or 1
        return cls(
            str(meta.get("namespace") or "default"),
            str(meta.get("name") or ""),
            int(status.get("succeeded") or 0),
            int(completions),
            parse_time(status.get("startTime")),
            parse_time(status.get("completionTime")),
        )


@dataclass(frozen=True, slots=True)
class Utilization:
    """Measured load of a KBL's own nodes: fractions of allocatable, or a query value."""

    cpu: float | None = None
    memory: float | None = None
    metric: float | None = None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``matchExpressions`` entry of a node selector term."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, node_labels: Mapping[str, str]) -> bool:
        value = node_labels.get(self.key)
        if self.operator == "In":
            return value is not None and value in self.values
        if self.operator == "NotIn":
            return value is None or value not in self.values
        if self.operator == "Exists":
            return value is not None
        if self.operator == "DoesNotExist":
            return value is None
        if self.operator in ("Gt", "Lt") and value is not None and self.values:
            try:
                have, bound = int(value), int(self.values[0])
            except ValueError:
                return False
            return have > bound if self.operator == "Gt" else have < bound
        return False


#: Required node affinity: any term (OR) whose requirements all hold (AND).
Affinity = tuple[tuple[Requirement, ...], ...]


@dataclass(frozen=True, slots=True)
class CapacityState:
    """Everything the planner reads. ``now_s`` is epoch seconds; ``instance_types`` is the
    provider's catalog (:meth:`~controller.providers.NodeGroupProvider.instance_types`)."""

    now_s: float
    nodes: Sequence[Node]
    pods: Sequence[Pod]
    kbls: Sequence[KBL]
    datasets: Sequence[DataSet]
    cluster: Cluster
    groups: Sequence[GroupState] = ()
    node_ready_s: Mapping[str, float] = field(default_factory=dict)
    utilization: Mapping[str, Utilization] = field(default_factory=dict)
    instance_types: Sequence[InstanceShape] = ()
    holdings: Sequence[NodeHoldings] = ()
    pod_affinity: Mapping[str, Affinity] = field(default_factory=dict)
    jobs: Mapping[str, JobProgress] = field(default_factory=dict)  # "namespace/name" -> progress
    hydration_bps: Mapping[str, float] = field(default_factory=dict)  # group -> measured bytes/s per node
    #: USD per hour of an instance, by ``(instance type, capacity type)`` (the provider's prices
    #: or the shipped table); a type without a price is ranked after every priced one.
    prices: Mapping[tuple[str, str], float] = field(default_factory=dict)
    price_source: str = ""  # where the prices come from, for the plan's reasons


def status_time(kbl: KBL, group: str, key: str) -> float | None:
    """A per-group time (epoch seconds) recorded in ``status.nodeGroups[].<key>``."""
    for entry in kbl.status.get("nodeGroups") or ():
        if isinstance(entry, Mapping) and entry.get("name") == group:
            value = entry.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return None


def float_annotation(kbl: KBL, key: str, default: float) -> float:
    try:
        return float(kbl.annotations.get(key, default))
    except ValueError:
        return default


@dataclass(slots=True)
class GroupPlan:
    """One node group's needs while planning (the largest wins, see :mod:`.budgets`)."""

    kbl: KBL
    zone: str
    name: str
    shape: InstanceShape
    existing: GroupState | None
    nodes: list[Node]
    busy: int = 0
    reactive: int = 0
    blueprint: int = 0
    utilization: int = 0
    target: int = 0
    closing: str = ""  # why the group goes to zero whatever its needs (a closed window), if it does
    capacity_type: str = "ON_DEMAND"
    types: tuple[InstanceShape, ...] = ()  # every type the group may launch, cheapest first (shape is the first)
    backed_off: str = ""  # why the group may not grow now (its launches failed), if it may not
    keep: int | None = None  # the requested nodes a backed-off group keeps (launched or joined)
    cross_zone_bytes: float = 0.0  # bytes the pods it is grown for would read from other zones
    reasons: list[str] = field(default_factory=list)

    @property
    def current(self) -> int:
        return self.existing.desired if self.existing else 0

    @property
    def in_flight(self) -> int:
        """Requested nodes not joined yet that are still expected (a backed-off group's kept ones)."""
        expected = self.current if self.keep is None else min(self.keep, self.current)
        return max(expected - len(self.nodes), 0)


@dataclass(frozen=True, slots=True)
class RemovalVerdict:
    """Whether removing nodes keeps every shard readable with its redundancy; what is at risk."""

    safe: bool
    at_risk: Mapping[str, int] = field(default_factory=dict)  # dataset key -> shards at risk


RemovalCheck = Callable[[Cluster, Sequence[DataSet], Collection[str], bool], RemovalVerdict]


@dataclass(slots=True)
class PlanContext:
    """The state of one planning pass: inputs, indexes and the actions and notes so far."""

    state: CapacityState
    settings: CapacitySettings
    removal_check: RemovalCheck
    groups_by_name: dict[str, GroupState] = field(default_factory=dict)
    nodes_by_group: dict[str, list[Node]] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    notes: list[Action] = field(default_factory=list)
    verdicts: list[PendingVerdict] = field(default_factory=list)
    helpable: dict[str, list[Pod]] = field(default_factory=dict)  # KBL key -> pending pods a new node helps
    referenced: dict[str, set[str]] | None = None  # node name -> DataSets placing on it (scale-down, once per pass)
