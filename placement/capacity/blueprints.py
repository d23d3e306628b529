"""Blueprint pre-warm: a stage's nodes are asked for one lead time before the stage starts.

A stage starts at its ``start``, or by progress (``after``: when an earlier stage's Job reaches
a completion fraction; the moment is extrapolated from the Job's rate so far, see
:meth:`JobProgress.reaches_at`), or ``startAfterSeconds`` after the previous stage starts.

``lead = ready_s * prewarm_factor + margin_s + hydrate_s``: the group's measured node-ready time
(p90 over recent joins) plus the time the node agents need to hydrate the stage's DataSets
(stored bytes / (measured bytes/s per node * the stage's nodes)), so capacity *and* data are
ready when the stage's first runner starts. The stage's nodes are released when it ends (its
duration, or its own Job completing); idle stages go to zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from placement.capacity.actions import Note, RecordBlueprintStart
from placement.capacity.states import GroupPlan, InstanceShape, JobProgress, PlanContext
from topology import labels
from topology.datasets import DataSet
from topology.kbls import KBL, Stage
from topology.times import parse_time


def stage_windows(
    kbl: KBL, blueprint_start_s: float, jobs: Mapping[str, JobProgress] | None = None, now_s: float | None = None
) -> list[tuple[Stage, float, float]]:
    """Each stage with its absolute start and end (epoch seconds; ``inf`` when not yet known).

    ``jobs`` ("namespace/name" -> progress) and ``now_s`` serve the stages that start by
    progress; without them such a stage's start is unknown (``inf``).
    """
    out: list[tuple[Stage, float, float]] = []
    prev = blueprint_start_s
    jobs = jobs or {}
    now = blueprint_start_s if now_s is None else now_s
    for stage in kbl.stages:
        if stage.start is not None:
            begin = stage.start.timestamp()
        elif stage.after is not None:
            begin = _progress_start(kbl, stage, jobs, now)
        else:
            begin = prev + (stage.start_after_s or 0.0)
        end = begin + stage.duration_s
        own = jobs.get(f"{kbl.namespace}/{stage.job}") if stage.job else None
        if own is not None and own.completion_s is not None:
            end = min(end, own.completion_s)
        out.append((stage, begin, end))
        prev = begin
    return out


def _progress_start(kbl: KBL, stage: Stage, jobs: Mapping[str, JobProgress], now_s: float) -> float:
    assert stage.after is not None
    named = next((s for s in kbl.stages if s.name == stage.after.stage), None)
    if named is None or not named.job:
        return math.inf
    progress = jobs.get(f"{kbl.namespace}/{named.job}")
    return math.inf if progress is None else progress.reaches_at(stage.after.fraction, now_s)


def blueprint_start(kbl: KBL) -> float | None:
    """The recorded blueprint start (``status.blueprintStart``, RFC 3339), if any."""
    return parse_time(kbl.status.get("blueprintStart"))


def stage_nodes(stage: Stage, shape: InstanceShape) -> int:
    """Nodes a stage needs: its node count, or ceil(max(cpu / node cpu, memory / node memory))."""
    by_cpu = math.ceil(stage.cpu_m / shape.cpu_m) if stage.cpu_m else 0
    by_mem = math.ceil(stage.memory_b / shape.memory_b) if stage.memory_b else 0
    return max(stage.nodes, by_cpu, by_mem)


def stage_datasets(kbl: KBL, stage: Stage, datasets: Sequence[DataSet]) -> list[DataSet]:
    """The DataSets a stage reads: its ``datasets``, else the KBL's ``kbl.io/dataset``."""
    names = set(stage.datasets) or ({kbl.annotations[labels.KBL_DATASET]} if labels.KBL_DATASET in kbl.annotations else set())
    return [d for d in datasets if d.namespace == kbl.namespace and d.name in names]


def stored_bytes(dataset: DataSet) -> float:
    """Bytes the agents hold for a DataSet: its size times ``width / needed`` (replicas, or
    k + m erasure pieces of size / k)."""
    red = dataset.spec.redundancy
    return dataset.spec.total_bytes * red.width / red.needed


def hydrate_seconds(bytes_: float, nodes: int, bps_per_node: float) -> float:
    """Time for ``nodes`` agents to hydrate ``bytes_`` in parallel at ``bps_per_node`` each."""
    if bytes_ <= 0:
        return 0.0
    if nodes <= 0 or bps_per_node <= 0:
        return math.inf
    return bytes_ / (bps_per_node * nodes)


def stage_lead(kbl: KBL, stage: Stage, nodes: int, group: str, ctx: PlanContext) -> tuple[float, float, float]:
    """``(lead, ready_s, hydrate_s)`` of a stage of ``nodes`` nodes in ``group`` (see the module
    docstring); throughput and node-ready time are the group's measured ones, else the settings'."""
    state, settings = ctx.state, ctx.settings
    ready_s = state.node_ready_s.get(group, settings.default_node_ready_s)
    bps = state.hydration_bps.get(group, settings.default_hydration_bps)
    data = sum(stored_bytes(d) for d in stage_datasets(kbl, stage, state.datasets))
    hydrate_s = hydrate_seconds(data, nodes, bps)
    return ready_s * settings.prewarm_factor + settings.prewarm_margin_s + hydrate_s, ready_s, hydrate_s


def plan_blueprint(kbl: KBL, plan: GroupPlan, ctx: PlanContext) -> None:
    """Raise ``plan.blueprint`` to the nodes of every stage that runs or starts within its lead."""
    state = ctx.state
    start = blueprint_start(kbl)
    if start is None:
        start = state.now_s
        ctx.actions.append(RecordBlueprintStart(kbl.key, start))
    names = {s.name: s for s in kbl.stages}
    for stage in kbl.stages:
        if stage.after is not None and not names.get(stage.after.stage, Stage("")).job:
            ctx.notes.append(Note(kbl.key, f"stage {stage.name} starts after stage {stage.after.stage!r}, which names no Job"))
    for stage, begin, end in stage_windows(kbl, start, state.jobs, state.now_s):
        need = stage_nodes(stage, plan.shape)
        lead, ready_s, hydrate_s = stage_lead(kbl, stage, need, plan.name, ctx)
        if begin - lead <= state.now_s < end and need > plan.blueprint:
            plan.blueprint = need
            if state.now_s >= begin:
                when = "running"
            else:
                when = f"starts in {begin - state.now_s:.0f}s, nodes take {ready_s:.0f}s, data {hydrate_s:.0f}s"
            plan.reasons.append(f"stage {stage.name} ({when}) needs {need} nodes")
