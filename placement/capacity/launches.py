"""Launch options: the capacity that exists, which types a group launches, and when to give up.

A node is **room** only while it can take pods: Ready, and without the node lifecycle
controller's ``node.kubernetes.io/unreachable`` or ``not-ready`` taint (:func:`broken`). A
NotReady node is no room: the pods that only a new node can help get one.

A group grows with every wished instance type on which the pending pods fit, **cheapest
first**: by what the nodes the pending pods need of that type cost per hour, from the
``(instance type, capacity type)`` prices (:func:`rank_types`); the cloud tries them
in that order (an EKS managed group's ``instanceTypes``, an Auto Scaling group's
MixedInstancesPolicy overrides by priority), so a type the cloud has no capacity of falls back
to the next one without a planner round. When the whole group cannot launch, because the cloud
reports a capacity error (:data:`~.states.CAPACITY_ERROR_CODES`) after the last scale-up, or its
requested nodes have not joined ``max_node_provision_s`` after it (Cluster Autoscaler's
max-node-provision-time, 15 min), the request is **given up**: the group's desired size falls
back to the instances launched (after a capacity error, when the cloud says how many) or the
nodes that joined (after the provision time), the group is **backed off** for ``backoff_initial_s *
2**(failures - 1)`` up to ``backoff_max_s`` (per group, as Cluster Autoscaler does; recorded in
the KBL's ``status.nodeGroups[]`` as ``launchFailures``, ``backoffUntil``, ``lastLaunchFailure``)
and the next **option** is tried: the other capacity type in the same zone when the KBL allows
both (``capacityTypes``), then the neighbour zones, most of the pods' data first; a neighbour
zone's cost to the data (bytes the pods would read from other zones) is in the plan. The backoff
is reset when a node of the group created after the last failure joins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from placement.capacity.actions import BackOffNodeGroup
from placement.capacity.packing import bin_pack, instance_shape
from placement.capacity.states import (
    CapacityError,
    CapacitySettings,
    CapacityState,
    GroupPlan,
    InstanceShape,
    PlanContext,
    status_time,
)
from topology import labels
from topology.kbls import KBL
from topology.nodes import Node, Resources
from topology.pods import Pod
from topology.times import parse_time

#: Taints that make a node no room whatever its Ready condition says.
BROKEN_TAINTS = frozenset({labels.UNREACHABLE_TAINT, labels.NOT_READY_TAINT})

#: ``(kbl, pending, state, settings, capacity type)`` -> the group's instance types, first tried
#: first (see :func:`rank_types`; the state gives the nodes, the catalog and the prices).
TypeRanker = Callable[[KBL, Sequence[Pod], CapacityState, CapacitySettings, str], list[InstanceShape]]


def broken(node: Node) -> bool:
    """A node that takes no pods: NotReady, or tainted unreachable / not-ready."""
    return not node.ready or any(t.key in BROKEN_TAINTS for t in node.taints)


def price_of(prices: Mapping[tuple[str, str], float], instance_type: str, capacity_type: str) -> float | None:
    """USD per hour of one instance, if known."""
    return prices.get((instance_type, capacity_type))


def rank_types(
    kbl: KBL, pending: Sequence[Pod], state: CapacityState, settings: CapacitySettings, capacity_type: str
) -> list[InstanceShape]:
    """Every wished instance type on which every pending pod that fits some wished type fits,
    cheapest first: by the price of the nodes of that type the pending pods need (bin-packed;
    one node when none is pending), ties and unpriced types (after every priced one) in wished
    order; a pod too big for all of them is left to its ``too-big`` verdict.

    Raises
    ------
    CapacityError
        When no wished type is known or none fits the pending pods.
    """
    nodes, catalog, prices = state.nodes, state.instance_types, state.prices
    wished = kbl.node_group.instance_types or (settings.default_instance_type,)
    problems: list[str] = []
    shapes: list[InstanceShape] = []
    for itype in wished:
        try:
            shapes.append(instance_shape(itype, nodes, catalog))
        except CapacityError as exc:
            problems.append(str(exc))

    def fits(shape: InstanceShape, pod: Pod) -> bool:
        return shape.resources().fits(Resources(pod.requests.cpu_m, pod.requests.memory_b, 0, 1))

    fitting = [p for p in pending if any(fits(s, p) for s in shapes)]
    if shapes and (fitting or not pending):
        good = [s for s in shapes if all(fits(s, p) for p in fitting)]
        if good:
            order = {s.name: i for i, s in enumerate(good)}
            requests = [p.requests for p in fitting]

            def key(shape: InstanceShape) -> tuple[bool, float, int]:
                price = price_of(prices, shape.name, capacity_type)
                nodes = bin_pack(requests, shape) or 1  # what the pending pods cost on this type
                return (price is None, (price or 0.0) * nodes, order[shape.name])

            return sorted(good, key=key)
    if shapes:
        problems.append(f"{', '.join(s.name for s in shapes)} too small for the pending pods")
    raise CapacityError(f"KBL {kbl.key}: no wished instance type fits: {'; '.join(problems)}")


@dataclass(frozen=True, slots=True)
class LaunchPolicy:
    """How growth picks its launch: the type ranking, and whether to fall back to another
    capacity type or zone when a group is backed off (``False``: wait for the group)."""

    rank: TypeRanker = rank_types
    fallback: bool = True


#: The product's policy: cheapest fitting type first, every fallback.
CHEAPEST_FIRST = LaunchPolicy()


@dataclass(frozen=True, slots=True)
class GroupBackoff:
    """A group's recorded launch failures (``status.nodeGroups[]``)."""

    failures: int = 0
    until_s: float = 0.0
    last_failure_s: float = 0.0


