"""Capacity plans: which KBL needs which node group, how big, when to pre-warm, what may go.

A pure planner (no I/O imports, enforced by ``.importlinter``). From typed cluster state
(:class:`CapacityState`: nodes, pods, KBLs, DataSets, the :class:`~topology.clusters.Cluster`,
the cloud node groups' sizes, measured node-ready times, utilisation figures and the clock) it
computes a list of :class:`Action` values that the controller executes. Four needs are combined
per node group (one group per KBL and zone, named by :func:`group_name`), the largest wins:

* **reactive**: unschedulable pods of the KBL, batched together, bin-packed (first fit
  decreasing) onto the instance type that fits them from the KBL's wishes, in the zone where the
  data they read lives (most bytes readable within the zone, from ``Cluster.level_bytes``);
* **blueprint**: a stage's nodes are requested ``lead = ready_s * prewarm_factor + margin_s``
  before the stage starts, using the measured node-ready time of the group, and released when
  the stage ends (idle stages go to zero);
* **utilisation**: CPU/memory of the KBL's own nodes (metrics.k8s.io) or a Prometheus value,
  with hysteresis (grow above ``high``, shrink below ``low``, nothing in between) and a cooldown;
* **floor**: the KBL's ``minSize`` and the nodes its running pods occupy.

Growing is clamped by the KBL's ``maxSize`` and by a global node budget; shrinking goes through
cordon, eviction and removal of one named node at a time, never a node marked
``kbl.io/do-not-disrupt`` and never a node whose loss would leave a shard with fewer pieces than
its redundancy needs (then a :class:`RequestRepair` is planned instead, and the node waits).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from placement.durability import removal_is_safe
from placement.repairs import repair_plan
from topology import labels
from topology.clusters import Cluster
from topology.datasets import DataSet
from topology.errors import KblError
from topology.kbls import KBL, Stage
from topology.nodes import Node, Resources, Taint
from topology.pods import Pod

#: Node annotation written when the controller cordons a node to remove it (value: epoch seconds).
SCALE_DOWN_ANNOTATION = "kbl.io/scale-down-since"
#: Cluster Autoscaler's node annotation that keeps it from removing a node.
CA_SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
#: KBL annotations that configure utilisation feedback.
SCALE_ON = "kbl.io/scale-on"  # cpu | memory | prometheus
SCALE_UP_ABOVE = "kbl.io/scale-up-above"  # fraction (cpu/memory) or query value
SCALE_DOWN_BELOW = "kbl.io/scale-down-below"
PROMETHEUS_QUERY = "kbl.io/prometheus-query"
#: KBL annotation naming a DataSet (same namespace) whose zone a pod-less KBL should grow in.
KBL_DATASET = "kbl.io/dataset"


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


_GI = 2**30
#: Allocatable estimates for common instance types (vCPU minus kube/system reserved, memory minus
#: the EKS reservation); observed nodes of the same type override these.
INSTANCE_SHAPES: Mapping[str, InstanceShape] = {
    s.name: s
    for s in (
        InstanceShape("m6i.large", 1930, int(6.9 * _GI), 29),
        InstanceShape("m6i.xlarge", 3920, int(14.2 * _GI), 58),
        InstanceShape("m6i.2xlarge", 7910, int(29.0 * _GI), 58),
        InstanceShape("m6i.4xlarge", 15890, int(58.5 * _GI), 234),
        InstanceShape("m6i.8xlarge", 31850, int(118 * _GI), 234),
        InstanceShape("m6i.16xlarge", 63770, int(241 * _GI), 737),
        InstanceShape("c6i.xlarge", 3920, int(6.3 * _GI), 58),
        InstanceShape("c6i.4xlarge", 15890, int(27.0 * _GI), 234),
        InstanceShape("r6i.xlarge", 3920, int(29.0 * _GI), 58),
        InstanceShape("r6i.4xlarge", 15890, int(120 * _GI), 234),
        InstanceShape("i4i.4xlarge", 15890, int(120 * _GI), 234),
    )
}


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
    utilisation_cooldown_s: float = 300.0
    utilisation_high: float = 0.8
    utilisation_low: float = 0.3
    keep_full_redundancy: bool = True


@dataclass(frozen=True, slots=True)
class GroupState:
    """A cloud node group as the provider reports it (``zone`` is the plain AZ name)."""

    name: str
    kbl: str
    zone: str
    instance_type: str
    desired: int
    min_size: int = 0
    max_size: int = 0
    status: str = "ACTIVE"


@dataclass(frozen=True, slots=True)
class Utilisation:
    """Measured load of a KBL's own nodes: fractions of allocatable, or a query value."""

    cpu: float | None = None
    memory: float | None = None
    metric: float | None = None


