"""Pending-batch pricing over the cache: which pods compete for slots, and what each slot costs them.

:mod:`extender.batching` is the pure math (``delta(n)`` from a cost matrix and free slots);
this module feeds it from the cache: :func:`pending_batch` picks the other pods waiting for a
node, and :class:`BatchPricing` builds their cost rows (network cost where the pod is
:func:`~extender.eligibility.eligible`, ``inf`` elsewhere) and the free pod slots per node, and
remembers the result per pod and state version.

:class:`SlotPrices` adds what a slot is worth to pods *not yet created*: the shadow price of one
pod slot per node, learned online. Each time :data:`SLOT_PRICE_EVERY` new pods have started
waiting for a node (a Job's burst, at once; pods arriving one by one, every 16th), it takes
the population the cache knows (pods holding a node plus pods waiting) as a sample of the
workload, assigns it fractionally at least cost onto every node's slots (an LP, HiGHS) and reads
the dual of each node's capacity: what one more slot there would save that population. The
price is the running mean of those duals over every sample so far: a node that often runs out
of room for readers of data it alone (or with few others) holds is priced high, one that is
never short is priced 0. The mean matters: the dual at one instant swings with which bursts
happen to be running (a pod priced by the current dual alone does worse than with no price);
its mean over time is what one slot costs the future, in the same unit as the pod's own network
cost. Measured in BENCHMARKS.md (issue 25 item 2).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import linprog
from scipy.sparse import csr_matrix

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
        self.slot_prices = SlotPrices(state, costs)

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
            result = self._price(batch, self.slot_prices.prices())
            result.flags.writeable = False
        self._cache[key] = result
        return result

    def _price(self, batch: list[tuple[Pod, Wish]], extra: FloatArray | None = None) -> FloatArray:
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
        if extra is not None:
            rows += extra[None, :]
        return displacement_costs(rows, slots)


#: The most pods x nodes the slot-price LP takes (larger samples are skipped, before any row is
#: built: the mean so far stays). 50,000 is the benchmark's 60 nodes with up to 833 data pods (its
#: LPs have about 20,000 cells, ~60 ms of CPU); a 5,000-node cluster is sampled only with at most 10.
SLOT_PRICE_MAX_CELLS = 50_000
#: Share of the cluster's slots a sample may fill in the LP (a fuller one has no feasible fluid plan).
SLOT_PRICE_FILL = 0.98
#: A new sample is taken once this many pods have started waiting since the last one (a Job's
#: burst at once; pods arriving one by one share one LP per this many).
SLOT_PRICE_EVERY = 16


class SlotPrices:
    """The online shadow price of one pod slot per node (module docstring). Call under ``state.lock``.

    :meth:`prices` samples once :data:`SLOT_PRICE_EVERY` pods have started waiting since the last
    sample (a Job's burst; the first sample as soon as any pod waits) and returns the running mean
    per node id (``None`` before the first sample, when
    ``batch_limit`` is 0, or when ``slot_prices`` is off in the settings).
    """

    def __init__(self, state: ClusterState, costs: CostTables) -> None:
        self.state = state
        self.costs = costs
        self._sum = np.zeros(0, dtype=np.float64)
        self._mean: FloatArray | None = None
        self.samples = 0
        self._seen: set[str] = set()
        self._fresh = 0  # pods seen waiting since the last sample
        self._scanned = -1  # the load version of the last look at the waiting pods

    def prices(self) -> FloatArray | None:
        state = self.state
        if state.settings.batch_limit <= 0 or not state.settings.slot_prices:
            return None
        if state.load_version != self._scanned:  # pods only start waiting with a new load version
            self._scanned = state.load_version
            waiting = {key for key, pod in state.waiting_pods() if pod.data is not None}
            self._fresh += len(waiting - self._seen)
            self._seen = waiting
        if self._fresh >= SLOT_PRICE_EVERY or (self._mean is None and self._fresh > 0):
            self._fresh = 0
            duals = self._sample()
            if duals is not None:
                if self._sum.size < duals.size:
                    self._sum = np.concatenate([self._sum, np.zeros(duals.size - self._sum.size)])
                self._sum[: duals.size] += duals
                self.samples += 1
                mean = self._sum / self.samples
                mean.flags.writeable = False
                self._mean = mean
        if self._mean is None:
            return None
        count = self.state.id_count
        if self._mean.size >= count:
            return self._mean[:count]
        return np.concatenate([self._mean, np.zeros(count - self._mean.size)])

    def _sample(self) -> FloatArray | None:
        """The capacity duals of the least-cost fluid assignment of the pods the cache knows."""
        state = self.state
        count = state.id_count
        ids = np.arange(count, dtype=np.int64)
        pods = [p for p in state.holding_pods() if p.data is not None] + [p for _, p in state.waiting_pods() if p.data is not None]
        if len(pods) * count > SLOT_PRICE_MAX_CELLS:
            return None
        rows, requests = [], []
        for pod in pods:
            wish = resolve(state.cluster, pod)
            if not wish.usable or wish.needed_bytes <= 0:
                continue
            row = np.array(self.costs.node_costs(wish)[:count], dtype=np.float64)
            row[~eligible(state, pod, ids)] = np.inf
            if np.isfinite(row).any():
                rows.append(row)
                requests.append(load_vector(pod.requests))
        if not rows:
            return None
        costs = np.array(rows)
        _used, alloc = state.used_all()
        unit = np.where(np.array(requests) > 0, np.array(requests), np.inf).min(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(np.isfinite(unit), np.floor(alloc / unit), np.inf)
        caps = np.where(state.usable(ids), per.min(axis=1), 0.0)
        caps = np.clip(np.nan_to_num(caps, posinf=len(rows)), 0.0, len(rows))
        return fluid_duals(costs, caps, fill=SLOT_PRICE_FILL)


def fluid_duals(costs: FloatArray, caps: FloatArray, *, fill: float = SLOT_PRICE_FILL) -> FloatArray | None:
    """Per node, the dual of its capacity in the least-cost fractional assignment of ``costs``' pods.

    Each pod (row) is spread over the nodes where its cost is finite, at most ``caps[n]`` pods'
    worth on node ``n``; when the pods are more than ``fill`` of the slots each counts for less,
    so that the plan stays feasible. The result is ``>= 0``: what one more unit of room on the
    node would save the plan (0 where room is left over), in the unit of ``costs``. ``None`` when
    the LP has no solution (a pod fits nowhere).
    """
    total = float(caps.sum())
    if costs.shape[0] == 0 or total <= 0:
        return None
    weight = min(1.0, fill * total / costs.shape[0])
    # Pods with the same row (same data, same eligibility) are one pod of their summed weight.
    costs, counts = np.unique(costs, axis=0, return_counts=True)
    pods, nodes = costs.shape
    finite = np.isfinite(costs)
    pp, nn = np.nonzero(finite)
    if pp.size == 0:
        return None
    cells = np.arange(pp.size)
    rows_eq = csr_matrix((np.ones(pp.size), (pp, cells)), shape=(pods, pp.size))
    rows_ub = csr_matrix((np.ones(pp.size), (nn, cells)), shape=(nodes, pp.size))
    scale = max(1.0, float(np.abs(costs[finite]).max()))
    result = linprog(
        costs[pp, nn] / scale,
        A_ub=rows_ub,
        b_ub=caps,
        A_eq=rows_eq,
        b_eq=counts * weight,
        bounds=(0.0, None),
        method="highs",
    )
    if result.status != 0:
        return None
    # HiGHS marginals of a <= row are d(objective)/d(rhs) <= 0: one more slot lowers the cost.
    return np.maximum(0.0, -np.asarray(result.ineqlin.marginals, dtype=np.float64)) * scale
