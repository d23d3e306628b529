"""Ranking offered nodes for a pod: the cache's bytes and load fed through :mod:`extender.scoring`.

:func:`rank` resolves the pod's data wish, looks up the cached byte table of the requested
shards, applies hotspot fading with each node's load (bound pods, in-flight assignments and
this pod), adds what each node's slot would cost the other pending pods
(:mod:`extender.batching`, when the watch knows some), and normalizes into 0..10. Pods without kbl annotations, or whose wish cannot be
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

from extender.scoring import effective_costs, normalize
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
    ids: npt.NDArray[np.int64] | None = None


def rank(state: ClusterState, pod: Pod, names: list[str], *, look_elsewhere: bool = True) -> Ranking:
    """Score offered nodes for a pod (see the module docstring and :mod:`extender.scoring`).

    Costs, utilization and effective costs are computed once over every node id (cached per
    dataset/shard set and per load version by the state) and then read at the offered ids: at
    5,000 candidates that is a few vector operations, no per-node Python.
    """
    with state.lock:
        wish = state.resolve(pod)
        ids = state.node_ids(names)
        zeros = np.zeros(len(names), dtype=np.int64)
        if not wish.usable or not names or wish.needed_bytes <= 0:
            return Ranking(zeros, wish, ids=ids)
        worst = wish.needed_bytes * state.settings.costs.remote
        request = load_vector(pod.requests)
        util_all = state.utilization_all(request)
        eff_all = effective_costs(state.node_costs(wish), worst, util_all, state.settings.hotspot_threshold)
        delta = state.displacement(pod)
        if delta is not None:
            eff_all = eff_all + delta
        known = ids >= 0
        eff = eff_all[np.where(known, ids, 0)]
        if not known.all():
            eff[~known] = worst
        scores = normalize(eff)
        missed = None
        if look_elsewhere:
            missed = _better_elsewhere(state, pod, names, eff=eff, eff_all=eff_all, util_all=util_all, worst=worst)
        return Ranking(scores, wish, missed, ids)


def _better_elsewhere(
    state: ClusterState,
    pod: Pod,
    names: list[str],
    *,
    eff: npt.NDArray[np.float64],
    eff_all: npt.NDArray[np.float64],
    util_all: npt.NDArray[np.float64],
    worst: float,
) -> Missed | None:
    best_i = int(np.argmin(eff))
    offered_best = float(eff[best_i])
    present = state.cluster.domain_arrays()[3].astype(bool)
    count = present.shape[0]
    if count == 0:
        return None
    ids = np.arange(count, dtype=np.int64)
    allowed = present & state.usable(ids) & (util_all[:count] <= 1.0) & (eff_all[:count] < offered_best - TRAP_MARGIN * worst)
    if not allowed.any():
        return None
    owner, group = state.owners(ids)
    mine = state.kbl_id(pod.kbl)
    allowed &= (owner < 0) | (owner == mine)
    if state.kbl_is_dedicated(pod.kbl):
        allowed &= group == mine
    better = np.flatnonzero(allowed)
    if better.size == 0:
        return None
    offered = set(names)
    for j in better[np.argsort(eff_all[better], kind="stable")][:TRAP_CANDIDATES].tolist():
        name = state.cluster.name_of(j)
        node = state.cluster.nodes.get(name)
        if node is None or name in offered or not pod.tolerates(node.taints):
            continue
        return Missed(name, names[best_i], offered_best, float(eff_all[j]), worst, len(names))
    return None
