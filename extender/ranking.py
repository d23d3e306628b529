"""Ranking offered nodes for a pod: costs from the cache, normalised by :mod:`extender.scoring`.

:func:`rank` reads top to bottom: the pod's :class:`~extender.framework.Cycle` (its resolved
wish, computed once per pod) -> network cost of every node (:class:`~extender.costs.CostTables`)
-> hotspot fading with each node's load after placing this pod -> plus what each node's slot
would cost the other pending pods (:mod:`extender.pricing`, when the watch knows some) -> read at
the offered ids -> normalise into 0..10. Pods without kbl annotations, or whose wish cannot be
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
from extender.scoring import normalize
from extender.wishes import Wish

#: A better node elsewhere is reported when it beats the best offered node by this fraction of
#: the all-remote cost (5%: a few shards out of a hundred read across a zone).
TRAP_MARGIN = 0.05
#: How many better nodes (cheapest first) to check before giving up looking for one the pod may use.
TRAP_CANDIDATES = 8

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


def rank(fw: Framework, cycle: Cycle, names: list[str], *, look_elsewhere: bool = True) -> Ranking:
    """Score offered nodes for a pod (see the module docstring and :mod:`extender.scoring`).

    Costs, utilization and effective costs are computed once over every node id (cached per
    dataset/shard set and per load version) and then read at the offered ids: at 5,000
    candidates that is a few vector operations, no per-node Python.
    """
    state, wish = fw.state, cycle.wish
    with state.lock:
        ids = state.node_ids(names)
        if not wish.usable or not names or wish.needed_bytes <= 0:
            return Ranking(np.zeros(len(names), dtype=np.int64), wish, ids)
        worst = wish.needed_bytes * state.settings.costs.remote
        eff_all, util_all = fw.costs.effective(wish, cycle.request)
        delta = fw.pricing.displacement(cycle.pod)
        if delta is not None:
            eff_all = eff_all + delta
        known = ids >= 0
        eff = eff_all[np.where(known, ids, 0)]
        if not known.all():
            eff[~known] = worst
        scores = normalize(eff)
        missed = None
        if look_elsewhere:
            missed = _better_elsewhere(fw, cycle, names, eff=eff, eff_all=eff_all, util_all=util_all, worst=worst)
        return Ranking(scores, wish, ids, missed)


def _better_elsewhere(
    fw: Framework, cycle: Cycle, names: list[str], *, eff: FloatArray, eff_all: FloatArray, util_all: FloatArray, worst: float
) -> Missed | None:
    best_i = int(np.argmin(eff))
    offered_best = float(eff[best_i])
    state = fw.state
    present = state.present()
    count = present.shape[0]
    if count == 0:
        return None
    better = np.flatnonzero(present & (util_all[:count] <= 1.0) & (eff_all[:count] < offered_best - TRAP_MARGIN * worst))
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