@dataclass(frozen=True, slots=True)
class CapacityState:
    """Everything the planner reads. ``now_s`` is epoch seconds."""

    now_s: float
    nodes: Sequence[Node]
    pods: Sequence[Pod]
    kbls: Sequence[KBL]
    datasets: Sequence[DataSet]
    cluster: Cluster
    groups: Sequence[GroupState] = ()
    node_ready_s: Mapping[str, float] = field(default_factory=dict)
    utilisation: Mapping[str, Utilisation] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ actions
@dataclass(frozen=True, slots=True)
class Action:
    """Base of planned actions; ``to_json()`` gives one line of ``--dry-run`` output."""

    kbl: str

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        return {"action": self.kind, **body}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class CreateNodeGroup(Action):
    group: str
    zone: str
    instance_type: str
    capacity_type: str
    desired: int
    max_size: int
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class ResizeNodeGroup(Action):
    group: str
    desired: int
    previous: int
    reason: str


@dataclass(frozen=True, slots=True)
class DeleteNodeGroup(Action):
    group: str
    reason: str


@dataclass(frozen=True, slots=True)
class CordonNode(Action):
    group: str
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class UncordonNode(Action):
    group: str
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class EvictPods(Action):
    node: str
    pods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AnnotateNode(Action):
    """Keep Cluster Autoscaler away from a KBL node (its scale-down-disabled annotation)."""

    node: str
    annotations: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RemoveNode(Action):
    group: str
    node: str
    provider_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RequestRepair(Action):
    """Re-replicate the node's pieces first (``rebuilds``: the engine's plan per dataset)."""

    node: str
    datasets: tuple[str, ...]
    shards_at_risk: int
    rebuilds: Mapping[str, tuple[str, ...]]
    reason: str


@dataclass(frozen=True, slots=True)
class RecordBlueprintStart(Action):
    start_s: float


@dataclass(frozen=True, slots=True)
class Note(Action):
    """Not an action: a reason why something was not done (kept in the plan for operators)."""

    message: str


# ------------------------------------------------------------------------------ removal safety
@dataclass(frozen=True, slots=True)
class RemovalVerdict:
    """Whether removing nodes keeps every shard readable with its redundancy; what is at risk."""

    safe: bool
    at_risk: Mapping[str, int] = field(default_factory=dict)  # dataset key -> shards at risk


RemovalCheck = Callable[[Cluster, Sequence[DataSet], Collection[str], bool], RemovalVerdict]


def removal_verdict(cluster: Cluster, datasets: Sequence[DataSet], remove: Collection[str], keep_full: bool = True) -> RemovalVerdict:
    """Would losing ``remove`` leave a shard short of pieces? (the placement engine decides)

    For every dataset, :func:`placement.durability.removal_is_safe` counts the live pieces each
    shard touched by the removal keeps. Required: the full ``width`` (``keep_full``: never
    degrade redundancy, re-replicate first), else ``needed`` (1 replica, or k erasure pieces).

    Parameters
    ----------
    cluster:
        The topology with its present nodes.
    datasets:
        The datasets to check.
    remove:
        Node names to remove.
    keep_full:
        Require full width after removal (default) rather than readability only.

    Returns
    -------
    RemovalVerdict
        With the number of shards at risk per dataset key.
    """
    nodes = list(cluster.nodes.values())
    at_risk: dict[str, int] = {}
    for dataset in datasets:
        if dataset.placement is None or not any(n in dataset.placement.nodes for n in remove):
            continue
        red = dataset.spec.redundancy
        spare = red.width - red.needed if keep_full else 0
        verdict = removal_is_safe(nodes, dataset.spec, dataset.placement, remove, min_spare=spare)
        if not verdict.safe:
            at_risk[dataset.key] = len(verdict.lost_shards) + len(verdict.at_risk_shards)
    return RemovalVerdict(not at_risk, at_risk)


