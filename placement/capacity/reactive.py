"""Reactive growth: unschedulable pods of a KBL, batched, bin-packed, in their data's zone."""

from __future__ import annotations

from collections.abc import Sequence

from placement.capacity.actions import Note, PendingVerdict
from placement.capacity.fitting import HELPS, new_node_labels, new_node_taints, pending_verdict
from placement.capacity.launches import broken
from placement.capacity.names import plain_zone
from placement.capacity.packing import bin_pack
from placement.capacity.states import CapacityState, GroupPlan, PlanContext
from topology import labels
from topology.clusters import Cluster
from topology.kbls import KBL
from topology.nodes import Resources
from topology.pods import Pod


def plan_reactive(kbl: KBL, plan: GroupPlan, pending: Sequence[Pod], ctx: PlanContext, others: Sequence[GroupPlan] = ()) -> None:
    """Set ``plan.reactive``: the nodes joined or on the way plus what the pending pods that a
    new node would help need (:mod:`.fitting`); every pending pod gets a :class:`PendingVerdict`.

    Pods that fit the free room of the group's joined, schedulable, healthy nodes or of nodes
    requested but not yet joined (in this group or the KBL's ``others``, of a backed-off group
    only those it keeps) ask for nothing more, so a pod that stays pending after its nodes joined is never
    counted twice. A NotReady or unreachable node (:func:`~.launches.broken`) is no room.
    """
    state = ctx.state
    node_labels = new_node_labels(kbl, plan.name, plan.zone, plan.shape.name)
    taints = new_node_taints(kbl)
    datasets = {d.key: d for d in state.datasets}
    by_reason: dict[str, list[Pod]] = {}
    messages: dict[str, str] = {}
    for pod in pending:
        reason, message = pending_verdict(pod, plan.shape, node_labels, taints, datasets, affinity=state.pod_affinity.get(pod.key, ()))
        by_reason.setdefault(reason, []).append(pod)
        messages.setdefault(reason, message)
    helpable = by_reason.get(HELPS, [])
    ctx.helpable[kbl.key] = helpable
    for reason, pods in sorted(by_reason.items()):
        ctx.verdicts.append(PendingVerdict(kbl.key, tuple(p.key for p in pods), reason, f"{plan.name}: {messages[reason]}"))
        if reason != HELPS:
            ctx.notes.append(Note(kbl.key, f"pods {', '.join(p.key for p in pods)}: no new node helps: {messages[reason]}"))
    joined = len(plan.nodes)
    in_flight = max(plan.current - joined, 0) + sum(o.in_flight for o in others)
    free = [room for p in (plan, *others) for room in _free_room(p, state)]
    extra = bin_pack([p.requests for p in helpable], plan.shape, open_bins=in_flight, free=free)
    plan.reactive = max(plan.current, joined) + extra
    if extra:
        plan.reasons.append(f"{len(helpable)} unschedulable pods need {extra} more {plan.shape.name} nodes in {plan.zone}")


def _free_room(plan: GroupPlan, state: CapacityState) -> list[Resources]:
    """What the group's joined, schedulable, healthy nodes still offer (allocatable minus active
    requests); a broken node offers nothing."""
    names = {n.name for n in plan.nodes if not n.unschedulable and not broken(n)}
    used: dict[str, Resources] = {}
    for pod in state.pods:
        if pod.active and pod.node_name in names:
            one = Resources(pod.requests.cpu_m, pod.requests.memory_b, 0, 1)
            used[pod.node_name] = used[pod.node_name] + one if pod.node_name in used else one
    out = []
    for node in plan.nodes:
        if node.name in names:
            room = node.allocatable - used[node.name] if node.name in used else node.allocatable
            out.append(Resources(max(room.cpu_m, 0), max(room.memory_b, 0), 0, max(room.pods, 0)))
    return out


def kbl_zone(kbl: KBL, pods: Sequence[Pod], state: CapacityState) -> tuple[str | None, dict[str, float]]:
    """The zone where most of the KBL's data is readable within the zone; bytes per zone."""
    per_zone: dict[str, float] = {}
    for key, shards in _data_keys(kbl, pods, state):
        for zone, value in zone_bytes(state.cluster, key, shards).items():
            per_zone[zone] = per_zone.get(zone, 0.0) + value
    if per_zone:
        return max(sorted(per_zone), key=lambda z: per_zone[z]), per_zone
    return None, per_zone


def read_bytes(kbl: KBL, pods: Sequence[Pod], state: CapacityState) -> float:
    """Bytes the KBL's pods read in all (the same sum as :func:`kbl_zone`'s, over every level)."""
    total = 0.0
    for key, shards in _data_keys(kbl, pods, state):
        table = state.cluster.level_bytes(key, shards).table
        for node in state.cluster.nodes.values():
            nid = state.cluster.node_id(node.name)
            if nid is not None:  # every present node reads the same total, split over levels
                total += float(table[nid].sum())
                break
    return total


def _data_keys(kbl: KBL, pods: Sequence[Pod], state: CapacityState) -> list[tuple[str, tuple[int, ...] | None]]:
    """``(dataset key, shards)`` the KBL's pods read (the KBL's own DataSet when none says)."""
    keys: list[tuple[str, tuple[int, ...] | None]] = []
    for pod in pods:
        if pod.data is None or pod.data.problem:
            continue
        key = f"{pod.data.namespace}/{pod.data.dataset}"
        if key in state.cluster.datasets:
            shards = pod.data.shards
            keys.append((key, tuple(shards) if shards is not None else None))
    if not keys and labels.KBL_DATASET in kbl.annotations:
        key = f"{kbl.namespace}/{kbl.annotations[labels.KBL_DATASET]}"
        if key in state.cluster.datasets:
            keys.append((key, None))
    return keys


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


