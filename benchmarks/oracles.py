"""A greedy oracle extender: the best a per-pod, online extender could do with exact costs.

It knows each pod's exact network cost on every offered node (the same
:meth:`~topology.clusters.Cluster.level_bytes` accounting the benchmark measures with) and gives
the cheapest offered nodes 10 and the others 0; configured with a weight large enough to override
the built-in plugins (those only break ties among the cheapest). No extender that decides one pod
at a time, on arrival, without knowing the future can do better on every pod; the gap between this
oracle and the min-cost-flow bound is the price of deciding online, which no scoring knob closes.

:func:`burst_plan_cost` is the same idea for kbl's joint placement of bursts: every burst placed
by its cheapest joint plan with exact costs, offline, the best that planning each burst as a
whole (without knowing later bursts) reaches on a trace.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

from benchmarks.bounds import node_capacity, pod_costs
from benchmarks.driving import PodArrival
from benchmarks.storklike import pod_shards
from benchmarks.traces import Trace
from extender.batching import displacement_costs
from topology.clusters import Cluster
from topology.errors import KblError
from topology.localities import LocalityCosts

#: Relative tolerance under which two costs count as equal.
TIE_TOLERANCE = 1e-9


def create_oracle_app(cluster: Cluster, costs: LocalityCosts | None = None) -> FastAPI:
    """The oracle as a FastAPI app: ``/filter`` passes every node, ``/prioritize`` scores 10 / 0."""
    price = costs or LocalityCosts()
    app = FastAPI(title="greedy oracle extender")

    @app.post("/filter")
    async def filter_(request: Request) -> Response:
        args = orjson.loads(await request.body())
        reply = {"Nodes": args.get("Nodes"), "NodeNames": args.get("NodeNames"), "FailedNodes": {}, "FailedAndUnresolvableNodes": {}}
        return Response(orjson.dumps(reply), media_type="application/json")

    @app.post("/prioritize")
    async def prioritize(request: Request) -> Response:
        args = orjson.loads(await request.body())
        names = args.get("NodeNames")
        if names is None:
            names = [item["metadata"]["name"] for item in (args.get("Nodes") or {}).get("items") or []]
        try:
            wanted = pod_shards(cluster, args.get("Pod") or {})
        except KblError as exc:
            return Response(orjson.dumps({"error": str(exc)}), status_code=400, media_type="application/json")
        if wanted is None:
            return Response(orjson.dumps([{"Host": n, "Score": 0} for n in names]), media_type="application/json")
        cost = cluster.level_bytes(wanted[0], wanted[1]).cost(price)[cluster.node_ids(names)]
        best = float(np.min(cost)) if cost.size else 0.0
        limit = best + TIE_TOLERANCE * max(1.0, abs(best))
        scores = [{"Host": n, "Score": 10 if c <= limit else 0} for n, c in zip(names, cost.tolist(), strict=True)]
        return Response(orjson.dumps(scores), media_type="application/json")

    return app


def burst_plan_cost(trace: Trace, costs: LocalityCosts | None = None, *, seed: int = 0, slot_prices: Sequence[float] = ()) -> BurstPlanRun:
    """The ceiling of per-burst joint planning: every burst placed by its joint plan, exact costs.

    No scheduler and no HTTP: pods are taken in arrival order; each goes to the node minimising
    its cost plus what that node's slot costs the rest of its burst still to place
    (:func:`extender.joint.joint_prices`' rule, so each burst ends on a cheapest joint plan of what
    was free when it arrived), ties broken towards the node with the most free slots (as
    LeastAllocated does) and then at random (``seed``). Slots come back when a pod's run ends.
    It knows nothing of later bursts, like kbl; the gap to the optimum left here is what planning
    each burst jointly cannot close. A pod that finds no free slot is counted and not placed
    (the optimum's LP assumes none).

    ``slot_prices`` (per node of ``trace.nodes``, empty: none) are added to every pod's cost when
    choosing (not when counting): with :attr:`benchmarks.bounds.IntervalBound.slot_prices` of the
    same trace this is per-burst planning told what each slot is worth to the rest of the run.
    """
    price = costs or LocalityCosts()
    rng = random.Random(seed)
    rows = {a.pod.key: pod_costs(trace.cluster, a, trace.nodes, price) for a in trace.arrivals}
    extra = np.asarray(slot_prices, dtype=np.float64) if len(slot_prices) else np.zeros(len(trace.nodes))
    free = np.array(node_capacity(trace.nodes, [a.pod for a in trace.arrivals]), dtype=np.int64)
    bursts: dict[float, list[PodArrival]] = {}
    for a in sorted(trace.arrivals, key=lambda a: a.arrival_s):
        bursts.setdefault(a.arrival_s, []).append(a)
    running: list[tuple[float, int]] = []
    total, unplaced = 0.0, 0
    for when, burst in bursts.items():
        while running and running[0][0] <= when:
            free[heapq.heappop(running)[1]] += 1
        for i, arrival in enumerate(burst):
            row = rows[arrival.pod.key]
            rest = np.array([rows[b.pod.key] + extra for b in burst[i + 1 :]]).reshape(-1, row.shape[0])
            value = np.where(free > 0, row + extra, np.inf) + displacement_costs(rest, free)
            if not np.isfinite(value).any():
                unplaced += 1
                continue
            lo = float(value.min())
            best = np.flatnonzero(value <= lo + TIE_TOLERANCE * max(1.0, abs(lo)))
            best = best[free[best] == free[best].max()]
            node = int(best[rng.randrange(best.size)])
            total += float(row[node])
            free[node] -= 1
            heapq.heappush(running, (when + arrival.duration_s, node))
    return BurstPlanRun(total, unplaced)


@dataclass(frozen=True, slots=True)
class BurstPlanRun:
    """:func:`burst_plan_cost`'s result: the network cost of the placed pods, and the pods not placed."""

    cost: float
    unplaced: int