def planned_rebuilds(cluster: Cluster, dataset: DataSet, leaving: Collection[str]) -> tuple[str, ...]:
    """The placement engine's drain plan for moving ``dataset``'s pieces off ``leaving`` nodes.

    The leaving nodes are still readable, so their pieces are *copied* off them
    (:func:`~placement.repairs.repair_plan` with ``draining``), never counted as lost; other
    cordoned nodes receive nothing.

    Returns ``"shard/piece->node"`` strings, most urgent first (empty if nothing can be placed).
    """
    if dataset.placement is None:
        return ()
    survivors = [n for n in cluster.nodes.values() if n.name in leaving or not n.unschedulable]
    plan = repair_plan(survivors, dataset.spec, dataset.placement, (), draining=leaving)
    return tuple(f"{r.shard}/{r.piece}->{r.to_node}" for r in plan.rebuilds)


# ---------------------------------------------------------------------------------- helpers
_NAME_SAFE = re.compile(r"[^a-zA-Z0-9-]+")


def group_name(kbl_key: str, zone: str) -> str:
    """The deterministic node-group name of a KBL in a zone (at most 63 characters).

    ``kbl-<namespace>-<name>-<zone>``; longer names are cut and suffixed with 8 hex digits of
    the SHA-256 of the full name, so two KBLs never share a group.
    """
    namespace, _, name = kbl_key.partition("/")
    full = f"kbl-{namespace}-{name}-{zone}"
    clean = _NAME_SAFE.sub("-", full).strip("-")
    if len(clean) <= 63 and clean == full:
        return clean
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{clean[:54].rstrip('-')}-{digest}"


def plain_zone(zone: str) -> str:
    """The AZ name of a qualified zone domain (``us-east-1/us-east-1a`` -> ``us-east-1a``)."""
    return zone.rsplit("/", 1)[-1]


def node_group_of(node: Node) -> str | None:
    """The node group a node belongs to (the EKS label, else the kbl group label)."""
    return node.labels.get("eks.amazonaws.com/nodegroup") or node.labels.get("kbl.io/node-group")


def instance_shape(instance_type: str, nodes: Sequence[Node] = ()) -> InstanceShape:
    """The allocatable shape of an instance type: the smallest observed node of that type, else
    the table estimate.

    Raises
    ------
    CapacityError
        If the type is neither observed nor in :data:`INSTANCE_SHAPES`.
    """
    seen = [n.allocatable for n in nodes if n.instance_type == instance_type]
    if seen:
        return InstanceShape(
            instance_type, min(r.cpu_m for r in seen), min(r.memory_b for r in seen), min(r.pods for r in seen) or 58
        )
    shape = INSTANCE_SHAPES.get(instance_type)
    if shape is None:
        raise CapacityError(f"unknown instance type {instance_type!r}: no node of that type observed and no table entry")
    return shape


def bin_pack(requests: Sequence[Resources], shape: InstanceShape, open_bins: int = 0) -> int:
    """New nodes of ``shape`` needed for ``requests`` (first fit decreasing).

    ``open_bins`` empty nodes already on the way are filled first. A request larger than the
    shape is skipped (the caller checks fit before).
    """
    cap = shape.resources()
    bins: list[Resources] = [cap for _ in range(open_bins)]
    order = sorted(requests, key=lambda r: (r.cpu_m / max(cap.cpu_m, 1) + r.memory_b / max(cap.memory_b, 1)), reverse=True)
    for req in order:
        one = Resources(req.cpu_m, req.memory_b, 0, 1, {})
        if not cap.fits(one):
            continue
        for i, free in enumerate(bins):
            if free.fits(one):
                bins[i] = free - one
                break
        else:
            bins.append(cap - one)
    return len(bins) - open_bins if len(bins) > open_bins else 0


