"""Blueprint pre-warm: a stage's nodes are asked for one lead time before the stage starts.

``lead = ready_s * prewarm_factor + margin_s`` with the group's measured node-ready time;
the stage's nodes are released when it ends (idle stages go to zero).
"""

from __future__ import annotations

import math

from placement.capacity.actions import RecordBlueprintStart
from placement.capacity.states import GroupPlan, InstanceShape, PlanContext
from topology.kbls import KBL, Stage
from topology.times import parse_time


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
    return parse_time(kbl.status.get("blueprintStart"))


def stage_nodes(stage: Stage, shape: InstanceShape) -> int:
    """Nodes a stage needs: its node count, or ceil(max(cpu / node cpu, memory / node memory))."""
    by_cpu = math.ceil(stage.cpu_m / shape.cpu_m) if stage.cpu_m else 0
    by_mem = math.ceil(stage.memory_b / shape.memory_b) if stage.memory_b else 0
    return max(stage.nodes, by_cpu, by_mem)


def plan_blueprint(kbl: KBL, plan: GroupPlan, ctx: PlanContext) -> None:
    """Raise ``plan.blueprint`` to the nodes of every stage that runs or starts within the lead."""
    state, settings = ctx.state, ctx.settings
    start = blueprint_start(kbl)
    if start is None:
        start = state.now_s
        ctx.actions.append(RecordBlueprintStart(kbl.key, start))
    ready_s = state.node_ready_s.get(plan.name, settings.default_node_ready_s)
    lead = ready_s * settings.prewarm_factor + settings.prewarm_margin_s
    for stage, begin, end in stage_windows(kbl, start):
        if begin - lead <= state.now_s < end:
            need = stage_nodes(stage, plan.shape)
            if need > plan.blueprint:
                plan.blueprint = need
                when = "running" if state.now_s >= begin else f"starts in {begin - state.now_s:.0f}s, nodes take {ready_s:.0f}s"
                plan.reasons.append(f"stage {stage.name} ({when}) needs {need} nodes")
