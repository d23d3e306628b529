"""The optimum's side of the comparison: a min-cost-flow lower bound on the network cost of a trace.

**What is bounded.** Pod ``p`` arrives at ``a_p`` and runs for ``d_p``; a *schedule* puts every
pod on an eligible node (taints, node selector) from its arrival, ``I_p = [a_p, a_p + d_p)``,
so that at every instant each node holds no more pods than fit. Its network cost is
``C(x) = sum_p c(p, x_p)`` with ``c(p, n) = sum over levels L of bytes_L(p, n) * cost_L``, the
bytes pod ``p`` reads at each locality level when it runs on ``n``
(:meth:`topology.clusters.Cluster.level_bytes`) priced by :class:`~topology.localities.LocalityCosts`.
Every policy that starts pods on arrival produces such a schedule.

**The relaxation.** Pick sample instants ``t_1 .. t_m``; ``A_j`` is the set of pods running at
``t_j`` and ``m_p`` the number of instants inside ``I_p``. Node ``n`` holds at most
``k_n = min over resources of floor(allocatable_n / smallest request)`` pods at once. For each
instant solve the transportation problem

    LB_j = min over y: A_j -> nodes, |y^-1(n)| <= k_n, y_p eligible  of  sum_{p in A_j} c(p, y_p) / m_p

as a min-cost flow (networkx ``network_simplex``), and charge every pod that covers no instant its
cheapest eligible node. Then ``LB = sum_j LB_j + sum_{m_p = 0} min_n c(p, n)``.

**Why it is a lower bound.** For any schedule ``x``, ``C(x) = sum_j sum_{p in A_j} c(p, x_p) / m_p
+ sum_{m_p = 0} c(p, x_p)`` (each covered pod's cost is split evenly over its instants). The
restriction of ``x`` to ``A_j`` respects the capacity at ``t_j``, so it is feasible for instant
``j``'s problem and its share is ``>= LB_j``; an uncovered pod costs at least its cheapest node.
Summing gives ``C(x) >= LB``. Costs are rounded *down* to integer units of ``unit_b`` byte-costs
for the flow solver, which only lowers the bound. The bound lets a pod move between nodes from
one instant to the next and ignores which other pods already run where; it is therefore not
always reachable, but nothing can beat it.

**The tighter bound: one assignment for the whole run** (:func:`interval_bound`, the one the
benchmark reports). The per-instant relaxation lets a pod sit on different nodes at different
instants. Keep one variable per pod and node instead, ``x_pn >= 0`` with ``sum_n x_pn = 1``, and
the capacity at every arrival time ``t`` (where the number of running pods can peak):
``sum_{p running at t} x_pn <= k_n``. Every schedule is a 0/1 point of this LP, so its optimum
is a lower bound, and it is at least the per-instant bound (restricting a feasible ``x`` to an
instant is feasible for that instant's transportation problem). It is solved with HiGHS
(scipy) in its network-like form (per node, a chain of free slots between consecutive arrival
times that each pod leaves at its start and rejoins at its end: ``O(pods x nodes)`` nonzeros
instead of one row per instant).

*Exactness despite floating point.* The reported figure is not the solver's objective but a
dual bound recomputed exactly from it. For any ``w_{n,t} >= 0`` (one per node and arrival time)
let ``W_pn = sum over arrival times t while p runs of w_{n,t}`` and ``u_p = min_n (c(p,n) + W_pn)``.
For any schedule ``x``: ``C(x) = sum_p c(p, x_p) >= sum_p (u_p - W_{p,x_p}) = sum_p u_p -
sum_{n,t} w_{n,t} load_{n,t}(x) >= sum_p u_p - sum_{n,t} k_n w_{n,t}`` (``load <= k_n`` and
``w >= 0``): a lower bound whatever ``w`` is (weak duality). ``w`` is read from the LP's dual
solution (``w_{n,t}`` is the price of node ``n``'s last slot at ``t``, the increase of the chain
duals), clipped at 0, so an inexact solver can only make the bound weaker, never invalid; a
relative 1e-9 is taken off for the float sums.

**Graph.** Per instant: pod vertices (supply 1) -> node vertices (capacity ``k_n`` to the sink).
A pod links directly to the nodes that are cheaper for it than the dearest node of their rack, and
to one aggregate vertex per (rack, eligibility class) at that dearest cost, which links to every
node of the rack. Every pod-node path then costs at least ``c(p, n)`` and the cheapest costs
exactly ``c(p, n)``, so the optimum equals the full bipartite problem's with far fewer edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import numpy.typing as npt

from benchmarks.driving import PodArrival
from topology.clusters import Cluster
from topology.errors import KblError
from topology.localities import LEVELS, LocalityCosts
from topology.nodes import Node
from topology.pods import Pod

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Bound:
    """The lower bound and how it was computed.

    ``level_bytes`` are the bytes read per locality level by the relaxed optimum (each pod's
    share per instant on the node the flow chose), for the report; only ``cost`` is a bound.
    """

    cost: float
    level_bytes: list[float]
    instants: int
    covered_pods: int
    uncovered_pods: int
    uncapacitated_cost: float


def eligible(pod: Pod, node: Node) -> bool:
    """Static eligibility: the node is schedulable, its taints are tolerated, the selector matches."""
    if node.unschedulable or not pod.tolerates(node.taints):
        return False
    return all(node.labels.get(k) == v for k, v in pod.node_selector.items())


def pod_bytes(cluster: Cluster, arrival: PodArrival, nodes: Sequence[Node]) -> FloatArray:
    """Bytes the pod reads per locality level on each node of ``nodes``, shape ``(nodes, 5)``."""
    data = arrival.pod.data
    if data is None:
        return np.zeros((len(nodes), len(LEVELS)), dtype=np.float64)
    key = f"{data.namespace}/{data.dataset}"
    shards = data.shard_indexes(cluster.datasets[key].spec.shards)
    return np.asarray(cluster.level_bytes(key, shards).table[cluster.node_ids([n.name for n in nodes])], dtype=np.float64)


def pod_costs(cluster: Cluster, arrival: PodArrival, nodes: Sequence[Node], costs: LocalityCosts) -> FloatArray:
    """``c(p, n)`` for every node of ``nodes`` (``inf`` where the pod is not eligible)."""
    out = pod_bytes(cluster, arrival, nodes) @ np.asarray(costs.as_tuple(), dtype=np.float64)
    for i, node in enumerate(nodes):
        if not eligible(arrival.pod, node):
            out[i] = np.inf
    return np.asarray(out, dtype=np.float64)


def node_capacity(nodes: Sequence[Node], pods: Sequence[Pod]) -> list[int]:
    """``k_n``: the most pods of this trace node ``n`` can hold at once (smallest request per resource)."""
    if not pods:
        return [0] * len(nodes)
    smallest = {
        "cpu": min(p.requests.cpu_m for p in pods),
        "memory": min(p.requests.memory_b for p in pods),
        "pods": min(p.requests.pods for p in pods),
    }
    out = []
    for node in nodes:
        limits = [node.allocatable.get(name) // amount for name, amount in smallest.items() if amount > 0]
        out.append(max(0, min(limits)) if limits else len(pods))
    return out


def sample_instants(arrivals: Sequence[PodArrival], spacing_s: float | None = None) -> list[float]:
    """Evenly spaced instants over the trace; the spacing defaults to half the shortest run time,
    so every pod covers at least one instant."""
    if not arrivals:
        return []
    start = min(a.arrival_s for a in arrivals)
    end = max(a.arrival_s + a.duration_s for a in arrivals)
    step = spacing_s or max(1e-3, min(a.duration_s for a in arrivals) / 2)
    count = int((end - start) / step) + 1
    return [start + step * (i + 0.5) for i in range(count) if start + step * (i + 0.5) < end]


def lower_bound(
    cluster: Cluster,
    nodes: Sequence[Node],
    arrivals: Sequence[PodArrival],
    costs: LocalityCosts | None = None,
    *,
    instants: Sequence[float] | None = None,
    unit_b: float = 2.0**20,
) -> Bound:
    """The min-cost-flow lower bound on the trace's network cost (see the module docstring).

    Parameters
    ----------
    cluster:
        The cluster model with the trace's datasets placed.
    nodes:
        The nodes pods may run on.
    arrivals:
        The trace's pods with arrival and run times.
    costs:
        Price of one byte read per locality level.
    instants:
        Sample instants (default :func:`sample_instants`).
    unit_b:
        Integer unit of the flow costs, in byte-costs (rounded down).

    Returns
    -------
    Bound
        ``cost`` in the same unit as :func:`pod_costs` (byte-costs).
    """
    costs = costs or LocalityCosts()
    times = list(instants) if instants is not None else sample_instants(arrivals)
    price = np.asarray(costs.as_tuple(), dtype=np.float64)
    byte_rows = [pod_bytes(cluster, a, nodes) for a in arrivals]
    cost_rows = []
    for a, rows in zip(arrivals, byte_rows, strict=True):
        row = rows @ price
        row[[i for i, n in enumerate(nodes) if not eligible(a.pod, n)]] = np.inf
        cost_rows.append(row)
    caps = node_capacity(nodes, [a.pod for a in arrivals])
    rack_of = [n.rack for n in nodes]
    racks: dict[str, list[int]] = {}
    for i, rack in enumerate(rack_of):
        racks.setdefault(rack, []).append(i)
    cover: list[list[int]] = [[] for _ in times]
    m = [0] * len(arrivals)
    for p, a in enumerate(arrivals):
        for j, t in enumerate(times):
            if a.arrival_s <= t < a.arrival_s + a.duration_s:
                cover[j].append(p)
                m[p] += 1
    uncapacitated = float(sum(float(np.min(row)) for row in cost_rows))
    total = 0.0
    level_bytes = np.zeros(len(LEVELS), dtype=np.float64)
    for p in range(len(arrivals)):
        if m[p] == 0:
            best = int(np.argmin(cost_rows[p]))
            total += float(cost_rows[p][best])
            level_bytes += byte_rows[p][best]
    for active in cover:
        if active:
            cost, shares = _instant_bound(active, cost_rows=cost_rows, byte_rows=byte_rows, m=m, caps=caps, racks=racks, unit_b=unit_b)
            total += cost
            level_bytes += shares
    return Bound(total, level_bytes.tolist(), len(times), sum(1 for k in m if k), sum(1 for k in m if not k), uncapacitated)


def _instant_bound(
    active: list[int],
    *,
    cost_rows: list[FloatArray],
    byte_rows: list[FloatArray],
    m: list[int],
    caps: list[int],
    racks: dict[str, list[int]],
    unit_b: float,
) -> tuple[float, FloatArray]:
    """``LB_j`` for one instant, by min-cost flow on the aggregated graph, and the bytes per
    level of the flow's assignment (a pod routed through a rack aggregate counts the bytes of the
    rack's dearest node, which is what it pays)."""
    graph: nx.DiGraph[object] = nx.DiGraph()
    graph.add_node("sink", demand=len(active))
    used_nodes: set[int] = set()
    representative: dict[tuple[int, str], int] = {}
    for p in active:
        row = cost_rows[p]
        graph.add_node(("pod", p), demand=-1)
        elig_key = tuple(np.flatnonzero(np.isinf(row)).tolist())
        for rack, members in racks.items():
            finite = [i for i in members if np.isfinite(row[i])]
            if not finite:
                continue
            dear = max(finite, key=lambda i: float(row[i]))
            dearest = float(row[dear])
            representative[(p, rack)] = dear
            agg = ("rack", rack, elig_key)
            if agg not in graph:
                graph.add_node(agg, demand=0)
                for i in finite:
                    graph.add_edge(agg, ("node", i), weight=0)
                    used_nodes.add(i)
            graph.add_edge(("pod", p), agg, weight=int(dearest / m[p] / unit_b))
            for i in finite:
                if row[i] < dearest:
                    graph.add_edge(("pod", p), ("node", i), weight=int(float(row[i]) / m[p] / unit_b))
                    used_nodes.add(i)
    for i in used_nodes:
        graph.add_edge(("node", i), "sink", weight=0, capacity=caps[i])
    shares = np.zeros(len(LEVELS), dtype=np.float64)
    try:
        flow_cost, flow = nx.network_simplex(graph)
    except nx.NetworkXUnfeasible:
        # More pods run at this instant than the relaxation can hold: no schedule starts them
        # all on arrival; the instant contributes its uncapacitated minimum (still a bound).
        for p in active:
            shares += byte_rows[p][int(np.argmin(cost_rows[p]))] / m[p]
        return float(sum(float(np.min(cost_rows[p])) / m[p] for p in active)), shares
    for p in active:
        for target, amount in flow[("pod", p)].items():
            if amount:
                i = target[1] if target[0] == "node" else representative[(p, target[1])]
                shares += byte_rows[p][i] * amount / m[p]
    return float(flow_cost) * unit_b, shares


