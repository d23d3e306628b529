"""Ranking offered nodes for a pod: the cache's bytes and load fed through :mod:`extender.scoring`.

:func:`rank` resolves the pod's data wish, looks up the cached byte table of the requested
shards, applies hotspot fading with each node's load (bound pods, in-flight assignments and
this pod), and normalizes into 0..10. Pods without kbl annotations, or whose wish cannot be
honoured, get all zeros at once (no preference, near-zero cost).

It also looks for the ``percentageOfNodesToScore`` trap: a node elsewhere in the cluster that
would serve the pod markedly better (by more than :data:`TRAP_MARGIN` of the all-remote cost)
than every offered node, and that the pod could run on as far as the cache knows (ready,
schedulable, tolerated taints, dedicated-group rules, not full).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from extender.scoring import effective_costs, normalize, raw_costs, utilization
from extender.state import ClusterState, Wish, load_vector
from topology.pods import Pod

#: A better node elsewhere is reported when it beats the best offered node by this fraction of
#: the all-remote cost (5%: a few shards out of a hundred read across a zone).
TRAP_MARGIN = 0.05
#: How many better nodes to check for taints before giving up looking for one the pod tolerates.
TRAP_CANDIDATES = 8


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
    """Scores (0..10, request order) and what was learned on the way."""

    scores: npt.NDArray[np.int64]
    wish: Wish
    missed: Missed | None = None


def rank(state: ClusterState, pod: Pod, names: list[str], *, look_elsewhere: bool = True) -> Ranking:
    """Score offered nodes for a pod (see the module docstring and :mod:`extender.scoring`)."""
    with state.lock:
        wish = state.resolve(pod)
        zeros = np.zeros(len(names), dtype=np.int64)
        if not wish.usable or not names or wish.needed_bytes <= 0:
            return Ranking(zeros, wish)
        costs = state.settings.costs
        threshold = state.settings.hotspot_threshold
        table = state.level_bytes(wish).table
        worst = wish.needed_bytes * costs.remote
        request = load_vector(pod.requests)
        ids = state.node_ids(names)
        known = ids >= 0
        cost = np.full(len(names), worst, dtype=np.float64)
        cost[known] = raw_costs(table[ids[known]], costs)
        used, alloc = state.load(ids)
        eff = effective_costs(cost, worst, utilization(used, alloc, request), threshold)
        eff[~known] = worst
        scores = normalize(eff)
        missed = None
        if look_elsewhere:
            missed = _better_elsewhere(state, pod, names, eff=eff, table=table, worst=worst, request=request)
        return Ranking(scores, wish, missed)


def _better_elsewhere(
    state: ClusterState,
    pod: Pod,
    names: list[str],
    *,
    eff: npt.NDArray[np.float64],
    table: npt.NDArray[np.float64],
    worst: float,
    request: npt.NDArray[np.float64],
) -> Missed | None:
    best_i = int(np.argmin(eff))
    offered_best = float(eff[best_i])
    ids = state.present_ids()
    if ids.size == 0:
        return None
    costs = state.settings.costs
    used, alloc = state.load(ids)
    util = utilization(used, alloc, request)
    all_eff = effective_costs(raw_costs(table[ids], costs), worst, util, state.settings.hotspot_threshold)
    allowed = state.usable(ids) & (util <= 1.0) & (all_eff < offered_best - TRAP_MARGIN * worst)
    owner, group = state.owners(ids)
    mine = state.kbl_id(pod.kbl)
    allowed &= (owner < 0) | (owner == mine)
    if state.kbl_is_dedicated(pod.kbl):
        allowed &= group == mine
    better = np.flatnonzero(allowed)
    if better.size == 0:
        return None
    offered = set(names)
    for j in better[np.argsort(all_eff[better], kind="stable")][:TRAP_CANDIDATES].tolist():
        name = state.cluster.name_of(int(ids[j]))
        node = state.cluster.nodes.get(name)
        if node is None or name in offered or not pod.tolerates(node.taints):
            continue
        return Missed(name, names[best_i], offered_best, float(all_eff[j]), worst, len(names))
    return None
