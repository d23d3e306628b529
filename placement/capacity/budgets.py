"""Budgets: turn each group's needs into create/resize actions within ``maxSize`` and the global
node budget."""

from __future__ import annotations

from placement.capacity.actions import CreateNodeGroup, Note, ResizeNodeGroup
from placement.capacity.states import GroupPlan, PlanContext
from topology import labels
from topology.nodes import Taint


def group_target(plan: GroupPlan, zone_of_kbl_min: bool) -> int:
    """The largest of the needs (reactive, blueprint, utilization, the busy floor, ``minSize``);
    zero for a closing group (its window is closed)."""
    if plan.closing:
        return 0
    floor = plan.busy
    if plan.utilization < 0:  # utilization allows shrinking below the busy floor
        floor = min(floor, -plan.utilization - 1)
    want = max(plan.reactive, plan.blueprint, plan.utilization, floor)
    if zone_of_kbl_min:
        want = max(want, plan.kbl.node_group.min_size)
    return want


def apply_budgets(plans: list[GroupPlan], ctx: PlanContext) -> None:
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
        target = group_target(plan, first)
        if plan.backed_off:  # its launches failed: no growth, and the requests it cannot keep are given up
            target = min(max(target, plan.keep if plan.keep is not None else 0), plan.current)
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
                price = ctx.state.prices.get((plan.shape.name, plan.capacity_type))
                create = CreateNodeGroup(
                    plan.kbl.key, plan.name, plan.zone, plan.shape.name, plan.capacity_type,
                    target, wish.max_size, node_labels, taints, reason,
                    tuple(s.name for s in plan.types) or (plan.shape.name,), price, plan.cross_zone_bytes,
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
                if plan.backed_off:
                    why = f"{current - lowest} requested nodes {plan.backed_off}"
                actions.append(ResizeNodeGroup(plan.kbl.key, plan.name, lowest, current, why))
        plan.target = plan_target