def stage_windows(kbl: KBL, blueprint_start_s: float) -> list[tuple[Stage, float, float]]:
    """Each stage with its absolute start and end (epoch seconds).

    A stage starts at ``start`` if given, else ``start_after_s`` after the previous stage's
    start (the first stage: after ``blueprint_start_s``).
    """
    out = []
    prev = blueprint_start_s
    for stage in kbl.stages:
        begin = stage.start.timestamp() if stage.start is not None else prev + (stage.start_after_s or 0.0)
        out.append((stage, begin, begin + stage.duration_s))
        prev = begin
    return out


def blueprint_start(kbl: KBL) -> float | None:
    """The recorded blueprint start (``status.blueprintStart``, RFC 3339), if any."""
    raw = kbl.status.get("blueprintStart")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def status_time(kbl: KBL, group: str, key: str) -> float | None:
    """A per-group time (epoch seconds) recorded in ``status.nodeGroups[].<key>``."""
    for entry in kbl.status.get("nodeGroups") or ():
        if isinstance(entry, Mapping) and entry.get("name") == group:
            value = entry.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return None


def _float_annotation(kbl: KBL, key: str, default: float) -> float:
    try:
        return float(kbl.annotations.get(key, default))
    except ValueError:
        return default


# ------------------------------------------------------------------------------------ planner
@dataclass(slots=True)
class _GroupPlan:
    kbl: KBL
    zone: str
    name: str
    shape: InstanceShape
    existing: GroupState | None
    nodes: list[Node]
    busy: int = 0
    reactive: int = 0
    blueprint: int = 0
    utilisation: int = 0
    target: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def current(self) -> int:
        return self.existing.desired if self.existing else 0


@dataclass(slots=True)
class _Context:
    state: CapacityState
    settings: CapacitySettings
    removal_check: RemovalCheck
    groups_by_name: dict[str, GroupState] = field(default_factory=dict)
    nodes_by_group: dict[str, list[Node]] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    notes: list[Action] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Plan:
    """The planned actions, in execution order."""

    actions: tuple[Action, ...]

    def of(self, kind: type[Action]) -> list[Action]:
        return [a for a in self.actions if isinstance(a, kind)]

    def to_json_lines(self) -> str:
        return "".join(a.to_json() + "\n" for a in self.actions)


def plan_capacity(
    state: CapacityState,
    settings: CapacitySettings | None = None,
    *,
    removal_check: RemovalCheck = removal_verdict,
) -> Plan:
    """Plan the node-group actions for every KBL (see the module docstring for the rules).

    Parameters
    ----------
    state:
        The cluster and cloud state, with the clock.
    settings:
        Planner knobs.
    removal_check:
        The durability check for scale-down (swap in the placement engine's).

    Returns
    -------
    Plan
        Creates and resizes first (grow before shrink), then scale-down steps, then notes.
    """
    ctx = _Context(state, settings or CapacitySettings(), removal_check)
    actions, notes = ctx.actions, ctx.notes
    ctx.groups_by_name = {g.name: g for g in state.groups}
    nodes_by_group = ctx.nodes_by_group
    for node in state.nodes:
        g = node_group_of(node)
        if g is not None:
            nodes_by_group.setdefault(g, []).append(node)
    kbls = sorted(state.kbls, key=lambda k: k.key)
    kbl_keys = {k.key for k in kbls}
    plans: list[_GroupPlan] = []
    for kbl in kbls:
        plans.extend(_plan_kbl(kbl, ctx))
    # Groups the cloud has for KBLs that no longer exist: drain to zero, then delete.
    for group in sorted(state.groups, key=lambda g: g.name):
        if group.kbl not in kbl_keys and group.status != "DELETING":
            if group.desired > 0 or nodes_by_group.get(group.name):
                if group.desired > 0:
                    actions.append(ResizeNodeGroup(group.kbl, group.name, 0, group.desired, "its KBL is gone"))
            else:
                actions.append(DeleteNodeGroup(group.kbl, group.name, "its KBL is gone and the group is empty"))
    _apply_budgets(plans, ctx)
    _plan_scale_down(plans, ctx)
    return Plan(tuple(actions + notes))


