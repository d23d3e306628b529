"""The capacity planner's entry point: every KBL's group needs, then budgets, then scale-down."""

from __future__ import annotations

from placement.capacity.actions import AnnotateNode, Note, PendingVerdict, Plan
from placement.capacity.blueprints import plan_blueprint
from placement.capacity.budgets import apply_budgets
from placement.capacity.launches import CHEAPEST_FIRST, LaunchPolicy, check_launches, option_group_name, price_of, zone_order
from placement.capacity.names import group_name, node_group_of, plain_zone
from placement.capacity.packing import bin_pack, instance_shape
from placement.capacity.reactive import kbl_zone, plan_reactive, read_bytes
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
    policy: LaunchPolicy = CHEAPEST_FIRST,
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
    policy:
        How growth picks instance types and falls back (:mod:`.launches`).

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
        plans.extend(_plan_kbl(kbl, ctx, policy))
    apply_budgets(plans, ctx)
    plan_scale_down(plans, ctx)
    # Groups the cloud has for KBLs that no longer exist: the safe path to zero, then delete.
    plan_orphan_groups([g for g in state.groups if g.kbl not in kbl_keys], ctx)
    return Plan(tuple(ctx.actions + ctx.notes), tuple(ctx.verdicts))


def _plan_kbl(kbl: KBL, ctx: PlanContext, policy: LaunchPolicy) -> list[GroupPlan]:
    state, settings, actions, notes = ctx.state, ctx.settings, ctx.actions, ctx.notes
    groups_by_name, nodes_by_group = ctx.groups_by_name, ctx.nodes_by_group
    pods = [p for p in state.pods if p.kbl == kbl.name and p.namespace == kbl.namespace]
    pending = [p for p in pods if p.unschedulable and p.node_name is None]
    ctypes = kbl.node_group.allowed_capacity_types
    primary = ctypes[0]
    existing = {(g.zone, g.capacity_type if g.capacity_type in ctypes else primary): g for g in state.groups if g.kbl == kbl.key}
    data_zone, per_zone = kbl_zone(kbl, pods, state)
    zone = data_zone or (sorted(z for z, _ in existing)[0] if existing else None)
    known_zones = sorted({plain_zone(n.zone) for n in state.nodes if "~" not in n.zone})
    if zone is None:
        zone = known_zones[0] if known_zones else None
    plans: dict[tuple[str, str], GroupPlan] = {}
    if zone is None and (pending or kbl.stages):
        notes.append(Note(kbl.key, "no zone known: no data placed and no labelled node to take a zone from"))

    def plan_for(z: str, ctype: str) -> GroupPlan | None:
        if (z, ctype) in plans:
            return plans[z, ctype]
        name = option_group_name(group_name(kbl.key, z), ctype, primary)
        group = groups_by_name.get(name) or existing.get((z, ctype))
        try:
            if group is not None and group.types:
                types = tuple(instance_shape(t, state.nodes, state.instance_types) for t in group.types)
            else:
                types = tuple(policy.rank(kbl, pending, state, settings, ctype))
        except CapacityError as exc:
            notes.append(Note(kbl.key, str(exc)))
            return None
        gname = group.name if group else name
        plan = GroupPlan(kbl, z, gname, types[0], group, list(nodes_by_group.get(gname, [])), capacity_type=ctype, types=types)
        plans[z, ctype] = plan
        if policy.fallback:  # also a group whose creation the cloud refused (recorded in the status)
            check_launches(plan, ctx)
        return plan

    for z, c in sorted(existing):
        plan_for(z, c)
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
    # Where growth goes: the first launch option (zone, capacity type) whose group is not backed off.
    skipped: list[str] = []
    chosen: GroupPlan | None = None
    if zone is not None and (pending or kbl.stages):
        zones = zone_order(zone, per_zone, known_zones) if policy.fallback else [zone]
        for z in zones:
            for c in ctypes if policy.fallback else (primary,):
                option = plan_for(z, c)
                if option is None:
                    continue
                if option.backed_off:
                    skipped.append(f"{option.name} {option.backed_off}")
                    continue
                chosen = option
                break
            if chosen is not None:
                break
    # Reactive: pending pods, batched, in the data's zone (or the fallback option's).
    if chosen is not None and pending:
        others = [p for p in plans.values() if p is not chosen]
        plan_reactive(kbl, chosen, pending, ctx, others)
        _explain(chosen, ctx, data_zone=zone, skipped=skipped)
    elif pending:
        if zone is None:
            reason, why = "no-zone", "no group can be planned for them"
        elif skipped:
            reason, why = "backed-off", "; ".join(skipped)
        else:
            reason, why = "no-instance-type", "no group can be planned for them"
        ctx.verdicts.append(PendingVerdict(kbl.key, tuple(p.key for p in pending), reason, why))
    # Blueprint pre-warm.
    if kbl.stages and chosen is not None:
        plan_blueprint(kbl, chosen, ctx)
    # Utilization feedback.
    util = state.utilization.get(kbl.key)
    if util is not None:
        for plan in plans.values():
            utilization_target(plan, util, state.now_s, settings)
    return list(plans.values())


def _explain(
    plan: GroupPlan, ctx: PlanContext, *, data_zone: str | None, skipped: list[str]
) -> None:
    """Say in the plan why the group's types, capacity type and zone were chosen."""
    if not plan.reactive or plan.reactive <= plan.current:
        return
    priced = []
    requests = [p.requests for p in ctx.helpable.get(plan.kbl.key, [])]
    for shape in plan.types:
        price = price_of(ctx.state.prices, shape.name, plan.capacity_type)
        nodes = bin_pack(requests, shape) or 1
        cost = f"${price:.4f}/h, {nodes} for the pods ${price * nodes:.2f}/h" if price is not None else "price unknown"
        priced.append(f"{shape.name} {cost}")
    source = f"; prices: {ctx.state.price_source}" if ctx.state.price_source else ""
    plan.reasons.append(f"types {'; '.join(priced)} ({plan.capacity_type}; cheapest for the pods first{source})")
    if skipped:
        plan.reasons.append(f"fallback: {'; '.join(skipped)}")
    if data_zone is not None and plan.zone != data_zone:
        helped = ctx.helpable.get(plan.kbl.key, [])
        _, in_zone = kbl_zone(plan.kbl, helped, ctx.state)
        plan.cross_zone_bytes = max(0.0, read_bytes(plan.kbl, helped, ctx.state) - in_zone.get(plan.zone, 0.0))
        plan.reasons.append(
            f"neighbour zone {plan.zone} instead of {data_zone}: the {len(helped)} pending pods would read up to "
            f"{plan.cross_zone_bytes / 2**30:.1f} GiB from other zones"
        )