def group_backoff(kbl: KBL, group: str) -> GroupBackoff:
    """The backoff recorded for ``group`` in the KBL's status."""
    return GroupBackoff(
        int(status_time(kbl, group, "launchFailures") or 0),
        status_time(kbl, group, "backoffUntil") or 0.0,
        status_time(kbl, group, "lastLaunchFailure") or 0.0,
    )


def backoff_seconds(failures: int, settings: CapacitySettings) -> float:
    """``initial * 2**(failures - 1)``, at most ``backoff_max_s`` (0 for no failure)."""
    if failures <= 0:
        return 0.0
    return float(min(settings.backoff_initial_s * 2 ** min(failures - 1, 30), settings.backoff_max_s))


def joined_nodes(plan: GroupPlan, last_up: float | None) -> list[Node]:
    """The group's nodes that answered its requests: Ready ones, and any node created before
    the last scale-up (a node that later broke is not a request that never joined)."""
    out = []
    for node in plan.nodes:
        born = parse_time(node.creation_timestamp)
        if node.ready or (last_up is not None and born is not None and born < last_up):
            out.append(node)
    return out


def launch_trouble(plan: GroupPlan, ctx: PlanContext) -> tuple[str, int]:
    """``(why, nodes kept)`` when the group's outstanding request is to be given up now, else
    ``("", desired)``: a capacity failure after the last scale-up while the group is short (the
    instances launched so far are kept: they are on their way), or requested nodes that have not
    joined ``max_node_provision_s`` after it (only the joined ones are kept)."""
    group = plan.existing
    if group is None:
        return "", 0
    last_up = status_time(plan.kbl, plan.name, "lastScaleUp")
    joined = len(joined_nodes(plan, last_up))
    if group.desired <= joined:
        return "", group.desired
    asked = group.requested_at_s if group.requested_at_s is not None else last_up
    if asked is not None and ctx.state.now_s - asked >= ctx.settings.max_node_provision_s:
        return f"{group.desired - joined} requested nodes did not join within {ctx.settings.max_node_provision_s:.0f}s", joined
    launched = max(joined, min(group.launched, group.desired)) if group.launched is not None else joined
    if launched < group.desired:
        since = ctx.state.now_s - last_up if last_up is not None else math.inf
        for failure in group.failures:
            if not failure.capacity:
                continue
            if failure.at_s is None and since < ctx.settings.undated_issue_grace_s:
                continue  # an undated issue may be the last request's: give the new one its time
            if failure.at_s is None or last_up is None or failure.at_s >= last_up:
                what = f" ({failure.instance_type})" if failure.instance_type else ""
                return f"{failure.code}{what}: {failure.message}".rstrip(": "), launched
    return "", group.desired


def check_launches(plan: GroupPlan, ctx: PlanContext) -> None:
    """Set ``plan.backed_off`` for a group that may not grow now, recording a new failure
    (:class:`BackOffNodeGroup`) when its request is given up, or a reset once a node created
    after the last failure has joined."""
    state, settings = ctx.state, ctx.settings
    record = group_backoff(plan.kbl, plan.name)
    if record.until_s > state.now_s:
        plan.backed_off = f"backed off for {record.until_s - state.now_s:.0f}s after {record.failures} failed launches"
        plan.keep = plan.current
        return
    why, keep = launch_trouble(plan, ctx)
    if why:
        failures = record.failures + 1
        until = state.now_s + backoff_seconds(failures, settings)
        given_up = plan.current - keep
        plan.backed_off = f"given up {given_up} nodes: {why}"
        plan.keep = keep
        ctx.actions.append(BackOffNodeGroup(plan.kbl.key, plan.name, failures, until, given_up, why))
        return
    if record.failures and any(
        n.ready and (parse_time(n.creation_timestamp) or 0.0) > record.last_failure_s for n in plan.nodes
    ):
        ctx.actions.append(BackOffNodeGroup(plan.kbl.key, plan.name, 0, 0.0, 0, "a node launched after the last failure joined"))


def option_group_name(base: str, capacity_type: str, primary: str) -> str:
    """The group of a zone's option: the zone's group for the KBL's first capacity type, the
    same name suffixed ``-spot`` or ``-od`` for the other."""
    if capacity_type == primary:
        return base
    return f"{base[:58].rstrip('-')}-{'spot' if capacity_type == 'SPOT' else 'od'}"


def zone_order(data_zone: str | None, per_zone: Mapping[str, float], zones: Sequence[str]) -> list[str]:
    """The data's zone first, then the other zones by bytes of the pods' data readable within
    them (most first), then by name."""
    rest = sorted(set(zones) | set(per_zone), key=lambda z: (-per_zone.get(z, 0.0), z))
    head = [data_zone] if data_zone else []
    return head + [z for z in rest if z != data_zone]
