"""Scale-down: one safe path for a node to leave its group, whatever the reason.

The reason may be an idle group, low utilization, a closed activation window, a deleted KBL or a
replaced group; the steps are always the same, one named node at a time, each a separate
reconcile so a restart anywhere resumes where the cluster says it is:

1. **cordon and drain**: ``spec.unschedulable``, ``kbl.io/scale-down-since`` and
   ``kbl.io/drain=<reason>`` (:class:`CordonNode`): the placement reconciler now moves the node's
   pieces off, make before break;
2. **wait for the data** (:class:`WaitForData`): on a node that runs a node agent (it has a
   NodeHoldings), until the reconciler writes ``kbl.io/data-drained`` (at or after the cordon)
   and ``kbl.io/last-pieces`` is not positive; on every node, until no DataSet's target slot or
   transfer references it and :func:`removal_verdict` finds no shard short of its redundancy
   (the second guard); and, on every node, until every DataSet's target is *known*: a DataSet
   whose target is written as PlacementSlices the controller has not all read
   (:attr:`~topology.datasets.DataSet.awaits_slices`) may place the last piece of a shard on any
   node, so no node is removed while one waits (:func:`unknown_targets`);
3. **evict** its pods through the Eviction API (:class:`EvictPods`; a PodDisruptionBudget refusal
   leaves the node waiting), never a node or pod marked ``kbl.io/do-not-disrupt``, never a
   DaemonSet's pod or a placeholder (``kbl.io/placeholder``, Karpenter mode);
4. **remove** the instance and shrink the group by one (:class:`RemoveNode`).

A group whose KBL is gone goes to zero only through these steps, then is deleted.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np

from placement.capacity.actions import (
    CordonNode,
    DeleteNodeGroup,
    EvictPods,
    Note,
    RemoveNode,
    ResizeNodeGroup,
    UncordonNode,
    WaitForData,
)
from placement.capacity.states import CapacitySettings, GroupPlan, GroupState, PlanContext, RemovalVerdict, status_time
from placement.durability import removal_is_safe
from topology import labels
from topology.clusters import Cluster
from topology.datasets import DataSet
from topology.nodes import Node, Resources
from topology.pods import Pod
from topology.times import parse_time

SCALE_DOWN_ANNOTATION = labels.SCALE_DOWN_SINCE
_YES = ("true", "1", "yes")


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
        With the number of shards at risk per dataset key. A DataSet whose target is not known
        (sliced, its slices not all read: :attr:`~topology.datasets.DataSet.awaits_slices`) puts
        every shard at risk whatever is removed: any of its shards may have its pieces there.
    """
    nodes = list(cluster.nodes.values())
    at_risk: dict[str, int] = {}
    for dataset in datasets:
        if dataset.awaits_slices and remove:
            at_risk[dataset.key] = dataset.spec.shards
            continue
        if dataset.placement is None or not any(n in dataset.placement.nodes for n in remove):
            continue
        red = dataset.spec.redundancy
        spare = red.width - red.needed if keep_full else 0
        verdict = removal_is_safe(nodes, dataset.spec, dataset.placement, remove, min_spare=spare)
        if not verdict.safe:
            at_risk[dataset.key] = len(verdict.lost_shards) + len(verdict.at_risk_shards)
    return RemovalVerdict(not at_risk, at_risk)


def unknown_targets(datasets: Sequence[DataSet]) -> list[str]:
    """Keys of the DataSets whose target is not known: written as PlacementSlices the reader has
    not all read. Such a DataSet is not *unplaced*: its pieces may be on any node."""
    return sorted(d.key for d in datasets if d.awaits_slices)


def referenced_nodes(datasets: Sequence[DataSet]) -> dict[str, set[str]]:
    """Node name -> keys of the DataSets whose target slots or transfers reference it."""
    out: dict[str, set[str]] = {}
    for dataset in datasets:
        key = dataset.key
        placement = dataset.placement
        if placement is not None and placement.nodes:
            pieces = placement.pieces
            used = np.zeros(len(placement.nodes), dtype=bool)  # O(pieces), no sort: a million pieces per DataSet
            used[pieces[pieces >= 0]] = True
            names = placement.nodes
            for index in np.flatnonzero(used).tolist():
                found = out.get(names[index])
                if found is None:
                    out[names[index]] = {key}
                else:
                    found.add(key)
        for transfer in dataset.transfers:
            for node in (transfer.source, transfer.to):
                out.setdefault(node, set()).add(key)
    return out


def is_leaving(node: Node) -> bool:
    """Cordoned by the controller with the drain request: step 1 is done."""
    return node.unschedulable and SCALE_DOWN_ANNOTATION in node.annotations and labels.DRAIN in node.annotations