def _kbl_zone(kbl: KBL, pods: Sequence[Pod], state: CapacityState) -> tuple[str | None, dict[str, float]]:
    """The zone where most of the KBL's data is readable within the zone; bytes per zone."""
    per_zone: dict[str, float] = {}
    keys: list[tuple[str, tuple[int, ...] | None]] = []
    for pod in pods:
        if pod.data is None or pod.data.problem:
            continue
        key = f"{pod.data.namespace}/{pod.data.dataset}"
        if key in state.cluster.datasets:
            shards = pod.data.shards
            keys.append((key, tuple(shards) if shards is not None else None))
    if not keys and KBL_DATASET in kbl.annotations:
        key = f"{kbl.namespace}/{kbl.annotations[KBL_DATASET]}"
        if key in state.cluster.datasets:
            keys.append((key, None))
    for key, shards in keys:
        for zone, value in zone_bytes(state.cluster, key, shards).items():
            per_zone[zone] = per_zone.get(zone, 0.0) + value
    if per_zone:
        return max(sorted(per_zone), key=lambda z: per_zone[z]), per_zone
    return None, per_zone


def zone_bytes(cluster: Cluster, dataset_key: str, shards: Sequence[int] | None) -> dict[str, float]:
    """Bytes of the shards readable within each zone (a new node there reads them in-zone).

    For any present node n of zone Z, ``table[n, NODE] + table[n, RACK] + table[n, ZONE]`` is the
    bytes readable within Z (it depends on Z only); synthetic zones are skipped.
    """
    table = cluster.level_bytes(dataset_key, shards).table
    out: dict[str, float] = {}
    for node in cluster.nodes.values():
        if node.zone in out or "~" in node.zone:
            continue
        nid = cluster.node_id(node.name)
        if nid is not None:
            out[plain_zone(node.zone)] = float(table[nid, :3].sum())
    return out


def _plan_kbl(kbl: KBL, ctx: _Context) -> list[_GroupPlan]:
    state, settings, actions, notes = ctx.state, ctx.settings, ctx.actions, ctx.notes
    groups_by_name, nodes_by_group = ctx.groups_by_name, ctx.nodes_by_group
    pods = [p for p in state.pods if p.kbl == kbl.name and p.namespace == kbl.namespace]
    pending = [p for p in pods if p.unschedulable and p.node_name is None]
    existing = {g.zone: g for g in state.groups if g.kbl == kbl.key}
    data_zone, _ = _kbl_zone(kbl, pods, state)
    zone = data_zone or (sorted(existing)[0] if existing else None)
    if zone is None:
        zones = sorted({plain_zone(n.zone) for n in state.nodes if "~" not in n.zone})
        zone = zones[0] if zones else None
    plans: dict[str, _GroupPlan] = {}
    if zone is None and (pending or kbl.stages):
        notes.append(Note(kbl.key, "no zone known: no data placed and no labelled node to take a zone from"))

    def plan_for(z: str) -> _GroupPlan | None:
        if z in plans:
            return plans[z]
        name = group_name(kbl.key, z)
        group = groups_by_name.get(name) or existing.get(z)
        itype = group.instance_type if group else None
        try:
            shape = instance_shape(itype, state.nodes) if itype else _fit_type(kbl, pending, state.nodes, settings)
        except CapacityError as exc:
            notes.append(Note(kbl.key, str(exc)))
            return None
        plan = _GroupPlan(kbl, z, group.name if group else name, shape, group, list(nodes_by_group.get(group.name if group else name, [])))
        plans[z] = plan
        return plan

    for z in sorted(existing):
        plan_for(z)
    for plan in plans.values():
        for node in plan.nodes:
            if node.annotations.get(CA_SCALE_DOWN_DISABLED) != "true":
                actions.append(AnnotateNode(kbl.key, node.name, {CA_SCALE_DOWN_DISABLED: "true"}))
    # Floor: nodes that run the KBL's pods stay.
    for plan in plans.values():
        names = {n.name for n in plan.nodes}
        plan.busy = len({p.node_name for p in pods if p.active and p.node_name in names and p.owner_kind != "DaemonSet"})
    # Reactive: pending pods, batched, in the data's zone.
    if pending and zone is not None:
        grow = plan_for(zone)
        if grow is not None:
            plan = grow
            requests = [p.requests for p in pending]
            too_big = [p.key for p in pending if not plan.shape.resources().fits(Resources(p.requests.cpu_m, p.requests.memory_b, 0, 1))]
            if too_big:
                notes.append(Note(kbl.key, f"pods {', '.join(too_big)} do not fit one {plan.shape.name} node"))
            joined = len(plan.nodes)
            in_flight = max(plan.current - joined, 0)
            extra = bin_pack(requests, plan.shape, open_bins=in_flight)
            plan.reactive = max(plan.current, joined) + extra
            if extra:
                plan.reasons.append(f"{len(pending)} unschedulable pods need {extra} more {plan.shape.name} nodes in {zone}")
    # Blueprint pre-warm.
    if kbl.stages and zone is not None:
        start = blueprint_start(kbl)
        if start is None:
            start = state.now_s
            actions.append(RecordBlueprintStart(kbl.key, start))
        warm = plan_for(zone)
        if warm is not None:
            plan = warm
            ready_s = state.node_ready_s.get(plan.name, settings.default_node_ready_s)
            lead = ready_s * settings.prewarm_factor + settings.prewarm_margin_s
            for stage, begin, end in stage_windows(kbl, start):
                if begin - lead <= state.now_s < end:
                    need = _stage_nodes(stage, plan.shape)
                    if need > plan.blueprint:
                        plan.blueprint = need
                        when = "running" if state.now_s >= begin else f"starts in {begin - state.now_s:.0f}s, nodes take {ready_s:.0f}s"
                        plan.reasons.append(f"stage {stage.name} ({when}) needs {need} nodes")
    # Utilisation feedback.
    util = state.utilisation.get(kbl.key)
    if util is not None:
        for plan in plans.values():
            _utilisation_target(plan, util, state.now_s, settings)
    return list(plans.values())


