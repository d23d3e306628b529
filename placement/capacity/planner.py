"""The capacity planner's entry point: every KBL's group needs, then budgets, then scale-down."""

from __future__ import annotations

from placement.capacity.actions import AnnotateNode, Note, PendingVerdict, Plan
from placement.capacity.blueprints import plan_blueprint
from placement.capacity.budgets import apply_budgets
from placement.capacity.names import group_name, node_group_of, plain_zone
from placement.capacity.packing import fit_type, instance_shape
from placement.capacity.reactive import kbl_zone, plan_reactive
from placement.capacity.scaledown import plan_orphan_groups, plan_scale_down, removal_verdict
from placement.capacity.states import (
    CapacityError,
    CapacitySettings,
    CapacityState,
    GroupPlan,
    PlanContext,
    RemovalCheck,
)
from placement.capacity.utilization import utilization_target
from topology import labels
from topology.kbls import KBL


def plan_capacity(
    state: CapacityState,
    settings: CapacitySettings | None = None,
    *,
    removal_check: RemovalCheck = removal_verdict,
) -> Plan:
    """Plan the node-group actions for every KBL (see the package docstring for the rules).

    Parameters
    ----------
    state:
        The cluster and cloud state, with the clock and the provider's instance types.
    settings:
        Planner knobs.
    removal_check:
        The durability check for scale-down (swap in the placement engine's).

    Returns
    -------
    Plan
        Creates and resizes first (grow before shrink), then scale-down steps, then notes.
    """
    ctx = PlanContext(state, settings or CapacitySettings(), removal_check)
    ctx.groups_by_name = {g.name: g for g in state.groups}
    nodes_by_group = ctx.nodes_by_group
    for node in state.nodes:
        g = node_group_of(node)
        if g is not None:
            nodes_by_group.setdefault(g, []).append(node)
    kbls = sorted(state.kbls, key=lambda k: k.key)
    kbl_keys = {k.key for k in kbls}
    plans: list[GroupPlan] = []
    for kbl in kbls:
        plans.extend(_plan_kbl(kbl, ctx))
    apply_budgets(plans, ctx)
    plan_scale_down(plans, ctx)
    # Groups the cloud has for KBLs that no longer exist: the safe path to zero, then delete.
    plan_orphan_groups([g for g in state.groups if g.kbl not in kbl_keys], ctx)
    return Plan(tuple(ctx.actions + ctx.notes), tuple(ctx.verdicts))


def _plan_kbl(kbl: KBL, ctx: PlanContext) -> list[GroupPlan]:
    state, settings, actions, notes = ctx.state, ctx.settings, ctx.actions, ctx.notes
    groups_by_name, nodes_by_group = ctx.groups_by_name, ctx.nodes_by_group
    pods = [p for p in state.pods if p.kbl == kbl.name and p.namespace == kbl.namespace]
    pending = [p for p in pods if p.unschedulable and p.node_name is None]
    existing = {g.zone: g for g in state.groups if g.kbl == kbl.key}
    data_zone, _ = kbl_zone(kbl, pods, state)
    zone = data_zone or (sorted(existing)[0] if existing else None)
    if zone is None:
        zones = sorted({plain_zone(n.zone) for n in state.nodes if "~" not in n.zone})
        zone = zones[0] if zones else None
    plans: dict[str, GroupPlan] = {}
    if zone is None and (pending or kbl.stages):
        notes.append(Note(kbl.key, "no zone known: no data placed and no labelled node to take a zone from"))

    def plan_for(z: str) -> GroupPlan | None:
        if z in plans:
            return plans[z]
        name = group_name(kbl.key, z)
        group = groups_by_name.get(name) or existing.get(z)
        itype = group.instance_type if group else None
        try:
            if itype:
                shape = instance_shape(itype, state.nodes, state.instance_types)
            else:
                shape = fit_type(kbl, pending, state.nodes, state.instance_types, settings)
        except CapacityError as exc:
            notes.append(Note(kbl.key, str(exc)))
            return None
        plan = GroupPlan(kbl, z, group.name if group else name, shape, group, list(nodes_by_group.get(group.name if group else name, [])))
        plans[z] = plan
        return plan

    for z in sorted(existing):
        plan_for(z)
    for plan in plans.values():
        for node in plan.nodes:
            if node.annotations.get(labels.CA_SCALE_DOWN_DISABLED) != "true":
                actions.append(AnnotateNode(kbl.key, node.name, {labels.CA_SCALE_DOWN_DISABLED: "true"}))
    # Floor: nodes that run the KBL's pods stay.
    for plan in plans.values():
        names = {n.name for n in plan.nodes}
        plan.busy = len({p.node_name for p in pods if p.active and p.node_name in names and p.owner_kind != "DaemonSet"})
    # Windowed activation: while the window is closed every group goes to zero (safe path), nothing grows.
    window = kbl.window
    if window is not None and not window.is_open(state.now_s):
        why = f"activation window closed (opens in {window.opens_in(state.now_s):.0f}s)"
        for plan in plans.values():
            plan.closing = why
        if pending:
            ctx.verdicts.append(PendingVerdict(kbl.key, tuple(p.key for p in pending), "window-closed", why))
        return list(plans.values())
    # Reactive: pending pods, batched, in the data's zone.
    grow = plan_for(zone) if pending and zone is not None else None
    if grow is not None:
        plan_reactive(kbl, grow, pending, ctx)
    elif pending:
        reason = "no-zone" if zone is None else "no-instance-type"
        ctx.verdicts.append(PendingVerdict(kbl.key, tuple(p.key for p in pending), reason, "no group can be planned for them"))
    # Blueprint pre-warm.
    if kbl.stages and zone is not None:
        warm = plan_for(zone)
        if warm is not None:
            plan_blueprint(kbl, warm, ctx)
    # Utilization feedback.
    util = state.utilization.get(kbl.key)
    if util is not None:
        for plan in plans.values():
            utilization_target(plan, util, state.now_s, settings)
    return list(plans.values())