@dataclass(frozen=True, slots=True)
class IntervalBound:
    """The whole-run LP bound: ``cost`` (valid, from the dual), the LP's own optimum, how many pods
    the LP split between nodes, and ``level_bytes`` of the LP's assignment (fractions weighted),
    for the report. With no split pod the LP's solution is itself a schedule that starts every
    pod on arrival within capacity (the load only rises at arrival times, all checked), so
    ``lp_cost`` is then the exact optimum and ``cost`` equals it up to the solver's tolerance."""

    cost: float
    lp_cost: float
    fractional_pods: int
    checkpoints: int
    level_bytes: list[float]
    uncapacitated_cost: float
    #: Per node (in ``nodes``' order), the LP's price of one pod slot held for a pod's mean run
    #: time: the capacity duals ``w[n, i]`` summed over the run, divided by the run's length
    #: (first arrival to last plus a mean run) and multiplied by the mean run time. It knows the
    #: whole trace (every later pod), so no online policy has it; :func:`benchmarks.oracles.burst_plan_cost`
    #: with these prices shows how far such knowledge would take per-burst planning.
    slot_prices: tuple[float, ...] = ()


def interval_bound(
    cluster: Cluster,
    nodes: Sequence[Node],
    arrivals: Sequence[PodArrival],
    costs: LocalityCosts | None = None,
) -> IntervalBound:
    """The whole-run LP lower bound (module docstring, "The tighter bound").

    Parameters
    ----------
    cluster, nodes, arrivals, costs:
        As for :func:`lower_bound`.

    Returns
    -------
    IntervalBound
        ``cost`` in byte-costs.

    Raises
    ------
    KblError
        If the LP solver fails (it cannot be infeasible while some pod fits somewhere: a pod
        may always be split, so only a pod that fits nowhere or an overloaded instant can).
    """
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    costs = costs or LocalityCosts()
    pods, count = len(arrivals), len(nodes)
    price = np.asarray(costs.as_tuple(), dtype=np.float64)
    byte_rows = np.array([pod_bytes(cluster, a, nodes) for a in arrivals]).reshape(pods, count, len(LEVELS))
    cost = byte_rows @ price
    for p, a in enumerate(arrivals):
        for n, node in enumerate(nodes):
            if not eligible(a.pod, node):
                cost[p, n] = np.inf
    caps = np.asarray(node_capacity(nodes, [a.pod for a in arrivals]), dtype=np.float64)
    uncapacitated = float(np.min(cost, axis=1).sum()) if pods else 0.0
    if pods == 0:
        return IntervalBound(0.0, 0.0, 0, 0, [0.0] * len(LEVELS), 0.0)
    start = np.array([a.arrival_s for a in arrivals])
    end = start + np.array([a.duration_s for a in arrivals])
    checkpoints = np.unique(start)
    first = np.searchsorted(checkpoints, start)  # the pod counts from this checkpoint on
    after = np.searchsorted(checkpoints, end, side="left")  # ... up to this one, excluded
    steps = len(checkpoints)
    finite = np.isfinite(cost)
    scale = float(np.max(cost[finite])) if finite.any() else 1.0
    scale = scale if scale > 0 else 1.0
    # Variables: x[p, n] (pods * count) then z[n, i] (count * steps), free slots of n after checkpoint i.
    nx_vars = pods * count
    pp, nn = np.nonzero(np.ones((pods, count), dtype=bool))
    xcol = pp * count + nn
    rows = [pp, pods + nn * steps + first[pp]]
    cols = [xcol, xcol]
    vals = [np.ones(nx_vars), np.ones(nx_vars)]
    ends = after[pp] < steps
    rows.append(pods + nn[ends] * steps + after[pp][ends])
    cols.append(xcol[ends])
    vals.append(-np.ones(int(ends.sum())))
    zn, zi = np.nonzero(np.ones((count, steps), dtype=bool))
    zcol = nx_vars + zn * steps + zi
    rows.append(pods + zn * steps + zi)
    cols.append(zcol)
    vals.append(np.ones(zcol.size))
    later = zi > 0
    rows.append(pods + zn[later] * steps + zi[later])
    cols.append(zcol[later] - 1)
    vals.append(-np.ones(int(later.sum())))
    shape = (pods + count * steps, nx_vars + count * steps)
    matrix = csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)
    rhs = np.concatenate([np.ones(pods), np.where(zi == 0, caps[zn], 0.0)])
    objective = np.concatenate([np.where(finite, cost, 0.0).ravel() / scale, np.zeros(count * steps)])
    upper = np.concatenate([np.where(finite, 1.0, 0.0).ravel(), caps[zn]])
    result = linprog(objective, A_eq=matrix, b_eq=rhs, bounds=np.column_stack([np.zeros_like(upper), upper]), method="highs")
    if result.status != 0:
        raise KblError(f"interval bound: the LP solver did not reach an optimum: {result.message}")
    # Dual bound (docstring): w[n, i] = price of n's last slot at checkpoint i = rise of the chain duals.
    chain = np.asarray(result.eqlin.marginals[pods:], dtype=np.float64).reshape(count, steps) * scale
    nxt = np.concatenate([chain[:, 1:], np.zeros((count, 1))], axis=1)
    w = np.maximum(0.0, nxt - chain)  # HiGHS marginals are d(objective)/d(rhs): a slot from i on is worth -chain[i]
    prefix = np.concatenate([np.zeros((count, 1)), np.cumsum(w, axis=1)], axis=1)  # prefix[n, i] = sum w[n, :i]
    held = prefix[:, np.minimum(after, steps)].T - prefix[:, first].T  # W[p, n]
    u = np.min(cost + held, axis=1)
    bound = float(u.sum() - (caps[:, None] * w).sum())
    bound -= 1e-9 * abs(bound)
    x = np.asarray(result.x[:nx_vars], dtype=np.float64).reshape(pods, count)
    fractional = int(((x > 1e-6) & (x < 1 - 1e-6)).any(axis=1).sum())
    level_bytes = np.einsum("pn,pnl->l", x, byte_rows)
    mean_run = float(np.mean(end - start))
    span = float(checkpoints[-1] - checkpoints[0]) + mean_run
    slot_prices = tuple((w.sum(axis=1) / span * mean_run).tolist()) if span > 0 else ()
    return IntervalBound(bound, float(result.fun) * scale, fractional, steps, level_bytes.tolist(), uncapacitated, slot_prices)