def _fit_type(kbl: KBL, pending: Sequence[Pod], nodes: Sequence[Node], settings: CapacitySettings) -> InstanceShape:
    """The first wished instance type on which the largest pending pod fits."""
    types = kbl.node_group.instance_types or (settings.default_instance_type,)
    problems = []
    for itype in types:
        try:
            shape = instance_shape(itype, nodes)
        except CapacityError as exc:
            problems.append(str(exc))
            continue
        cap = shape.resources()
        if all(cap.fits(Resources(p.requests.cpu_m, p.requests.memory_b, 0, 1)) for p in pending):
            return shape
        problems.append(f"{itype} is too small for the largest pending pod")
    raise CapacityError(f"KBL {kbl.key}: no wished instance type fits: {'; '.join(problems)}")


def _stage_nodes(stage: Stage, shape: InstanceShape) -> int:
    """Nodes a stage needs: its node count, or ceil(max(cpu / node cpu, memory / node memory))."""
    by_cpu = math.ceil(stage.cpu_m / shape.cpu_m) if stage.cpu_m else 0
    by_mem = math.ceil(stage.memory_b / shape.memory_b) if stage.memory_b else 0
    return max(stage.nodes, by_cpu, by_mem)


def _utilisation_target(plan: _GroupPlan, util: Utilisation, now_s: float, settings: CapacitySettings) -> None:
    """Grow above ``high``, shrink below ``low`` (hysteresis), at most once per cooldown.

    The value compared is the metric named by ``kbl.io/scale-on`` (default: the larger of CPU and
    memory). Growing asks for ``ceil(n * value / high)`` nodes; shrinking for ``n - 1``.
    """
    kbl = plan.kbl
    on = kbl.annotations.get(SCALE_ON, "")
    value = {"cpu": util.cpu, "memory": util.memory, "prometheus": util.metric}.get(on)
    if not on:
        value = max((v for v in (util.cpu, util.memory) if v is not None), default=None)
    if value is None:
        return
    high = _float_annotation(kbl, SCALE_UP_ABOVE, settings.utilisation_high)
    low = _float_annotation(kbl, SCALE_DOWN_BELOW, settings.utilisation_low)
    last = status_time(kbl, plan.name, "lastUtilisationScale")
    if last is not None and now_s - last < settings.utilisation_cooldown_s:
        plan.utilisation = plan.current  # hold the size during the cooldown
        return
    n = len(plan.nodes)
    if value > high and n:
        plan.utilisation = max(math.ceil(n * value / high), n + 1)
        plan.reasons.append(f"utilisation {value:.2f} above {high:.2f}")
    elif value < low and n:
        plan.utilisation = -(n - 1) - 1  # marker: shrink allowed to n - 1 (negative means "at most")
        plan.reasons.append(f"utilisation {value:.2f} below {low:.2f}")
    else:
        plan.utilisation = plan.current  # in the band: hold


