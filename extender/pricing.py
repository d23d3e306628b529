"""Pending-batch pricing over the cache: which pods compete for slots, and what each slot costs them.

:mod:`extender.batching` is the pure math (``delta(n)`` from a cost matrix and free slots);
this module feeds it from the cache: :func:`pending_batch` picks the other pods waiting for a
node, and :class:`BatchPricing` builds their cost rows (network cost where the pod is
:func:`~extender.eligibility.eligible`, ``inf`` elsewhere) and the free pod slots per node, and
remembers the result per pod and state version.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from extender.batching import displacement_costs
from extender.costs import CostTables
from extender.eligibility import eligible
from extender.state import ClusterState, load_vector
from extender.wishes import Wish, resolve
from topology import labels
from topology.pods import Pod

FloatArray = npt.NDArray[np.float64]


def pending_batch(state: ClusterState, pod: Pod, *, at_most: int | None = None) -> list[tuple[Pod, Wish]]:
    """The other pods waiting for a node that compete with ``pod`` for slots.

    Pods the watch reported active and without ``spec.nodeName``, not assigned in flight,
    handled by the same scheduler (kbl's two profiles count as one), with a usable data wish, and not already marked
    unschedulable by kube-scheduler (those wait for capacity to appear; counting them would
    let a stuck pod hold every slot's price up), not narrowed by the gate controller (it can
    take only its candidates, whose room the controller reserved); ``pod`` itself is left out. Stops after
    ``at_most`` pods (the caller only needs to know that there are more than its limit).
    """
    own = pod.uid or pod.key
    group = _scheduler_group(state, pod.scheduler_name)
    out = []
    for key, other in state.waiting_pods():
        if key == own:
            continue
        if other.scheduler_name not in group or other.data is None or other.unschedulable or labels.NARROWED in other.annotations:
            continue
        wish = resolve(state.cluster, other)
        if wish.usable and wish.needed_bytes > 0:
            out.append((other, wish))
            if at_most is not None and len(out) >= at_most:
                break
    return out


def _scheduler_group(state: ClusterState, name: str | None) -> frozenset[str | None]:
    """Scheduler names whose pods compete for the same slots as a pod of ``name``.

    The webhook routes some pods to kbl's exhaustive profile: both profiles run in one
    kube-scheduler, so their pods take slots from each other and are priced together.
    """
    settings = state.settings
    kbl = {settings.scheduler_name, settings.exhaustive_scheduler_name} - {""}
    return frozenset(kbl) if name in kbl else frozenset({name})


class BatchPricing:
    """``delta(n)`` per pod, remembered per state version (module docstring). Call under ``state.lock``."""

    def __init__(self, state: ClusterState, costs: CostTables) -> None:
        self.state = state
        self.costs = costs
        self._cache: dict[tuple[int, int, int, str], FloatArray | None] = {}

    def displacement(self, pod: Pod) -> FloatArray | None:
        """What one slot on each node costs the other pending pods (:mod:`extender.batching`).

        ``None`` when there is no other pending pod, or more than ``settings.batch_limit`` (the
        pod is then scored on its own), and for a pod the gate controller narrowed by name
        (:data:`topology.labels.NARROWED`: its candidates were chosen with the others' room
        reserved). Computed once per pod and state version (load, nodes, data).
        """
        state = self.state
        limit = state.settings.batch_limit
        if limit <= 0 or labels.NARROWED in pod.annotations:
            return None
        state.expire()
        key = (state.load_version, state.cluster.version, state.data_version, pod.uid or pod.key)
        if key in self._cache:
            return self._cache[key]
        if any(k[:3] != key[:3] for k in self._cache):
            self._cache.clear()
        batch = pending_batch(state, pod, at_most=limit + 1)
        result: FloatArray | None = None
        if 0 < len(batch) <= limit:
            result = self._price(batch)
            result.flags.writeable = False
        self._cache[key] = result
        return result

    def _price(self, batch: list[tuple[Pod, Wish]]) -> FloatArray:
        state = self.state
        count = state.id_count
        ids = np.arange(count, dtype=np.int64)
        used, alloc = state.used_all()
        free = alloc - used
        requests = np.array([load_vector(p.requests) for p, _ in batch])
        unit = np.where(requests > 0, requests, np.inf).min(axis=0)  # the smallest request per resource
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(np.isfinite(unit), np.floor(free / unit), np.inf)
        slots = np.where(state.usable(ids), per.min(axis=1), 0)
        slots = np.clip(np.nan_to_num(slots, posinf=len(batch) + 1), 0, len(batch) + 1).astype(np.int64)
        rows = np.empty((len(batch), count), dtype=np.float64)
        for i, (other, wish) in enumerate(batch):
            row = np.array(self.costs.node_costs(wish)[:count], dtype=np.float64)
            row[~eligible(state, other, ids)] = np.inf
            rows[i] = row
        return displacement_costs(rows, slots)
