"""Pending-batch pricing: what taking a slot on a node costs the *other* pods waiting to be scheduled.

kube-scheduler asks about one pod at a time. Scoring each pod by its own cost alone is greedy:
a pod whose best node is only slightly better than its second best can take the last slot of a
node that another pending pod needs far more (it holds that pod's data; its alternative reads
across the zone), and the loss cascades. When the cache knows other pending pods (pods the watch
reported without ``spec.nodeName``, e.g. the rest of a Job's burst), the extender prices that:

    eff'(n) = eff(n) + delta(n)
    delta(n) = OPT(B, s - e_n) - OPT(B, s)

where ``B`` are the other pending pods, ``s`` the free pod slots per node, ``OPT(B, s)`` the
cheapest assignment of ``B`` onto ``s`` (each pod on one node, at most ``s_n`` pods on node
``n``, a pod's cost on a node its network cost there), and ``s - e_n`` the same slots with one
taken on ``n``. ``delta(n) = 0`` when ``n`` keeps a slot nobody in ``B`` needs. The current pod's
best node under ``eff'`` is its node in the cheapest joint assignment of ``B`` plus itself (the
regret of a greedy choice is charged up front), so the batch is placed as a min-cost assignment
even though kube-scheduler decides pod by pod, provided kube-scheduler follows the scores:
:mod:`extender.joint` gives that node a lead its plugins cannot undo, and plans a whole batch at
once (:func:`~extender.joint.plan_jointly`) for callers that want every pod's node.

Computation (:func:`displacement_costs`, pure): the min-cost assignment of ``B`` by successive
shortest augmenting chains (min-cost flow, one pod at a time), then ``delta`` for every node at
once as shortest rerouting chains in the residual graph (Bellman-Ford): freeing a slot on a full node ``n`` moves one pod
``q`` from ``n`` to another option ``o`` at ``c(q, o) - c(q, n)``, and so on until a node with a
free slot. At an optimal assignment there is no negative cycle, every chain costs ``>= 0``, and
the cheapest chain is exactly ``delta(n)`` (min-cost flow sensitivity to one unit of capacity).
Each pod of ``B`` only needs its ``|B| + 1`` cheapest nodes with a free slot: the other pods fill
at most ``|B| - 1`` slots and one more may be taken first, so one of those nodes is always free
for it; its next cheapest node stands for "elsewhere" (uncapacitated). The problem therefore has
at most ``|B| (|B| + 2)`` arcs whatever the cluster size; the caller bounds ``|B|``
(``ExtenderSettings.batch_limit``) and caches the result per state version.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def displacement_costs(costs: FloatArray, slots: IntArray) -> FloatArray:
    """``delta(n)`` for every node (module docstring): what one slot of ``n`` costs the batch.

    Parameters
    ----------
    costs:
        Shape ``(pods, nodes)``: each other pending pod's network cost on each node; ``inf``
        where it cannot run.
    slots:
        Shape ``(nodes,)``: free pod slots per node (``<= 0``: none).

    Returns
    -------
    FloatArray
        Shape ``(nodes,)``, ``>= 0`` (up to rounding), in the unit of ``costs``; 0 for nodes the
        batch leaves a free slot on and for nodes without free slots.

    Examples
    --------
    >>> # node 0 holds pod q's data (q pays 100 elsewhere); node 1 is free for everyone
    >>> displacement_costs(np.array([[0.0, 100.0]]), np.array([1, 1])).tolist()
    [100.0, 0.0]
    """
    pods, nodes = costs.shape
    delta = np.zeros(nodes, dtype=np.float64)
    if pods == 0 or nodes == 0:
        return delta
    open_cost = np.where(slots[None, :] > 0, costs, np.inf)
    options, _ = pod_options(open_cost, min(pods + 1, nodes))
    if not options:
        return delta
    chains = Chains(options, slots)
    for q in range(len(options)):
        chains.insert(q)
    for n, value in chains.distances().items():
        delta[n] = max(0.0, value[0])
    return delta


def pod_options(open_cost: FloatArray, k: int) -> tuple[list[tuple[IntArray, FloatArray, float]], list[int]]:
    """Each pod's ``k`` cheapest open nodes (cheapest first, ids, costs) and its "elsewhere" cost.

    ``open_cost`` is ``(pods, nodes)`` with ``inf`` where a pod cannot run or the node has no free
    slot. "Elsewhere" is the pod's next cheapest open node (uncapacitated stand-in for the rest),
    or its dearest option when there is none. Pods that fit nowhere are left out; the second list
    gives the row of each kept pod.
    """
    nodes = open_cost.shape[1]
    options: list[tuple[IntArray, FloatArray, float]] = []
    kept: list[int] = []
    for q in range(open_cost.shape[0]):
        row = open_cost[q]
        if not np.isfinite(row).any():
            continue  # fits nowhere now: it does not compete for these slots
        order = np.argpartition(row, k - 1)[:k] if k < nodes else np.arange(nodes)
        order = order[np.isfinite(row[order])]
        order = order[np.argsort(row[order], kind="stable")]
        rest = np.delete(row, order)
        finite_rest = rest[np.isfinite(rest)]
        elsewhere = float(finite_rest.min()) if finite_rest.size else float(row[order].max())
        options.append((order.astype(np.int64), row[order], elsewhere))
        kept.append(q)
    return options, kept


class Chains:
    """A min-cost assignment grown one pod at a time by cheapest augmenting chains.

    Successive shortest paths: with the pods placed so far assigned at least cost, the cheapest
    way to add pod ``q`` is its option ``o`` minimising ``c(q, o) + d(o)``, where ``d(o)`` is the
    cheapest chain of moves that frees a slot on ``o`` (0 if ``o`` has one; "elsewhere" always
    has one); applying that chain keeps the assignment optimal. ``d`` over the full nodes is a
    Bellman-Ford over "move one pod off node ``n`` to its option ``o``" arcs.
    """

    def __init__(self, options: list[tuple[IntArray, FloatArray, float]], slots: IntArray) -> None:
        self.choices = [list(zip(ids.tolist(), values.tolist(), strict=True)) for ids, values, _ in options]
        self.cost = [dict(choice) for choice in self.choices]
        self.elsewhere = [e for _, _, e in options]
        self.slots = slots
        self.where: list[int | None] = [None] * len(options)  # node, -1 = elsewhere, None = not placed yet
        self.members: dict[int, list[int]] = {}
        finite = [abs(v) for choice in self.choices for _, v in choice] + [abs(e) for e in self.elsewhere]
        self.eps = 1e-9 * max([1.0, *finite])  # float noise, relative to the largest cost

    def distances(self) -> dict[int, tuple[float, int, int]]:
        """``{full node: (d, pod to move, where to)}`` by Bellman-Ford (no negative cycles at an optimum)."""
        full = [n for n, members in self.members.items() if len(members) >= self.slots[n]]
        dist = dict.fromkeys(full, np.inf)
        via: dict[int, tuple[int, int]] = {}
        eps = self.eps
        for _ in range(len(full) + 1):
            changed = False
            for n in full:
                best = dist[n]
                for q in self.members[n]:
                    here = self.cost[q][n]
                    total = self.elsewhere[q] - here
                    if total < best - eps:
                        best = total
                        via[n] = (q, -1)
                    for o, v in self.choices[q]:
                        if o != n:
                            total = v - here + dist.get(o, 0.0)
                            if total < best - eps:
                                best = total
                                via[n] = (q, o)
                if best < dist[n]:
                    dist[n] = best
                    changed = True
            if not changed:
                break
        return {n: (dist[n], *via[n]) for n in full if n in via}

    def _move(self, q: int, node: int) -> None:
        old = self.where[q]
        if old is not None and old >= 0:
            self.members[old].remove(q)
        self.where[q] = node
        if node >= 0:
            self.members.setdefault(node, []).append(q)

    def insert(self, q: int) -> None:
        """Place pod ``q`` along its cheapest augmenting chain."""
        dist = self.distances()
        target, best = -1, self.elsewhere[q]
        for o, v in self.choices[q]:
            total = v + (dist[o][0] if o in dist else 0.0)
            if total < best:
                target, best = o, total
        self._move(q, target)
        node = target
        for _ in range(len(self.where)):  # a simple chain visits each node at most once
            if node < 0 or node not in dist:
                break
            _, mover, to = dist[node]
            self._move(mover, to)
            node = to