def data_drained(node: Node) -> bool:
    """The reconciler's ``kbl.io/data-drained`` written at or after this drain began, and no
    piece only this node holds."""
    drained = parse_time(node.annotations.get(labels.DATA_DRAINED))
    try:
        since = float(node.annotations.get(SCALE_DOWN_ANNOTATION, "inf"))
    except ValueError:
        since = math.inf
    try:
        last = int(node.annotations.get(labels.LAST_PIECES, "0") or 0)
    except ValueError:
        last = 1
    return drained is not None and drained >= math.floor(since) and last <= 0


class _Steps:
    """The per-node steps of one planning pass (shared indexes and the nodes already leaving)."""

    def __init__(self, ctx: PlanContext) -> None:
        self.ctx = ctx
        state = ctx.state
        self.active_by_node: dict[str, list[Pod]] = {}
        for pod in state.pods:
            if pod.active and pod.node_name is not None:
                self.active_by_node.setdefault(pod.node_name, []).append(pod)
        self.agents = {h.node for h in state.holdings}
        self.removing: set[str] = set()
        self.unknown = unknown_targets(state.datasets)

    @property
    def referenced(self) -> dict[str, set[str]]:
        """:func:`referenced_nodes`, computed once per planning pass and only when a node is
        leaving (it reads every piece of every DataSet: a million pieces at 100,000 nodes)."""
        ctx = self.ctx
        if ctx.referenced is None:
            ctx.referenced = referenced_nodes(ctx.state.datasets)
        return ctx.referenced

    def pods_on(self, node: Node) -> list[Pod]:
        return self.active_by_node.get(node.name, [])

    def step(self, kbl_key: str, group: str, node: Node, reason: str) -> None:
        """Plan the next step of ``node``'s way out of ``group``."""
        ctx = self.ctx
        if not is_leaving(node):
            ctx.actions.append(CordonNode(kbl_key, group, node.name, reason))
            return
        waiting = []
        if node.name in self.agents and not data_drained(node):
            waiting.append("the placement reconciler has not yet written kbl.io/data-drained")
        refs = self.referenced.get(node.name)
        if refs:
            waiting.append(f"DataSets {', '.join(sorted(refs))} still place pieces on it")
        if self.unknown:  # their target may place a shard's last piece on this node
            names = ", ".join(self.unknown[:5]) + (f" and {len(self.unknown) - 5} more" if len(self.unknown) > 5 else "")
            waiting.append(f"the targets of DataSets {names} are not known yet (PlacementSlices not all read): they may place pieces on it")
        if not waiting:
            leaving = frozenset({*self.removing, node.name})
            verdict = ctx.removal_check(ctx.state.cluster, ctx.state.datasets, leaving, ctx.settings.keep_full_redundancy)
            if not verdict.safe:
                waiting.append(f"removing it would leave {sum(verdict.at_risk.values())} shards short of their redundancy")
        if waiting:
            ctx.actions.append(WaitForData(kbl_key, group, node.name, "; ".join(waiting)))
            return
        self.removing.add(node.name)
        # DaemonSet pods stay; a placeholder (Karpenter mode) is never evicted: it would pend and
        # bring a node back. It leaves with the node, the group's placeholder count lowered first.
        pods = [p for p in self.pods_on(node) if p.owner_kind != "DaemonSet" and labels.PLACEHOLDER not in p.labels]
        if pods:
            ctx.actions.append(EvictPods(kbl_key, node.name, tuple(sorted(p.key for p in pods))))
        else:
            ctx.actions.append(RemoveNode(kbl_key, group, node.name, node.provider_id, f"cordoned, data moved off, drained: {reason}"))


def plan_scale_down(plans: list[GroupPlan], ctx: PlanContext) -> None:
    """Shrink every group whose joined nodes exceed its target, one named node at a time."""
    state, settings, actions, notes = ctx.state, ctx.settings, ctx.actions, ctx.notes
    steps = _Steps(ctx)
    for plan in plans:
        if plan.existing is None:
            continue
        kbl = plan.kbl
        target = plan.target
        marked = [n for n in plan.nodes if SCALE_DOWN_ANNOTATION in n.annotations]
        wanted = bool(ctx.helpable.get(kbl.key))
        excess = len(plan.nodes) - target
        if excess <= 0 or (wanted and not plan.closing):
            for node in marked:  # capacity is wanted again: take the node back
                actions.append(UncordonNode(kbl.key, plan.name, node.name, "capacity is needed again"))
            continue
        last_up = status_time(kbl, plan.name, "lastScaleUp")
        if last_up is not None and state.now_s - last_up < settings.scale_down_delay_after_up_s and not marked and not plan.closing:
            wait_s = settings.scale_down_delay_after_up_s - (state.now_s - last_up)
            notes.append(Note(kbl.key, f"{plan.name}: scale-down waits {wait_s:.0f}s after the last scale-up"))
            continue
        # Nodes running the KBL's pods go only when utilization asks to consolidate or the group closes.
        allow_busy = plan.utilization < 0 or plan.closing
        candidates = sorted(
            (
                n
                for n in plan.nodes
                if _removable(n, steps.pods_on(n), state.now_s, settings)
                and (allow_busy or SCALE_DOWN_ANNOTATION in n.annotations or not _kbl_pods(kbl.name, kbl.namespace, steps.pods_on(n)))
            ),
            key=lambda n: (SCALE_DOWN_ANNOTATION not in n.annotations, len(_kbl_pods(kbl.name, kbl.namespace, steps.pods_on(n))), n.name),
        )
        reason = plan.closing or f"group {plan.name} wants {target} nodes, has {len(plan.nodes)}"
        room = None
        for node in candidates[:excess]:
            moving = [p for p in _kbl_pods(kbl.name, kbl.namespace, steps.pods_on(node)) if p.owner_kind != "DaemonSet"]
            if moving and not plan.closing and SCALE_DOWN_ANNOTATION not in node.annotations:
                # Utilization asks to consolidate a busy node: only when its pods fit on the group's
                # other nodes that stay (simulated, as growth is), else they would pend and grow it back.
                if room is None:
                    room = _free_room(plan.nodes, steps, set())
                if not _fits_elsewhere(moving, room, exclude=node.name):
                    notes.append(Note(kbl.key, f"{plan.name}: {node.name} stays: its {len(moving)} pods fit on no other node of the group"))
                    continue
            steps.step(kbl.key, plan.name, node, reason)


