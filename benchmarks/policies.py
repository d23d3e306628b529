"""The policies the locality benchmark compares on one trace, and what each run measures.

* ``default``: kube-scheduler's defaults, data-oblivious (no extender).
* ``stork-like``: :mod:`benchmarks.storklike`'s tier extender (node 100 / rack 50 / zone 25 /
  region 10, summed per shard, scaled and clamped into 0..10), served over HTTP.
* ``kbl``: the real extender app (:func:`extender.app.create_app` over
  :class:`extender.state.ClusterState` built from the trace's snapshot), served over HTTP, with
  ``bindVerb`` so its cache sees every assignment; pod events reach it through
  ``ClusterState.apply`` exactly as its watch would deliver them.
* ``oracle``: :mod:`benchmarks.oracles`' greedy extender with exact costs, the best any online
  per-pod extender can do (it explains the gap between kbl and the bound).
* ``optimum``: not a scheduler but :func:`benchmarks.bounds.lower_bound`, the min-cost-flow lower
  bound on the same pods and capacities.

Every scheduler policy runs the same :class:`~benchmarks.driving.Scheduler` with the same seed;
:func:`run_policy` returns a :class:`PolicyRun` with the bytes read per locality level, the
network cost, the extender latency per pod and the pods left pending.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import orjson

from benchmarks.driving import ExtenderClient, ExtenderConfig, PodEventHook, RunResult, Scheduler, SchedulerSettings
from benchmarks.measuring import percentile
from benchmarks.oracles import create_oracle_app
from benchmarks.serving import LocalServer
from benchmarks.storklike import create_storklike_app
from benchmarks.traces import Trace
from topology.examples import as_list
from topology.localities import LEVELS, LocalityCosts

POLICIES = ("default", "stork-like", "kbl", "oracle")
#: The oracle's extender weight: 10 x 100 x 10 = 10,000 points, far above the plugins' 200.
ORACLE_WEIGHT = 100


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """How the extender policies are configured (the KubeSchedulerConfiguration side).

    ``weight`` is the extenders' ``weight``; ``node_cache_capable`` picks the request form;
    ``hotspot_threshold`` and ``batch_limit`` are passed to kbl's
    :class:`~extender.settings.ExtenderSettings` (``None`` keeps its default).
    """

    weight: int = 1
    node_cache_capable: bool = True
    hotspot_threshold: float | None = None
    batch_limit: int | None = None
    slot_prices: bool | None = None
    costs: LocalityCosts = field(default_factory=LocalityCosts)


@dataclass(slots=True)
class PolicyRun:
    """What one policy did with the trace."""

    name: str
    level_bytes: list[float]
    cost: float
    scheduled: int
    pending: int
    delayed: int
    attempts: int
    extender_calls: int
    extender_ms_per_pod: float
    extender_ms_p99: float
    wall_s: float
    #: Seconds inside the scheduling loop only (``wall_s`` also counts starting the extender).
    schedule_s: float = 0.0
    #: CPU seconds of this process in the loop: the driver and the in-process extender's thread
    #: (steadier than wall time on a shared machine).
    schedule_cpu_s: float = 0.0
    extender_errors: int = 0
    prioritize_errors: int = 0
    #: CPU seconds of the extender's work: its server thread (this process's CPU time in the
    #: loop minus the driver thread's), plus the admission webhook and controllers the driver
    #: called in its own thread (measured there).
    extender_cpu_s: float = 0.0
    #: Node names offered to the extender per pod with a data wish, summed over its attempts.
    offered_per_data_pod: float = 0.0
    data_pods: int = 0
    deleted: int = 0
    gated: int = 0
    routed: dict[str, int] = field(default_factory=dict)
    placements: dict[str, str] = field(default_factory=dict, repr=False)
    #: The driver's own record (start times, replacements), for tests.
    result: RunResult | None = field(default=None, repr=False)

    @property
    def cross_zone_bytes(self) -> float:
        """Bytes read from another zone (the region and remote levels)."""
        return float(self.level_bytes[3] + self.level_bytes[4])

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__ if k not in ("placements", "result")}
        out["level_bytes"] = dict(zip([lv.label for lv in LEVELS], self.level_bytes, strict=True))
        out["cross_zone_bytes"] = self.cross_zone_bytes
        return out


def measure(trace: Trace, result: RunResult, costs: LocalityCosts) -> tuple[list[float], float]:
    """Bytes read per locality level and network cost of a run's placements."""
    totals = np.zeros(len(LEVELS), dtype=np.float64)
    arrivals = {a.pod.key: a for a in trace.arrivals}
    price = np.asarray(costs.as_tuple(), dtype=np.float64)
    for key, outcome in result.outcomes.items():
        data = arrivals[outcome.origin or key].pod.data
        if outcome.node is None or data is None:
            continue
        dkey = f"{data.namespace}/{data.dataset}"
        shards = data.shard_indexes(trace.cluster.datasets[dkey].spec.shards)
        nid = trace.cluster.node_id(outcome.node)
        assert nid is not None
        totals += trace.cluster.level_bytes(dkey, shards).table[nid]
    return totals.tolist(), float(totals @ price)


