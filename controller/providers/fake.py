"""A stateful fake cloud behind :class:`~controller.providers.NodeGroupProvider`, for what moto lacks.

Groups, instances that *join after a delay* on a simulated clock (``ready_delay_s`` from launch
to a Ready node; ``inf`` for a group whose instances never join), idempotency tokens (the same
token with other parameters is refused, as AWS does), capacity limits per zone and instance
type, optionally per capacity type (``capacity``; launches beyond them fail as EC2 fails them:
``InsufficientInstanceCapacity`` on demand, ``UnfulfillableCapacity`` for spot) and types a
zone does not offer (``unsupported``: ``Unsupported``). A group launches its instance types in
order, the next when one has no capacity (an Auto Scaling group's prioritized
MixedInstancesPolicy, an EKS managed group's ``instanceTypes``); each failure is reported on the
group (:attr:`~placement.capacity.GroupState.failures`, with its time and type) as scaling
activities and EKS health issues report them; the group stays short. Images and
launch-template versions, rolling updates, blue/green groups, recorded inputs,
injectable errors (throttling, 5xx, anything) and :meth:`FakeProvider.reset`. Node objects for
joined instances are built from the real EKS node template, so the controller sees real shapes.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.providers import (
    KBL_TAG,
    MANAGED_BY,
    MANAGED_BY_TAG,
    ZONE_TAG,
    NodeGroupInfo,
    NodeGroupSpec,
    ProviderError,
    RollStrategy,
    instance_id,
)
from controller.providers.catalog import KNOWN_INSTANCE_TYPES
from placement.capacity import InstanceShape, LaunchFailure
from topology import labels
from topology.examples import make_node
from topology.times import format_time

#: The fake cloud offers the known instance types.
FAKE_INSTANCE_TYPES: tuple[InstanceShape, ...] = KNOWN_INSTANCE_TYPES


@dataclass(slots=True)
class FakeInstance:
    id: str
    zone: str
    launched_s: float
    image: str
    instance_type: str = ""


@dataclass(slots=True)
class FakeGroup:
    spec: NodeGroupSpec
    token: str
    created_s: float
    desired: int
    status: str = "CREATING"
    image: str = "ami-base"
    lt_version: int = 1
    instances: list[FakeInstance] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    failures: dict[tuple[str, str], LaunchFailure] = field(default_factory=dict)  # (code, type) -> latest


@dataclass(slots=True)
class FakeCall:
    op: str
    args: Mapping[str, Any]
    at_s: float


class FakeProvider:
    """See the module docstring. ``clock`` gives epoch seconds (simulated in tests)."""

    #: Set to play an EKS managed group's provider, which replaces nodes itself on a roll.
    replaces_nodes_on_roll = False

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        ready_delay_s: float | Mapping[str, float] = 90.0,
        create_delay_s: float = 0.0,
        capacity: Mapping[tuple[str, ...], int] | None = None,
        unsupported: set[tuple[str, str]] | None = None,
        region: str = "us-east-1",
        instance_types: tuple[InstanceShape, ...] = FAKE_INSTANCE_TYPES,
    ) -> None:
        self.clock = clock
        self.ready_delay_s = ready_delay_s
        self.create_delay_s = create_delay_s
        self.capacity: dict[tuple[str, ...], int] = dict(capacity or {})
        self.unsupported = set(unsupported or ())
        self.region = region
        self.catalog = {shape.name: shape for shape in instance_types}
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget every group, image, recorded call and injected error."""
        with getattr(self, "_lock", threading.RLock()):
            self.groups: dict[str, FakeGroup] = {}
            self.images: dict[str, str] = {}
            self.calls: list[FakeCall] = []
            self._errors: dict[str, list[ProviderError]] = {}
            self._ids = itertools.count(1)

    # ------------------------------------------------------------------ test controls
    def inject(self, op: str, error: ProviderError, times: int = 1) -> None:
        """Make the next ``times`` calls of ``op`` raise ``error``."""
        with self._lock:
            self._errors.setdefault(op, []).extend([error] * times)

    def calls_of(self, op: str) -> list[FakeCall]:
        return [c for c in self.calls if c.op == op]

    def _enter(self, op: str, **args: Any) -> None:
        self.calls.append(FakeCall(op, args, self.clock()))
        queued = self._errors.get(op)
        if queued:
            raise queued.pop(0)

    def _delay(self, group: FakeGroup) -> float:
        if isinstance(self.ready_delay_s, Mapping):
            return float(self.ready_delay_s.get(group.spec.name, self.ready_delay_s.get("*", 90.0)))
        return self.ready_delay_s

    def _advance(self, group: FakeGroup) -> None:
        now = self.clock()
        if group.status == "CREATING" and now - group.created_s >= self.create_delay_s:
            group.status = "ACTIVE"
        if group.status != "ACTIVE":
            return
        while len(group.instances) > group.desired:
            group.instances.pop()
        while len(group.instances) < group.desired:
            launched = self._launch(group, now)
            if launched is None:
                break
            group.instances.append(launched)

    def _used(self, zone: str, itype: str, ctype: str | None) -> int:
        return sum(
            1 for g in self.groups.values() for i in g.instances
            if i.zone == zone and i.instance_type == itype and (ctype is None or g.spec.capacity_type == ctype)
        )

    def _launch(self, group: FakeGroup, now: float) -> FakeInstance | None:
        """One instance of the first of the group's types that has capacity; each type that
        has none is a failure on the group, as the cloud reports it."""
        zone, ctype = group.spec.zone, group.spec.capacity_type
        for itype in group.spec.types:
            if (zone, itype) in self.unsupported:
                code = "Unsupported"
                message = f"Your requested instance type ({itype}) is not supported in your requested Availability Zone ({zone})."
            elif any(
                key in self.capacity and self._used(zone, itype, c) >= self.capacity[key]
                for key, c in (((zone, itype), None), ((zone, itype, ctype), ctype))
            ):
                if ctype == "SPOT":
                    code, message = "UnfulfillableCapacity", f"Could not launch Spot Instances: no {itype} spot capacity in {zone}"
                else:
                    code, message = "InsufficientInstanceCapacity", f"We currently do not have sufficient {itype} capacity in {zone}"
            else:  # a launch that succeeds supersedes the failures before it (as a successful activity does)
                group.failures.clear()
                return FakeInstance(f"i-{next(self._ids):017x}", zone, now, group.image, itype)
            group.failures[code, itype] = LaunchFailure(code, message, now, itype)
            issue = f"{code}: {message}"
            if issue not in group.issues:
                group.issues.append(issue)
        return None

    def _info(self, group: FakeGroup) -> NodeGroupInfo:
        spec = group.spec
        tags = {MANAGED_BY_TAG: MANAGED_BY, KBL_TAG: spec.kbl, ZONE_TAG: spec.zone}
        return NodeGroupInfo(
            spec.name, spec.kbl, spec.zone, spec.instance_type, group.desired, 0, spec.max_size, group.status,
            group.image, str(group.lt_version), tags, spec.types, spec.capacity_type,
            tuple(sorted(group.failures.values(), key=lambda f: (f.at_s or 0.0, f.code))), len(group.instances),
        )

    # ------------------------------------------------------------------ the protocol
    def list_groups(self) -> list[NodeGroupInfo]:
        with self._lock:
            self._enter("list_groups")
            for g in self.groups.values():
                self._advance(g)
            return [self._info(g) for g in sorted(self.groups.values(), key=lambda g: g.spec.name)]

    def instance_types(self) -> list[InstanceShape]:
        with self._lock:
            self._enter("instance_types")
            return list(self.catalog.values())

    def describe_group(self, name: str) -> NodeGroupInfo | None:
        with self._lock:
            self._enter("describe_group", name=name)
            group = self.groups.get(name)
            if group is None:
                return None
            self._advance(group)
            return self._info(group)

    def create_group(self, spec: NodeGroupSpec, token: str) -> NodeGroupInfo:
        with self._lock:
            self._enter("create_group", spec=spec, token=token)
            existing = self.groups.get(spec.name)
            if existing is not None:
                if existing.token == token and existing.spec != spec:
                    raise ProviderError("InvalidRequestException", "idempotency token reused with different parameters")
                self._advance(existing)
                return self._info(existing)
            if spec.desired > spec.max_size:
                raise ProviderError("InvalidParameterException", f"desired {spec.desired} above max {spec.max_size}")
            group = FakeGroup(spec, token, self.clock(), spec.desired)
            self.groups[spec.name] = group
            self._advance(group)
            return self._info(group)

    def set_size(self, name: str, desired: int) -> None:
        with self._lock:
            self._enter("set_size", name=name, desired=desired)
            group = self._get(name)
            if not 0 <= desired <= group.spec.max_size:
                raise ProviderError("InvalidParameterException", f"desired {desired} outside 0..{group.spec.max_size}")
            if group.status not in ("ACTIVE", "CREATING"):
                raise ProviderError("ResourceInUseException", f"group {name} is {group.status}")
            group.desired = desired
            self._advance(group)

    def remove_instance(self, name: str, provider_id: str) -> None:
        with self._lock:
            self._enter("remove_instance", name=name, provider_id=provider_id)
            group = self.groups.get(name)
            wanted = instance_id(provider_id)
            if group is None:
                return
            for inst in list(group.instances):
                if inst.id == wanted:
                    group.instances.remove(inst)
                    group.desired = max(group.desired - 1, 0)
                    return

    def delete_group(self, name: str) -> None:
        with self._lock:
            self._enter("delete_group", name=name)
            self.groups.pop(name, None)

    def create_image(self, provider_id: str, image_name: str, tags: Mapping[str, str]) -> str:
        with self._lock:
            self._enter("create_image", provider_id=provider_id, image_name=image_name, tags=dict(tags))
            wanted = instance_id(provider_id)
            if not any(i.id == wanted for g in self.groups.values() for i in g.instances):
                raise ProviderError("InvalidInstanceID.NotFound", f"no instance {wanted}")
            if image_name not in self.images:
                self.images[image_name] = f"ami-{next(self._ids):017x}"
            return self.images[image_name]

    def roll_group(self, name: str, image_id: str, strategy: RollStrategy, token: str) -> str:
        with self._lock:
            self._enter("roll_group", name=name, image_id=image_id, strategy=strategy, token=token)
            group = self._get(name)
            if group.image != image_id:
                group.image = image_id
                group.lt_version += 1
                if strategy == "rolling":  # replace every instance: they rejoin after the delay
                    now = self.clock()
                    group.instances = [
                        FakeInstance(f"i-{next(self._ids):017x}", i.zone, now, image_id, i.instance_type) for i in group.instances
                    ]
            return str(group.lt_version)

    def create_green_group(self, name: str, green: str, image_id: str, token: str) -> NodeGroupInfo:
        """As EKS ``create_nodegroup`` from the old group's description: the same spec under the
        new name, on ``image_id`` (a new launch-template version), no node yet."""
        with self._lock:
            self._enter("create_green_group", name=name, green=green, image_id=image_id, token=token)
            existing = self.groups.get(green)
            if existing is not None:
                if existing.token != token:
                    raise ProviderError("ResourceInUseException", f"node group {green} already exists")
                self._advance(existing)
                return self._info(existing)
            blue = self._get(name)
            spec = dataclasses.replace(blue.spec, name=green, desired=0)
            group = FakeGroup(spec, token, self.clock(), 0, image=image_id, lt_version=blue.lt_version + 1)
            self.groups[green] = group
            self._advance(group)
            return self._info(group)

    def outdated_instances(self, name: str) -> list[str]:
        """Instances launched from an older image than the group's (as an Auto Scaling group's
        instances carry the launch-template version they started from)."""
        with self._lock:
            self._enter("outdated_instances", name=name)
            group = self.groups.get(name)
            if group is None:
                return []
            self._advance(group)
            return sorted(i.id for i in group.instances if i.image != group.image)

    def detach_from_cluster_autoscaler(self, name: str) -> list[str]:
        """As EKS: the group's (simulated) Auto Scaling group loses the discovery tags."""
        with self._lock:
            self._enter("detach_from_cluster_autoscaler", name=name)
            self._get(name)
            return [f"eks-{name}"]

    def _get(self, name: str) -> FakeGroup:
        group = self.groups.get(name)
        if group is None:
            raise ProviderError("ResourceNotFoundException", f"no node group {name}")
        return group

    # ------------------------------------------------------------------ simulated nodes
    def node_objects(self) -> list[dict[str, Any]]:
        """Node objects of instances that have joined (launched at least ``ready_delay_s`` ago)."""
        with self._lock:
            now = self.clock()
            out = []
            for group in self.groups.values():
                self._advance(group)
                delay = self._delay(group)
                for inst in group.instances:
                    if now - inst.launched_s < delay:
                        continue
                    out.append(self._node_object(group, inst, inst.launched_s + delay))
            return out

    def _node_object(self, group: FakeGroup, inst: FakeInstance, ready_s: float) -> dict[str, Any]:
        spec = group.spec
        extra = {
            **spec.labels,
            labels.EKS_NODE_GROUP_LABEL: spec.name,
            labels.NODE_GROUP_LABEL: spec.name,
            labels.INSTANCE_TYPE: inst.instance_type or spec.instance_type,
            labels.LEGACY_INSTANCE_TYPE: inst.instance_type or spec.instance_type,
        }
        taints = [{"key": t.key, "value": t.value, "effect": t.effect} for t in spec.taints]
        shape = self.catalog.get(inst.instance_type or spec.instance_type)  # allocatable of the type, not the template's
        obj = make_node(
            f"ip-{inst.id}", region=self.region, zone=spec.zone, extra_labels=extra, taints=taints,
            cpu_m=shape.cpu_m if shape else None, memory_b=shape.memory_b if shape else None,
        )
        obj["spec"]["providerID"] = f"aws:///{spec.zone}/{inst.id}"
        born = format_time(inst.launched_s)
        ready = format_time(ready_s)
        obj["metadata"]["creationTimestamp"] = born
        for cond in obj["status"].get("conditions", []):
            if cond.get("type") == "Ready":
                cond["status"] = "True"
                cond["lastTransitionTime"] = ready
        return obj
