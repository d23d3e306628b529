"""Joint placement of a burst: one min-cost assignment of every pending pod, and scores that follow it.

kube-scheduler places pods one at a time. When several data pods wait at once (a Job's
parallelism, a blueprint stage), placing each on its own cheapest free node is greedy: an early
pod may take the last slot of a node that a later pod of the same burst needs far more. The
cheapest *joint* placement is a min-cost assignment (each pod on one node, at most ``slots[n]``
pods on node ``n``), and :func:`plan_jointly` computes it (pure, numpy in and out).

The extender cannot place a burst itself; it can only score one pod's candidates. Two pieces make
kube-scheduler follow the joint plan pod by pod:

* **Which node is planned for the pod being scored.** With ``B`` the other pending pods,
  ``c(n) + delta(n)`` (:func:`extender.batching.displacement_costs`: what one slot of ``n`` costs
  ``B``) is the cost of the cheapest joint assignment in which the pod goes to ``n``, less a
  constant; its minimum is the pod's node in the cheapest joint plan (:func:`joint_prices`; the
  tests check it against :func:`plan_jointly` and brute force). Once the pod binds where it was
  planned, the rest of that plan is still a cheapest plan for the rest (an exchange argument:
  a cheaper one would make a cheaper whole), so the next pod's planned node is consistent with
  the first one's without remembering anything: recomputing per state version is enough.
* **Scores strong enough to be followed** (:func:`planned_scores`). kube-scheduler adds the
  extender's score times ``weight x 10`` to its own plugins (NodeResourcesFit's LeastAllocated
  and BalancedAllocation, 0..100 each), then picks the highest total at random among ties. The
  plain square-root normalisation (:func:`extender.scoring.normalize`) puts a node-local and a
  rack-local reader a level or two apart when the range runs up to an all-remote reader, so an
  emptier node often wins and the plan is lost. The planned nodes (every node within float noise
  of the minimum: they are equally good for the plan) get 10, and every other node at most
  ``10 - PLAN_LEAD``, ranked as before among themselves: with ``weight 5`` (the shipped
  manifests) the lead is ``PLAN_LEAD x 50 = 200`` points, the most the two plugins could ever give
  one node over another (0..100 each) and far more than they do between nodes that can take the
  pod (about 85 from an empty node to a nearly full one on the benchmark's nodes). With a smaller
  ``weight`` the lead shrinks in proportion and the plugins may overrule the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from extender.batching import Chains, displacement_costs, pod_options
from extender.scoring import EQUAL_TOLERANCE, MAX_SCORE, normalize

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Score levels between the planned nodes (10) and every other node (at most ``10 - PLAN_LEAD``).
PLAN_LEAD = 4


@dataclass(frozen=True, slots=True)
class JointPlan:
    """A cheapest joint placement of a batch of pods.

    ``nodes[q]`` is pod ``q``'s node (``-1``: no node with a free slot accepts it), ``cost`` the
    sum of the placed pods' costs, and ``alternates[q]`` the pod's next best nodes, best first:
    ordered by the cost of the cheapest joint plan with ``q`` forced there (the planned node
    excluded; ``-1`` pads rows with fewer choices). Nodes of equal cost are in id order.
    """

    nodes: IntArray
    cost: float
    alternates: IntArray


def plan_jointly(costs: FloatArray, slots: IntArray, *, alternates: int = 0) -> JointPlan:
    """The cheapest assignment of every pod to a node with a free slot (module docstring).

    Parameters
    ----------
    costs:
        Shape ``(pods, nodes)``: each pod's cost on each node; ``inf`` where it cannot run.
    slots:
        Shape ``(nodes,)``: free pod slots per node (``<= 0``: none).
    alternates:
        How many ranked alternates to return per pod (``0``: none; each costs one
        :func:`joint_prices`, so ``pods`` min-cost assignments in all).

    Returns
    -------
    JointPlan
        Pods that fit nowhere get ``-1``. When the free slots are too few for every pod, the plan
        places as many pods as it can, and among such plans the cheapest (the others get ``-1``).

    Examples
    --------
    >>> # pod 0 is as good on nodes 0 and 1; pod 1 only reads locally on node 0: one slot each
    >>> plan_jointly(np.array([[0.0, 0.0], [0.0, 50.0]]), np.array([1, 1])).nodes.tolist()
    [1, 0]
    """
    pods, nodes = costs.shape
    where = np.full(pods, -1, dtype=np.int64)
    ranked = np.full((pods, max(alternates, 0)), -1, dtype=np.int64)
    if pods == 0 or nodes == 0:
        return JointPlan(where, 0.0, ranked)
    open_cost = np.where(slots[None, :] > 0, costs, np.inf)
    # "Elsewhere" (an uncapacitated last resort per pod) is priced above any sum of real costs, so
    # the plan places as many pods as the slots allow, then at least cost; a pod left elsewhere
    # found no chain to a free slot among its options. Its ``pods + 1`` cheapest open nodes are
    # enough (the others fill at most ``pods - 1`` of them): the plan over them is a plan over all.
    options, kept = pod_options(open_cost, min(pods + 1, nodes))
    if options:
        top = max(float(values.max()) for _, values, _ in options)
        big = 2.0 * (abs(top) + 1.0) * (pods + 1)
        chains = Chains([(ids, values, big) for ids, values, _ in options], slots)
        for q in range(len(options)):
            chains.insert(q)
        for q, node in zip(kept, chains.where, strict=True):
            where[q] = -1 if node is None else node
    placed = where >= 0
    total = float(costs[np.flatnonzero(placed), where[placed]].sum()) if placed.any() else 0.0
    if alternates > 0:
        for q in range(pods):
            prices = joint_prices(costs, slots, q)
            order = np.lexsort((np.arange(nodes), prices))
            order = order[np.isfinite(prices[order]) & (order != where[q])][:alternates]
            ranked[q, : order.size] = order
    return JointPlan(where, total, ranked)


def joint_prices(costs: FloatArray, slots: IntArray, pod: int) -> FloatArray:
    """What putting ``pod`` on each node costs the whole batch: ``costs[pod] + delta(n)``.

    ``delta`` is :func:`~extender.batching.displacement_costs` of the *other* pods, so the value
    at ``n`` is the cost of the cheapest joint plan with ``pod`` on ``n``, less the cheapest plan
    of the others alone (a constant). Its minimum is ``pod``'s node in a cheapest joint plan.
    ``inf`` where the pod cannot run or the node has no free slot.
    """
    others = np.delete(costs, pod, axis=0)
    prices = costs[pod] + displacement_costs(others, slots)
    return np.where(slots > 0, prices, np.inf)


def planned_scores(eff: FloatArray, lead: int = PLAN_LEAD) -> IntArray:
    """Scores 0..10 that make kube-scheduler follow the plan: 10 for the cheapest, the rest below.

    ``eff`` is the pod's joint price on each offered node (effective cost plus what the node's
    slot costs the other pending pods). Nodes within float noise of the minimum get 10; the
    others keep their :func:`~extender.scoring.normalize` order but at most ``10 - lead``. When
    all are equal, all get 0 (no preference), as :func:`~extender.scoring.normalize` does.

    >>> planned_scores(np.array([0.0, 0.01, 0.25, 1.0])).tolist()
    [10, 6, 5, 0]
    """
    scores = normalize(eff)
    if eff.size == 0 or not scores.any():
        return scores
    lo = float(eff.min())
    best = eff <= lo + EQUAL_TOLERANCE * max(1.0, abs(lo))
    return np.where(best, MAX_SCORE, np.minimum(scores, MAX_SCORE - lead)).astype(np.int64)