@contextmanager
def _extenders(name: str, trace: Trace, settings: PolicySettings) -> Iterator[tuple[list[ExtenderClient], PodEventHook | None]]:
    encoded = {o["metadata"]["name"]: orjson.dumps(o) for o in trace.node_objects}
    if name == "default":
        yield [], None
        return
    if name in ("stork-like", "oracle"):
        app = create_storklike_app(trace.cluster) if name == "stork-like" else create_oracle_app(trace.cluster, settings.costs)
        weight = settings.weight if name == "stork-like" else ORACLE_WEIGHT
        with LocalServer(app) as server:
            client = ExtenderClient(ExtenderConfig(server.url, weight=weight, node_cache_capable=settings.node_cache_capable), encoded)
            try:
                yield [client], None
            finally:
                client.close()
        return
    if name == "kbl":
        from extender.app import create_app
        from extender.settings import ExtenderSettings
        from extender.state import ClusterState
        from kube.api import PODS, WatchEvent
        from topology.snapshots import load_snapshot

        snapshot = load_snapshot(as_list([*trace.node_objects, *trace.dataset_objects()]))
        ext_settings = ExtenderSettings(costs=settings.costs)
        if settings.hotspot_threshold is not None:
            ext_settings = replace(ext_settings, hotspot_threshold=settings.hotspot_threshold)
        if settings.batch_limit is not None:
            ext_settings = replace(ext_settings, batch_limit=settings.batch_limit)
        if settings.slot_prices is not None:
            ext_settings = replace(ext_settings, slot_prices=settings.slot_prices)
        state = ClusterState.from_snapshot(snapshot, ext_settings)

        def feed(kind: str, obj: dict[str, Any]) -> None:
            state.apply(WatchEvent(kind, obj), PODS)  # type: ignore[arg-type]

        feed.state = state  # type: ignore[attr-defined]  # for run_policy's setup hook

        with LocalServer(create_app(state, ext_settings)) as server:
            config = ExtenderConfig(server.url, bind_verb="bind", weight=settings.weight, node_cache_capable=settings.node_cache_capable)
            client = ExtenderClient(config, encoded)
            try:
                yield [client], feed
            finally:
                client.close()
        return
    raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")


def run_policy(
    name: str,
    trace: Trace,
    settings: PolicySettings | None = None,
    scheduler_settings: SchedulerSettings | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    setup: Callable[[Scheduler, Any], None] | None = None,
) -> PolicyRun:
    """Drive the trace through kube-scheduler with policy ``name`` and measure it.

    ``setup(scheduler, state)`` runs before the trace, with kbl's extender state (``None`` for
    other policies): where a harness installs the API server's side (webhook, controllers).

    Raises
    ------
    ValueError
        For an unknown policy name.
    """
    settings = settings or PolicySettings()
    horizon = max((a.arrival_s + a.duration_s for a in trace.arrivals), default=0.0) + 3600.0
    sched_settings = scheduler_settings or SchedulerSettings(horizon_s=horizon)
    started = time.perf_counter()
    with _extenders(name, trace, settings) as (clients, hook):
        scheduler = Scheduler(trace.nodes, clients, sched_settings, on_pod_event=hook)
        if setup is not None:
            setup(scheduler, getattr(hook, "state", None))
        loop_started, loop_cpu, loop_thread = time.perf_counter(), time.process_time(), time.thread_time()
        result = scheduler.run(trace.arrivals, progress=progress)
        schedule_s, schedule_cpu_s = time.perf_counter() - loop_started, time.process_time() - loop_cpu
        driver_cpu_s = time.thread_time() - loop_thread
        calls = sum(c.calls for c in clients)
    wall = time.perf_counter() - started
    level_bytes, cost = measure(trace, result, settings.costs)
    per_pod_ms = [o.extender_s * 1000 for o in result.outcomes.values() if o.node is not None]
    arrivals = {a.pod.key: a for a in trace.arrivals}
    data_outcomes = [o for k, o in result.outcomes.items() if arrivals[o.origin or k].pod.data is not None]
    data_pods = len({o.origin or o.key for o in data_outcomes})
    extender_cpu_s = max(0.0, schedule_cpu_s - driver_cpu_s) + result.admission_cpu_s + result.controller_cpu_s
    return PolicyRun(
        name=name,
        level_bytes=level_bytes,
        cost=cost,
        scheduled=result.scheduled,
        pending=len(result.pending),
        delayed=result.delayed,
        attempts=result.attempts,
        extender_calls=calls,
        extender_ms_per_pod=float(np.mean(per_pod_ms)) if per_pod_ms and calls else 0.0,
        extender_ms_p99=percentile(per_pod_ms, 99) if per_pod_ms and calls else 0.0,
        wall_s=wall,
        schedule_s=schedule_s,
        schedule_cpu_s=schedule_cpu_s,
        extender_errors=result.extender_errors,
        prioritize_errors=result.prioritize_errors,
        extender_cpu_s=extender_cpu_s,
        offered_per_data_pod=sum(o.offered for o in data_outcomes) / max(1, data_pods),
        data_pods=data_pods,
        deleted=result.deleted,
        gated=result.gated,
        routed=dict(result.routed),
        placements={k: o.node for k, o in result.outcomes.items() if o.node is not None},
        result=result,
    )
