"""Ranking offered nodes for a pod: costs from the cache, normalised by :mod:`extender.scoring`.

:func:`rank` reads top to bottom: the pod's :class:`~extender.framework.Cycle` (its resolved
wish, computed once per pod) -> network cost of every node (:class:`~extender.costs.CostTables`)
-> hotspot fading with each node's load after placing this pod -> plus what each node's slot
would cost the other pending pods (:mod:`extender.pricing`, when the watch knows some) plus what it
is worth to pods not yet created (:class:`~extender.pricing.SlotPrices`, once learned) -> read at
the offered ids -> normalise into 0..10 (with other pending pods, the pod's node in the cheapest
joint plan gets 10 and the others at most ``10 - PLAN_LEAD``: :mod:`extender.joint`). Pods without kbl annotations, or whose wish cannot be
honoured, get all zeros at once (no preference, near-zero cost).

It also looks for the ``percentageOfNodesToScore`` trap: a node elsewhere in the cluster that
would serve the pod markedly better (by more than :data:`TRAP_MARGIN` of the all-remote cost)
than every offered node, and that the pod could run on as far as the cache knows
(:func:`~extender.eligibility.eligible`, and not full).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from extender.eligibility import eligible
from extender.framework import Cycle, Framework
from extender.joint import planned_scores
from extender.scoring import normalize
from extender.wishes import Wish

#: A better node elsewhere is reported when it beats the best offered node by this fraction of
#: the all-remote cost (5%: a few shards out of a hundred read across a zone).
TRAP_MARGIN = 0.05
#: How many better nodes (cheapest first) to check before giving up looking for one the pod may use.
TRAP_CANDIDATES = 8
#: Nodes read in the first step of the look for a better node (each later step reads twice as many).
CHUNK = 64

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Missed:
    """A better node that was not offered: its name, and the two effective costs."""

    node: str
    best_offered: str
    offered_cost: float
    node_cost: float
    worst_cost: float
    offered: int


@dataclass(frozen=True, slots=True)
class Ranking:
    """Scores (0..10, request order), the offered node ids, and what was learned on the way."""

    scores: IntArray
    wish: Wish
    ids: IntArray
    missed: Missed | None = None


def rank(fw: Framework, cycle: Cycle, names: list[str], *, look_elsewhere: bool = True, key: str | None = None) -> Ranking:
    """Score offered nodes for a pod (see the module docstring and :mod:`extender.scoring`).

    Work per call is O(offered names), whatever the number of cached nodes: network costs are a
    vector per dataset and shard set (cached), utilization and effective costs are computed at
    the offered ids only (:meth:`~extender.costs.CostTables.effective_at`), and the look for a
    better node elsewhere reads only the nodes cheaper than the best offered one
    (:func:`_better_elsewhere`). ``key`` is the list's :func:`~extender.messages.names_key`
    when the caller has it.
    """
    state, wish = fw.state, cycle.wish
    with state.lock:
        ids = state.node_ids(names, key)
        if not wish.usable or not names or wish.needed_bytes <= 0:
            return Ranking(np.zeros(len(names), dtype=np.int64), wish, ids)
        worst = wish.needed_bytes * state.settings.costs.remote
        eff, _util = fw.costs.effective_at(wish, cycle.request, ids)
        delta = fw.pricing.displacement(cycle.pod)
        price = fw.pricing.slot_prices.prices()  # what a slot is worth to pods not yet created
        if price is not None:
            delta = price if delta is None else delta + price
        if delta is None:
            scores = normalize(eff)
        else:  # planned jointly with the other pending pods: the planned nodes lead (extender.joint)
            eff = eff + np.where(ids >= 0, delta[np.where(ids >= 0, ids, 0)], 0.0)
            scores = planned_scores(eff)
        missed = None
        if look_elsewhere:
            if delta is None:
                missed = _better_elsewhere(fw, cycle, names, eff=eff, worst=worst)
            else:
                missed = _better_elsewhere_all(fw, cycle, names, eff=eff, delta=delta, worst=worst)
        return Ranking(scores, wish, ids, missed)


def _better_elsewhere(fw: Framework, cycle: Cycle, names: list[str], *, eff: FloatArray, worst: float) -> Missed | None:
    """The cheapest node (effective cost, then id) the pod may use that beats every offered node
    by :data:`TRAP_MARGIN` of ``worst``, found without a pass over every node.

    A node's effective cost is never below its network cost (the locality advantage only fades
    towards ``worst``), so only nodes whose network cost is under the threshold can qualify.
    Usually none is: the cheapest cost (:meth:`~extender.costs.CostTables.lowest_cost`, read
    from the holders alone) answers. Otherwise they are a prefix of
    :meth:`~extender.costs.CostTables.cost_order` (built once per shard set over every node). They are read in growing chunks until the
    next network cost exceeds the best effective cost found: nothing later can beat or tie it.
    Such a node is never an offered one (every offered node costs at least the best offered).
    """
    best_i = int(np.argmin(eff))
    offered_best = float(eff[best_i])
    threshold = offered_best - TRAP_MARGIN * worst
    costs, state, wish = fw.costs, fw.state, cycle.wish
    if costs.lowest_cost(wish) >= threshold:  # the usual answer, from the holders alone
        return None
    _lowest, highest = costs.cost_range(wish)  # from here on, vectors over every node (kept per shard set)
    if highest > worst:  # costs above the all-remote one (odd settings): no bound holds
        return _better_elsewhere_all(fw, cycle, names, eff=eff, delta=None, worst=worst)
    order, ordered = costs.cost_order(wish)
    cost = costs.node_costs(wish)
    end = int(np.searchsorted(ordered, threshold, side="left"))
    best_j, best_e = -1, np.inf
    start, step = 0, CHUNK
    while start < end and float(ordered[start]) <= best_e:
        chunk = order[start : min(end, start + step)]
        start, step = start + step, step * 2
        chunk_eff, chunk_util = costs.faded(wish, cycle.request, chunk, cost[chunk])
        keep = (chunk_eff < threshold) & (chunk_util <= 1.0) & state.present_at(chunk)
        if not keep.any():
            continue
        found, found_eff = chunk[keep], chunk_eff[keep]
        ok = eligible(state, cycle.pod, found)
        found, found_eff = found[ok], found_eff[ok]
        if found.size:
            k = int(np.lexsort((found, found_eff))[0])
            if best_j < 0 or (float(found_eff[k]), int(found[k])) < (best_e, best_j):
                best_j, best_e = int(found[k]), float(found_eff[k])
    if best_j < 0:
        return None
    return Missed(state.cluster.name_of(best_j), names[best_i], offered_best, best_e, worst, len(names))


def _better_elsewhere_all(
    fw: Framework, cycle: Cycle, names: list[str], *, eff: FloatArray, delta: FloatArray | None, worst: float
) -> Missed | None:
    """:func:`_better_elsewhere` by one pass over every node id: with pending-batch prices (which
    are O(cached nodes) already and may lower a node's cost below its network cost) or settings
    that break the bound it relies on."""
    best_i = int(np.argmin(eff))
    offered_best = float(eff[best_i])
    state = fw.state
    eff_all, util_all = fw.costs.effective(cycle.wish, cycle.request)
    if delta is not None:
        eff_all = eff_all + delta
    # The cost test first: one pass over every node id, and it leaves few (usually no) nodes.
    better = np.flatnonzero(eff_all < offered_best - TRAP_MARGIN * worst)
    if better.size == 0:
        return None
    better = better[state.present_at(better) & (util_all[better] <= 1.0)]
    if better.size == 0:
        return None
    better = better[np.argsort(eff_all[better], kind="stable")].astype(np.int64)
    better = better[eligible(state, cycle.pod, better)]
    offered = set(names)
    for j in better[:TRAP_CANDIDATES].tolist():
        name = state.cluster.name_of(j)
        if name not in offered:
            return Missed(name, names[best_i], offered_best, float(eff_all[j]), worst, len(names))
    return None