def _target(plan: _GroupPlan, zone_of_kbl_min: bool) -> int:
    floor = plan.busy
    if plan.utilisation < 0:  # utilisation allows shrinking below the busy floor
        floor = min(floor, -plan.utilisation - 1)
    want = max(plan.reactive, plan.blueprint, plan.utilisation, floor)
    if zone_of_kbl_min:
        want = max(want, plan.kbl.node_group.min_size)
    return want


def _apply_budgets(plans: list[_GroupPlan], ctx: _Context) -> None:
    """Turn targets into create/resize actions within per-KBL ``maxSize`` and the global budget.

    Shrinks of the desired size happen only through the scale-down steps (one named node at a
    time) unless nodes requested are not there yet; growth is granted in KBL order until the
    budget is spent.
    """
    state, settings, actions, notes = ctx.state, ctx.settings, ctx.actions, ctx.notes
    planned = {p.name for p in plans}
    used_total = sum(g.desired for g in state.groups if g.name not in planned)
    used_total += sum(p.current for p in plans)
    per_kbl_used: dict[str, int] = {}
    for p in plans:
        per_kbl_used[p.kbl.key] = per_kbl_used.get(p.kbl.key, 0) + p.current
    seen_kbl: set[str] = set()
    for plan in plans:
        first = plan.kbl.key not in seen_kbl
        seen_kbl.add(plan.kbl.key)
        target = _target(plan, first)
        plan_target = target
        current = plan.current
        if target > current:
            room_kbl = plan.kbl.node_group.max_size - per_kbl_used[plan.kbl.key]
            if plan.existing is not None and plan.existing.max_size > 0:  # the group's own cloud maximum
                room_kbl = min(room_kbl, plan.existing.max_size - current)
            room_total = settings.max_nodes_total - used_total
            grant = max(0, min(target - current, room_kbl, room_total))
            if grant < target - current:
                limits = f"KBL max {plan.kbl.node_group.max_size}, global max {settings.max_nodes_total}"
                notes.append(Note(plan.kbl.key, f"{plan.name}: wanted {target} nodes, budget allows {current + grant} ({limits})"))
            target = current + grant
            per_kbl_used[plan.kbl.key] += grant
            used_total += grant
        reason = "; ".join(plan.reasons) or "hold"
        plan.target = plan_target
        if plan.existing is None:
            if target > 0:
                wish = plan.kbl.node_group
                node_labels = {**wish.labels, labels.KBL_LABEL: plan.kbl.name}
                taints = wish.taints
                if wish.dedicated:
                    taints = (*taints, Taint(labels.DEDICATED_TAINT, plan.kbl.name, "NoSchedule"))
                create = CreateNodeGroup(
                    plan.kbl.key, plan.name, plan.zone, plan.shape.name, wish.capacity_type,
                    target, wish.max_size, node_labels, taints, reason,
                )
                actions.append(create)
            continue
        if plan.existing.status not in ("ACTIVE", "UPDATING", "CREATING"):
            continue
        if target > current:
            actions.append(ResizeNodeGroup(plan.kbl.key, plan.name, target, current, reason))
        elif target < current:
            # Requested nodes that never joined may be cancelled by lowering the size; joined
            # nodes leave only one by one through cordon -> evict -> remove.
            lowest = max(target, len(plan.nodes))
            if lowest < current:
                why = f"{current - lowest} requested nodes no longer needed"
                actions.append(ResizeNodeGroup(plan.kbl.key, plan.name, lowest, current, why))
        plan.target = plan_target