def plan_orphan_groups(groups: Sequence[GroupState], ctx: PlanContext, reason: str = "its KBL is gone") -> None:
    """Groups whose KBL no longer exists: every node leaves through the safe path, requested
    nodes that never joined are cancelled, then the empty group is deleted."""
    steps = _Steps(ctx)
    for group in sorted(groups, key=lambda g: g.name):
        if group.status == "DELETING":
            continue
        nodes = sorted(ctx.nodes_by_group.get(group.name, []), key=lambda n: n.name)
        if not nodes:
            if group.desired > 0:
                ctx.actions.append(ResizeNodeGroup(group.kbl, group.name, 0, group.desired, f"{reason}: requested nodes never joined"))
            else:
                ctx.actions.append(DeleteNodeGroup(group.kbl, group.name, f"{reason} and the group is empty"))
            continue
        for node in nodes:
            if _do_not_disrupt(node, steps.pods_on(node)):
                ctx.notes.append(Note(group.kbl, f"{group.name}: {node.name} is marked {labels.DO_NOT_DISRUPT}: it stays"))
                continue
            steps.step(group.kbl, group.name, node, reason)


def _free_room(nodes: Sequence[Node], steps: _Steps, leaving: set[str]) -> dict[str, Resources]:
    """What each schedulable, staying node of the group still offers (allocatable minus the requests
    of its active pods), by node name."""
    out: dict[str, Resources] = {}
    for node in nodes:
        if node.unschedulable or node.name in leaving or SCALE_DOWN_ANNOTATION in node.annotations:
            continue
        room = node.allocatable
        for pod in steps.pods_on(node):
            room = room - Resources(pod.requests.cpu_m, pod.requests.memory_b, 0, 1)
        out[node.name] = room
    return out


def _fits_elsewhere(pods: Sequence[Pod], room: dict[str, Resources], *, exclude: str) -> bool:
    """First-fit decreasing of ``pods`` into ``room`` (other than ``exclude``); on success the room
    is taken (the next candidate sees what is left) and the node leaves the pool of destinations."""
    trial = {name: r for name, r in room.items() if name != exclude}
    for pod in sorted(pods, key=lambda p: (-p.requests.cpu_m, -p.requests.memory_b, p.key)):
        need = Resources(pod.requests.cpu_m, pod.requests.memory_b, 0, 1)
        for name in sorted(trial):
            free = trial[name]
            if need.cpu_m <= free.cpu_m and need.memory_b <= free.memory_b and free.pods >= 1:
                trial[name] = free - need
                break
        else:
            return False
    room.clear()
    room.update(trial)
    return True


def _kbl_pods(name: str, namespace: str, pods: Sequence[Pod]) -> list[Pod]:
    return [p for p in pods if p.kbl == name and p.namespace == namespace]


def _do_not_disrupt(node: Node, pods: Sequence[Pod]) -> bool:
    if node.annotations.get(labels.DO_NOT_DISRUPT, "").lower() in _YES:
        return True
    return any(p.annotations.get(labels.DO_NOT_DISRUPT, "").lower() in _YES for p in pods)


def _removable(node: Node, pods: Sequence[Pod], now_s: float, settings: CapacitySettings) -> bool:
    """May this node be considered for removal at all?"""
    if _do_not_disrupt(node, pods):
        return False
    if SCALE_DOWN_ANNOTATION in node.annotations:
        return True
    born = parse_time(node.creation_timestamp)
    return not (born is not None and now_s - born < settings.scale_down_min_node_age_s)