def _plan_scale_down(plans: list[_GroupPlan], ctx: _Context) -> None:
    state, settings, actions, notes = ctx.state, ctx.settings, ctx.actions, ctx.notes
    removal_check = ctx.removal_check
    active_by_node: dict[str, list[Pod]] = {}
    for pod in state.pods:
        if pod.active and pod.node_name is not None:
            active_by_node.setdefault(pod.node_name, []).append(pod)
    removing: set[str] = set()
    for plan in plans:
        if plan.existing is None:
            continue
        target = plan.target
        marked = [n for n in plan.nodes if SCALE_DOWN_ANNOTATION in n.annotations]
        pending_kbl = any(
            p.unschedulable and p.node_name is None and p.kbl == plan.kbl.name and p.namespace == plan.kbl.namespace for p in state.pods
        )
        excess = len(plan.nodes) - target
        if excess <= 0 or pending_kbl:
            for node in marked:  # capacity is wanted again: take the node back
                actions.append(UncordonNode(plan.kbl.key, plan.name, node.name, "capacity is needed again"))
            continue
        last_up = status_time(plan.kbl, plan.name, "lastScaleUp")
        if last_up is not None and state.now_s - last_up < settings.scale_down_delay_after_up_s and not marked:
            wait_s = settings.scale_down_delay_after_up_s - (state.now_s - last_up)
            notes.append(Note(plan.kbl.key, f"{plan.name}: scale-down waits {wait_s:.0f}s after the last scale-up"))
            continue
        # Nodes running the KBL's pods go only when utilisation asks to consolidate.
        allow_busy = plan.utilisation < 0
        candidates = sorted(
            (
                n
                for n in plan.nodes
                if _removable(n, active_by_node.get(n.name, []), state.now_s, settings)
                and (allow_busy or SCALE_DOWN_ANNOTATION in n.annotations or not _kbl_pods(plan.kbl, active_by_node.get(n.name, [])))
            ),
            key=lambda n: (SCALE_DOWN_ANNOTATION not in n.annotations, len(_kbl_pods(plan.kbl, active_by_node.get(n.name, []))), n.name),
        )
        for node in candidates[:excess]:
            verdict = removal_check(state.cluster, state.datasets, frozenset({*removing, node.name}), settings.keep_full_redundancy)
            if not verdict.safe:
                risky = sum(verdict.at_risk.values())
                why = f"removing {node.name} would leave {risky} shards short of their redundancy: re-replicate first"
                by_key = {d.key: d for d in state.datasets}
                rebuilds = {k: planned_rebuilds(state.cluster, by_key[k], {*removing, node.name}) for k in sorted(verdict.at_risk)}
                actions.append(RequestRepair(plan.kbl.key, node.name, tuple(sorted(verdict.at_risk)), risky, rebuilds, why))
                continue
            removing.add(node.name)
            pods = [p for p in active_by_node.get(node.name, []) if p.owner_kind != "DaemonSet"]
            if SCALE_DOWN_ANNOTATION not in node.annotations or not node.unschedulable:
                why = f"group {plan.name} wants {target} nodes, has {len(plan.nodes)}"
                actions.append(CordonNode(plan.kbl.key, plan.name, node.name, why))
            elif pods:
                actions.append(EvictPods(plan.kbl.key, node.name, tuple(sorted(p.key for p in pods))))
            else:
                actions.append(RemoveNode(plan.kbl.key, plan.name, node.name, node.provider_id, "cordoned and drained"))


def _kbl_pods(kbl: KBL, pods: Sequence[Pod]) -> list[Pod]:
    return [p for p in pods if p.kbl == kbl.name and p.namespace == kbl.namespace]


def _removable(node: Node, pods: Sequence[Pod], now_s: float, settings: CapacitySettings) -> bool:
    """May this node be considered for removal at all?"""
    if node.annotations.get(labels.DO_NOT_DISRUPT, "").lower() in ("true", "1", "yes"):
        return False
    if any(p.annotations.get(labels.DO_NOT_DISRUPT, "").lower() in ("true", "1", "yes") for p in pods):
        return False
    if SCALE_DOWN_ANNOTATION in node.annotations:
        return True
    if node.creation_timestamp:
        try:
            born = datetime.fromisoformat(node.creation_timestamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            born = 0.0
        if now_s - born < settings.scale_down_min_node_age_s:
            return False
    return True
