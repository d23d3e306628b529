"""The gate controller: narrow a *preferred* data pod to a few good nodes before kube-scheduler samples.

kube-scheduler's adaptive ``percentageOfNodesToScore`` shows the extender a sample of the nodes,
so a preferred-locality pod may never be offered the nodes near its data; routing it to the
100% profile (:mod:`extender.admission`) keeps its locality but every such pod then offers all
nodes. Narrowing does what Kueue's topology-aware scheduling does with scheduling gates
(``spec.schedulingGates``, KEP-3521) and the mutable scheduling directives of a gated pod
(KEP-3838):

1. **The webhook gates.** With narrowing on (:attr:`~extender.settings.ExtenderSettings.narrowing`),
   a preferred data pod of the kbl scheduler whose data is placed and that has a controller
   owner (Job, ReplicaSet, StatefulSet...) is created with the gate :data:`GATE` instead of
   being routed, *only while the gate controller is alive* (:meth:`GateController.alive`: its
   leader Lease seen renewed within the lease duration). Otherwise, and for bare pods (nobody
   would recreate them, see 4) and pods whose owner lost a narrowed pod, the webhook routes as
   before: a dead controller never gates new pods.
2. **The controller narrows.** For each gated pod (seen through a pod watch), it ranks the nodes
   by the extender's own network cost for the pod (:class:`~extender.costs.CostTables`), keeps
   those that are eligible for it (:func:`extender.eligibility.eligible`) and have room for it
   (free room from the cache, minus the pods it released that are not bound yet:
   *reservations*), and takes the :attr:`~extender.settings.ExtenderSettings.narrow_candidates`
   cheapest: holders with room first, then their racks, then their zones, then the least-cost
   rest (tier by tier, because the cost grows by level; racks and zones from a
   :class:`DomainIndex`). Then ONE patch through the API: the required requirement
   ``matchFields metadata.name In [candidates]`` ANDed into every existing required term (or
   one term if none), preferred terms ranking the candidates by cost
   (:func:`candidate_weights`, :func:`preferred_terms`), and the gate removed. NodeAffinity's
   PreFilter then gives kube-scheduler exactly those nodes, whatever its sampling, and its score
   puts the cheapest first. A pod it cannot narrow (data not placed, no node with room) is
   released unchanged at once.
2b. **A narrowed pod never calls the extender.** kube-scheduler's extender stanza lists
   :data:`EXTENDER_RESOURCE` in ``managedResources`` (``ignoredByScheduler: true``), so it calls
   the extender only for pods requesting it; the webhook gives it to every kbl pod it does not
   gate (:func:`extender.admission.resource_patch`), never to a gated one.
3. **Mutability.** The patch only *tightens* (:func:`mutation_error` is the API server's rule:
   while a pod is gated, ``nodeSelector`` may only gain keys, required terms only gain
   requirements, gates may only be removed; once ungated nothing of it may change), so the API
   server accepts it; once ungated nothing can be loosened again.
4. **No stranding.** A released pod still unbound after
   :attr:`~extender.settings.ExtenderSettings.narrow_release_timeout_s` (counted from when its
   last gate went, if another controller also gates it), or one of whose
   candidates left (deleted, NotReady, cordoned), is *deleted*: its owner recreates it, and the
   owner is remembered (:meth:`GateController.remembers`) so the webhook routes the
   replacement as today (``spec.schedulerName`` is settable only at creation), and should a
   replacement be gated anyway (another replica's webhook, which does not share this memory),
   the controller releases it unchanged at once. A narrowed pod is therefore scheduled within
   about ``timeout + one scheduling cycle of the replacement``.

If the controller stops (leader lost, process gone), new pods are no longer gated within one
lease duration; pods already gated wait until a controller leads again (a standby replica takes
over within the lease duration), then are narrowed or released. If none ever comes back, they
stay ``SchedulingGated``: remove the gate by hand (``kubectl patch pod P --type=json -p
'[{"op":"remove","path":"/spec/schedulingGates"}]'``). With the webhook down
(``failurePolicy: Ignore``) pods are created ungated and unrouted: they schedule on the
default profile, unnarrowed.

The controller acts only through :class:`PodWriter` (merge patches with the read
``resourceVersion`` as precondition, and deletes), which :class:`KubePodWriter` implements over
the API and the benchmarks' kube-scheduler driver implements as the API server would.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from extender.costs import CostTables
from extender.eligibility import eligible
from extender.scoring import raw_costs
from extender.settings import ExtenderSettings
from extender.state import ClusterState, load_vector
from extender.wishes import resolve
from kube.api import PODS, ApiError, DeletesObjects, KubeApi
from topology import labels
from topology.errors import KblError, ObjectError
from topology.pods import Pod

log = logging.getLogger(__name__)

#: The scheduling gate the webhook adds and the controller removes.
GATE = "kbl.io/narrow"
#: The extended resource that sends a pod to the extender when narrowing is on: kube-scheduler's
#: ``managedResources`` (``ignoredByScheduler: true``) lists it, so only the pods requesting it
#: call the extender; the webhook gives it to every kbl pod it does not gate, never to a gated one.
EXTENDER_RESOURCE = "kbl.io/extender"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
#: Weights of the preferred terms ranking a narrowed pod's candidates (the API's range, 1-100).
MIN_WEIGHT, MAX_WEIGHT = 1, 100
#: Owners remembered after one of their narrowed pods was deleted (LRU).
REMEMBERED_OWNERS = 10_000


# ------------------------------------------------------------------------------ pure rules
def gates_of(obj: Mapping[str, Any]) -> list[str]:
    """The names of a pod's scheduling gates."""
    gates = (obj.get("spec") or {}).get("schedulingGates") or []
    return [str(g.get("name")) for g in gates if isinstance(g, Mapping)]


def is_gated(obj: Mapping[str, Any]) -> bool:
    """True when the pod carries :data:`GATE`."""
    return GATE in gates_of(obj)


def controller_owner(obj: Mapping[str, Any]) -> str | None:
    """The uid of the pod's controller owner (``ownerReferences`` with ``controller: true``), if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") and ref.get("uid"):
            return str(ref["uid"])
    return None


def gate_patch(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSONPatch operations adding :data:`GATE` to a pod being created (the webhook's)."""
    if is_gated(obj):
        return []
    if (obj.get("spec") or {}).get("schedulingGates"):
        return [{"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": GATE}}]
    return [{"op": "add", "path": "/spec/schedulingGates", "value": [{"name": GATE}]}]


def tightened_terms(obj: Mapping[str, Any], names: Sequence[str]) -> list[dict[str, Any]]:
    """The pod's required node selector terms with ``metadata.name In names`` ANDed into each
    (terms are ORed), or one term with just that requirement when it has none."""
    requirement = {"key": "metadata.name", "operator": "In", "values": list(names)}
    affinity = ((obj.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    terms = (affinity.get(REQUIRED) or {}).get("nodeSelectorTerms") or []
    if not terms:
        return [{"matchFields": [requirement]}]
    out = []
    for term in terms:
        new = dict(term)
        new["matchFields"] = [*(term.get("matchFields") or []), requirement]
        out.append(new)
    return out


def candidate_weights(costs: Sequence[float]) -> list[int]:
    """The preferred-term weight of each candidate from its network cost: :data:`MAX_WEIGHT` for
    the cheapest, :data:`MIN_WEIGHT` for the dearest, linear in between (all
    :data:`MAX_WEIGHT` when they cost the same), as the extender's own score ranks them."""
    if not costs:
        return []
    low, high = min(costs), max(costs)
    if high - low <= 1e-9 * max(1.0, abs(high)):
        return [MAX_WEIGHT] * len(costs)
    span = MAX_WEIGHT - MIN_WEIGHT
    return [MIN_WEIGHT + round(span * (high - c) / (high - low)) for c in costs]


def preferred_terms(names: Sequence[str], weights: Sequence[int]) -> list[dict[str, Any]]:
    """Preferred node affinity terms ranking ``names`` by ``weights``: one term per distinct
    weight (heaviest first), ``matchFields metadata.name In`` its nodes. kube-scheduler's
    NodeAffinity score sums the weights of the terms a node matches, normalises to 0-100 over the
    feasible nodes and multiplies by its plugin weight (2 in the default profile), so the
    cheapest candidate leads by up to 200 points with no extender call."""
    by_weight: dict[int, list[str]] = {}
    for name, weight in zip(names, weights, strict=True):
        by_weight.setdefault(int(weight), []).append(name)
    return [
        {"weight": w, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": by_weight[w]}]}}
        for w in sorted(by_weight, reverse=True)
    ]


def release_patch(obj: Mapping[str, Any], names: Sequence[str] | None, weights: Sequence[int] | None = None) -> dict[str, Any]:
    """The one merge patch releasing a gated pod: :data:`GATE` removed (other gates kept) and,
    with ``names``, the required terms tightened to them, the annotation
    :data:`topology.labels.NARROWED` and, with ``weights``, preferred terms ranking them
    (:func:`preferred_terms`, after the pod's own, which a merge patch would otherwise drop: it
    replaces lists); ``resourceVersion`` as precondition."""
    remaining = [g for g in (obj.get("spec") or {}).get("schedulingGates") or [] if not (isinstance(g, Mapping) and g.get("name") == GATE)]
    spec: dict[str, Any] = {"schedulingGates": remaining or None}
    if names:
        node_affinity: dict[str, Any] = {REQUIRED: {"nodeSelectorTerms": tightened_terms(obj, names)}}
        if weights:
            own = (((obj.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(PREFERRED) or []
            node_affinity[PREFERRED] = [*own, *preferred_terms(names, weights)]
        spec["affinity"] = {"nodeAffinity": node_affinity}
    patch: dict[str, Any] = {"spec": spec}
    metadata: dict[str, Any] = {}
    if names:
        metadata["annotations"] = {labels.NARROWED: str(len(names))}
    version = (obj.get("metadata") or {}).get("resourceVersion")
    if version:
        metadata["resourceVersion"] = version
    if metadata:
        patch["metadata"] = metadata
    return patch


def _only_additions(old: Sequence[Any], new: Sequence[Any]) -> bool:
    return len(new) >= len(old) and list(new[: len(old)]) == list(old)


def mutation_error(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """Why the API server would reject updating pod ``old`` to ``new`` (``None``: accepted).

    The rules of pod updates this controller relies on (PodSchedulingReadiness and KEP-3838,
    GA in 1.30): ``schedulingGates`` may only lose entries, never gain; while ``old`` is gated,
    ``nodeSelector`` may only gain keys and the required node affinity may be set when it had
    no terms, else each existing term may only gain requirements (same number of terms,
    existing ``matchExpressions``/``matchFields`` unchanged), and the *preferred* node affinity
    terms may change in any way (KEP-3838: "all updates are allowed", preferred terms are not
    authoritative); an ungated pod's scheduling directives are immutable, preferred terms
    included. Any other spec change is rejected (left out here: the fields
    that are mutable on every pod, such as container images and tolerations additions).
    """
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    old_gates, new_gates = gates_of(old), gates_of(new)
    if any(g not in old_gates for g in new_gates):
        return "spec.schedulingGates: Forbidden: only deletion is allowed, but found new scheduling gate"
    directives = ("schedulingGates", "nodeSelector", "affinity")
    if {k: v for k, v in old_spec.items() if k not in directives} != {k: v for k, v in new_spec.items() if k not in directives}:
        return "spec: Forbidden: pod updates may not change fields other than the scheduling directives of a gated pod"
    old_sel, new_sel = old_spec.get("nodeSelector") or {}, new_spec.get("nodeSelector") or {}
    old_aff = (old_spec.get("affinity") or {}).get("nodeAffinity") or {}
    new_aff = (new_spec.get("affinity") or {}).get("nodeAffinity") or {}
    if not old_gates:
        if old_sel != new_sel or old_aff != new_aff:
            return "spec: Forbidden: scheduling directives are immutable once a pod has no scheduling gates"
        return None
    if any(old_sel.get(k) != v for k, v in old_sel.items()) or any(k not in new_sel for k in old_sel):
        return "spec.nodeSelector: Invalid value: only additions to spec.nodeSelector are allowed"
    old_terms = (old_aff.get(REQUIRED) or {}).get("nodeSelectorTerms") or []
    new_req = new_aff.get(REQUIRED)
    if old_terms:
        new_terms = (new_req or {}).get("nodeSelectorTerms") or []
        if len(new_terms) != len(old_terms):
            return f"spec.affinity.nodeAffinity.{REQUIRED}: Invalid value: terms may not be added or removed"
        for was, now in zip(old_terms, new_terms, strict=True):
            for part in ("matchExpressions", "matchFields"):
                if not _only_additions(was.get(part) or [], now.get(part) or []):
                    return f"spec.affinity.nodeAffinity...nodeSelectorTerms.{part}: Invalid value: only additions are allowed"
    return None


# ------------------------------------------------------------------------------ candidates
@dataclass(frozen=True, slots=True)
class Candidates:
    """The nodes a pod is narrowed to (cheapest first) and the widest tier they reach."""

    names: tuple[str, ...]
    ids: tuple[int, ...]
    tier: str
    #: Each candidate's network cost for the pod (the extender's :meth:`~extender.costs.CostTables.cost_at`).
    costs: tuple[float, ...] = ()


TIERS = ("holders", "racks", "zones", "cluster")


class DomainIndex:
    """The node ids of each rack and zone, per published domain arrays
    (:meth:`~topology.clusters.Cluster.domain_arrays`, replaced on every topology change): a
    pool of nodes is one gather of a per-domain mask over the node ids and one ``flatnonzero``
    (a handful of numpy calls whatever the number of domains, instead of one slice per domain)."""

    def __init__(self) -> None:
        self._of: tuple[Any, ...] | None = None
        self._widths: list[int] = []

    def nodes_of(self, state: ClusterState, level: int, domains: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Sorted node ids in ``domains`` of ``level`` (1: racks, 2: zones)."""
        arrays = state.cluster.domain_arrays()
        if self._of is None or any(a is not b for a, b in zip(arrays[:2], self._of, strict=True)):
            # one slot past the largest domain id: never set, so the ids of no domain (-1) land on it
            self._widths = [int(ids.max(initial=-1)) + 2 for ids in arrays[:2]]
            self._of = tuple(arrays[:2])
        of, width = arrays[level - 1], self._widths[level - 1]
        domains = domains[domains < width - 1]
        if not domains.size:
            return np.zeros(0, dtype=np.int64)
        hit = np.zeros(width, dtype=bool)
        hit[domains] = True
        return np.flatnonzero(hit[of]).astype(np.int64, copy=False)


def choose(
    state: ClusterState,
    tables: CostTables,
    pod: Pod,
    reserved: np.ndarray[Any, Any],
    count: int,
    *,
    index: DomainIndex | None = None,
) -> Candidates | None:
    """The ``count`` cheapest nodes with room for ``pod`` (module docstring, step 2), or ``None``
    when the pod has no usable preferred wish or no node has room. Call under ``state.lock``.

    ``reserved`` is the load (``[cpu, memory, pods]`` per node id) of pods released to a node
    set but not bound yet; rows past its length count as zero.
    """
    wish = resolve(state.cluster, pod)
    if not wish.usable or wish.key is None or wish.required:
        return None
    cluster = state.cluster
    sums = cluster.level_sums(wish.key, wish.shards)  # O(requested pieces)
    index = index or DomainIndex()
    # Widen tier by tier: the nodes of racks holding a requested piece (holders included), then
    # of such zones, then every node; each pool ranked by the pod's network cost at its ids
    # only (O(pool), no vector over every node) until one has ``count`` nodes with room.
    chosen = None
    within: np.ndarray[Any, Any] | None = None
    costs: np.ndarray[Any, Any] | None = None
    for level in (1, 2):  # the zone pool is built only when the racks' lacks room
        pool = index.nodes_of(state, level, np.flatnonzero(sums.within[level] > 0))
        if pool.size:
            # one gather of the pool's byte table gives both the ranking and the candidates' rows
            table = cluster.level_bytes_at(wish.key, wish.shards, pool)
            pool_costs = raw_costs(table, state.settings.costs)
            order = np.argsort(pool_costs, kind="stable")
            picked = order[_with_room(state, pool[order], pod, reserved, count)]
            chosen, within, costs = pool[picked], table[picked], pool_costs[picked]
            if chosen.size >= count:
                break
    if chosen is None or chosen.size < count:
        ranked = tables.cost_order(wish)[0]
        chosen = ranked[_with_room(state, ranked, pod, reserved, count)]
        within = cluster.level_bytes_at(wish.key, wish.shards, chosen)
        costs = raw_costs(within, state.settings.costs)
    if not chosen.size or within is None or costs is None:
        return None
    tier = "cluster"
    # bytes each candidate reads within its node, rack, zone: every candidate has some at the
    # tier's level (one cumulative sum over the three columns, one test per column)
    reached: np.ndarray[Any, Any] = np.all(np.cumsum(within[:, :3], axis=1) > 0, axis=0)
    reach = [bool(r) for r in reached]
    for level, name in enumerate(TIERS[:3]):
        if reach[level]:
            tier = name
            break
    ids = chosen.tolist()
    name_of = state.cluster.name_of
    return Candidates(tuple(name_of(i) for i in ids), tuple(ids), tier, tuple(costs.tolist()))


def _with_room(
    state: ClusterState, ranked: np.ndarray[Any, Any], pod: Pod, reserved: np.ndarray[Any, Any], count: int
) -> np.ndarray[Any, Any]:
    """The positions in ``ranked`` of its first ``count`` node ids that are present, eligible for
    ``pod`` (:func:`extender.eligibility.eligible`: ready, schedulable, tolerated, its
    ``nodeSelector``, kbl's dedicated groups) and have room for it after ``reserved``, walked a
    chunk at a time (O(count), not O(nodes))."""
    request = load_vector(pod.requests)
    picked: list[int] = []
    chunk = max(4 * count, 256)
    for start in range(0, int(ranked.size), chunk):
        ids = ranked[start : start + chunk].astype(np.int64, copy=False)
        used, alloc = state.load(ids)
        if ids.size and int(ids.max()) < reserved.shape[0]:  # the usual case: one gather
            used += reserved.take(ids, axis=0)
        else:
            inside = ids < reserved.shape[0]
            used[inside] += reserved[ids[inside]]
        # eligible: ready, schedulable, tolerated, selector, and kbl's dedicated-group rule, which
        # no extender filter applies to a narrowed pod any more (it never calls the extender)
        room = eligible(state, pod, ids) & state.present_at(ids) & np.all(alloc - used >= request, axis=1)
        picked.extend((np.flatnonzero(room)[: count - len(picked)] + start).tolist())
        if len(picked) >= count:
            break
    return np.asarray(picked, dtype=np.int64)


# ------------------------------------------------------------------------------ the controller
class PodWriter(Protocol):
    """The two writes the controller makes (the API server's, or a driver's that plays it)."""

    def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        """A JSON merge patch of a pod (``metadata.resourceVersion`` in it is a precondition)."""
        ...

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod (its owner recreates it); a gone pod is fine."""
        ...


class KubePodWriter:
    """:class:`PodWriter` over the Kubernetes API (RBAC: ``pods`` ``patch`` and ``delete``)."""

    def __init__(self, api: DeletesObjects) -> None:
        self.api = api

    def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.api.patch(PODS, name, patch, namespace=namespace)

    def delete_pod(self, namespace: str, name: str) -> None:
        self.api.delete(PODS, name, namespace=namespace)


@dataclass(slots=True)
class _Released:
    namespace: str
    name: str
    owner: str | None
    ids: tuple[int, ...]
    at: float
    reserved_on: int
    load: np.ndarray[Any, Any]
    id_array: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass(slots=True)
class StepReport:
    """What one :meth:`GateController.step` did."""

    narrowed: int = 0
    released_unchanged: int = 0
    deleted: int = 0
    conflicts: int = 0
    tiers: dict[str, int] = field(default_factory=dict)


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    return f"{namespace}/{name}", namespace, name


class GateController:
    """Narrows gated pods and unstrands released ones (module docstring), acting through ``writer``.

    Parameters
    ----------
    state:
        The extender's cache (nodes, free room, holders); read under its lock.
    writer:
        Where patches and deletes go.
    settings:
        ``narrow_candidates``, ``narrow_release_timeout_s``.
    leading:
        True while this controller may act (its :class:`~kube.leading.LeaderElector` leads);
        :meth:`step` does nothing otherwise.
    alive:
        True while *some* controller is alive (the Lease was seen renewed within its duration):
        what the webhook asks before gating. Defaults to ``leading``.
    clock:
        Seconds (monotonic, or a simulated clock).
    """

    def __init__(
        self,
        state: ClusterState,
        writer: PodWriter,
        settings: ExtenderSettings | None = None,
        *,
        leading: Callable[[], bool] = lambda: True,
        alive: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.writer = writer
        self.settings = settings or state.settings
        self.leading = leading
        self._alive = alive or leading
        self.clock = clock
        self.tables = CostTables(state)
        self.index = DomainIndex()
        self._lock = threading.Lock()
        self._gated: dict[str, Mapping[str, Any]] = {}
        self._released: dict[str, _Released] = {}
        self._owners: OrderedDict[str, None] = OrderedDict()
        self._reserved = np.zeros((0, 3), dtype=np.float64)
        self._flat: tuple[tuple[str, ...], np.ndarray[Any, Any], np.ndarray[Any, Any]] | None = None
        #: The last candidates check: (released keys, the cache's node_version, its presence array, lost keys).
        self._lost: tuple[tuple[str, ...], int, Any, set[str]] | None = None
        self.totals = StepReport()
        #: Set when a gated pod is seen: the runner steps at once instead of at its next period.
        self.wake = threading.Event()

    # ------------------------------------------------------------------ what others ask
    def alive(self) -> bool:
        """True while a gate controller is alive: the webhook gates only then."""
        return self._alive()

    def remembers(self, owner: str | None) -> bool:
        """True when a narrowed pod of ``owner`` was deleted (its replacements are not narrowed)."""
        with self._lock:
            return owner is not None and owner in self._owners

    def should_gate(self, obj: Mapping[str, Any]) -> bool:
        """Whether the webhook gates this pod (it already decided it is a preferred data pod of
        the kbl scheduler): a controller is alive, the pod has a controller owner, and that
        owner lost no narrowed pod."""
        owner = controller_owner(obj)
        return owner is not None and not self.remembers(owner) and self.alive()

    @property
    def waiting(self) -> int:
        """Gated pods seen and not yet released, plus released pods not yet bound."""
        with self._lock:
            return len(self._gated) + len(self._released)

    # ------------------------------------------------------------------ the pod watch
    def observe(self, kind: str, obj: Mapping[str, Any]) -> None:
        """A pod watch event (``ADDED``/``MODIFIED``/``DELETED``); keeps only gated pods and the
        pods this controller released (others are dropped at once)."""
        try:
            key, _namespace, _name = _key(obj)
        except (AttributeError, TypeError):
            return
        with self._lock:
            if kind == "DELETED" or (obj.get("spec") or {}).get("nodeName"):
                self._gated.pop(key, None)
                self._forget(key)
            elif is_gated(obj):
                self._gated[key] = obj
                self.wake.set()
            else:
                self._gated.pop(key, None)  # ungated by someone else (by hand): nothing to do
                if key in self._released and not gates_of(obj) and self._released[key].at == math.inf:
                    self._released[key].at = self.clock()  # another controller's gate went: the timeout starts

    def relist(self, items: Iterable[Mapping[str, Any]]) -> None:
        """A full pod list (after a ``410 Gone``): gated pods are exactly the gated ones listed;
        released pods no longer listed are forgotten."""
        listed: set[str] = set()
        with self._lock:
            self._gated.clear()
        for obj in items:
            listed.add(_key(obj)[0])
            self.observe("ADDED", obj)
        with self._lock:
            for key in [k for k in self._released if k not in listed]:
                self._forget(key)

    def _forget(self, key: str) -> None:
        released = self._released.pop(key, None)
        if released is not None and released.reserved_on >= 0:
            self._reserved[released.reserved_on] -= released.load

    def _reserve(self, node_id: int, load: np.ndarray[Any, Any]) -> None:
        if node_id >= self._reserved.shape[0]:
            grown = np.zeros((max(node_id + 1, 2 * self._reserved.shape[0], 64), 3), dtype=np.float64)
            grown[: self._reserved.shape[0]] = self._reserved
            self._reserved = grown
        self._reserved[node_id] += load

    # ------------------------------------------------------------------ the work
    def step(self) -> StepReport:
        """Narrow every gated pod, then delete released pods that are stuck or lost a node."""
        report = StepReport()
        if not self.leading():
            return report
        with self._lock:
            gated = list(self._gated.items())
        for key, obj in gated:
            self._release(key, obj, report)
        self._unstrand(report)
        if not (report.narrowed or report.released_unchanged or report.deleted or report.conflicts):
            return report
        for name in ("narrowed", "released_unchanged", "deleted", "conflicts"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(report, name))
        for tier, count in report.tiers.items():
            self.totals.tiers[tier] = self.totals.tiers.get(tier, 0) + count
        return report

    def _release(self, key: str, obj: Mapping[str, Any], report: StepReport) -> None:
        _, namespace, name = _key(obj)
        owner = controller_owner(obj)
        candidates: Candidates | None = None
        pod: Pod | None = None
        if not self.remembers(owner):
            try:
                pod = Pod.from_object(obj)
                with self.state.lock, self._lock:
                    candidates = choose(self.state, self.tables, pod, self._reserved, self.settings.narrow_candidates, index=self.index)
            except (ObjectError, KblError):
                log.exception("narrowing: cannot narrow %s; released unchanged", key)
        if candidates is None:
            patch = release_patch(obj, None)
        else:
            patch = release_patch(obj, candidates.names, candidate_weights(candidates.costs))
        try:
            self.writer.patch_pod(namespace, name, patch)
        except ApiError as exc:  # 409: a newer version is on its way through the watch; 404: gone
            report.conflicts += 1
            if exc.status == 404:
                with self._lock:
                    self._gated.pop(key, None)
            log.info("narrowing: patching %s failed (%s); retried on the next step", key, exc)
            return
        with self._lock:
            self._gated.pop(key, None)
            if candidates is None or pod is None:
                report.released_unchanged += 1
                return
            load = load_vector(pod.requests)
            first = candidates.ids[0]
            self._reserve(first, load)
            # the timeout runs from the moment the pod is schedulable: not while another gate holds it
            at = math.inf if patch["spec"]["schedulingGates"] else self.clock()
            ids = np.asarray(candidates.ids, dtype=np.int64)
            self._released[key] = _Released(namespace, name, owner, candidates.ids, at, first, load, ids)
        report.narrowed += 1
        report.tiers[candidates.tier] = report.tiers.get(candidates.tier, 0) + 1

    def _unstrand(self, report: StepReport) -> None:
        now = self.clock()
        timeout = self.settings.narrow_release_timeout_s
        with self._lock:
            released = list(self._released.items())
        if not released:
            return
        keys = tuple(key for key, _ in released)
        if self._flat is None or self._flat[0] != keys:  # rebuilt only when the released set changes
            arrays = [r.id_array if r.id_array.size == len(r.ids) else np.asarray(r.ids, dtype=np.int64) for _, r in released]
            sizes = np.array([a.size for a in arrays], dtype=np.int64)
            self._flat = (keys, np.concatenate(arrays), np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64))
        _keys, ids, starts = self._flat
        with self.state.lock:  # every released pod's candidates checked in one pass
            present = self.state.cluster.domain_arrays()[3]
            at = (keys, self.state.node_version, present)
            if self._lost is not None and self._lost[0] == at[0] and self._lost[1] == at[1] and self._lost[2] is present:
                lost = self._lost[3]  # no node event and the same released pods since the last check
            else:
                bad = (~(self.state.present_at(ids) & self.state.usable(ids))).astype(np.int64)
                lost_per = np.add.reduceat(bad, starts).tolist()
                lost = {key for key, n in zip(keys, lost_per, strict=True) if n > 0}
                self._lost = (*at, lost)
        for key, r in released:
            if key not in lost and now - r.at < timeout:
                continue
            why = "a candidate node left" if key in lost else f"unscheduled {now - r.at:.0f} s after narrowing"
            with self._lock:
                self._forget(key)
                if r.owner is None:
                    continue  # never gated (the webhook gates owned pods only); nothing recreates it
                self._owners[r.owner] = None
                self._owners.move_to_end(r.owner)
                while len(self._owners) > REMEMBERED_OWNERS:
                    self._owners.popitem(last=False)
            try:
                self.writer.delete_pod(r.namespace, r.name)
            except ApiError as exc:
                log.warning("narrowing: deleting %s/%s failed: %s", r.namespace, r.name, exc)
                continue
            report.deleted += 1
            log.info("narrowing: deleted %s/%s (%s); its owner recreates it unnarrowed", r.namespace, r.name, why)


# ------------------------------------------------------------------------------ the runner
def lease_alive(elector: Any, clock: Callable[[], float] = time.monotonic) -> Callable[[], bool]:
    """``alive`` for :class:`GateController` from a :class:`~kube.leading.LeaderElector`: we lead,
    or we saw another holder's record change less than a lease duration ago (its renewals)."""

    def alive() -> bool:
        if elector.is_leader():
            return True
        return bool(elector.holder) and clock() - elector.observed_at < elector.settings.lease_duration_s

    return alive


def run_controller(controller: GateController, done: threading.Event, period_s: float = 1.0) -> None:
    """The leader's loop until ``done``: :meth:`GateController.step` as soon as a gated pod is
    seen (:attr:`GateController.wake`), and every ``period_s`` (timeouts, lost nodes, retries)."""
    while not done.is_set():
        deadline = time.monotonic() + period_s
        while not done.is_set() and not controller.wake.is_set() and time.monotonic() < deadline:
            controller.wake.wait(min(0.2, max(0.0, deadline - time.monotonic())))  # ``done`` is seen within 0.2 s
        controller.wake.clear()
        if done.is_set():
            break
        try:
            controller.step()
        except Exception:
            log.exception("narrowing: step failed; retried")


def feed(controller: GateController, events: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """Hand pod watch events to the controller (tests and harnesses)."""
    for kind, obj in events:
        controller.observe(kind, obj)


def writer_for(api: KubeApi) -> PodWriter:
    """The controller's writer over an API that can delete.

    Raises
    ------
    KblError
        If ``api`` cannot delete pods.
    """
    if not isinstance(api, DeletesObjects):
        raise KblError("narrowing needs an API client that can delete pods")
    return KubePodWriter(api)


#: The Lease the extender replicas elect the gate controller with.
LEASE_NAME = "kbl-narrowing"


def start(
    state: ClusterState,
    api: KubeApi,
    stop: threading.Event,
    *,
    informer_settings: Any = None,
    election: Any = None,
    period_s: float = 1.0,
) -> tuple[GateController, list[Any]]:
    """Run the gate controller in ``kbl serve``: a leader election on :data:`LEASE_NAME` (one
    replica narrows, the others stand by and still answer :meth:`GateController.alive` from
    the Lease they observe), and a pod watch of its own (raw objects: the extender's informer
    types pods and drops their gates) feeding :meth:`GateController.observe`.

    ``election``: the :class:`~kube.leading.LeaderElectionSettings` (default: :data:`LEASE_NAME`
    in the pod's namespace, client-go's 15 / 10 / 2 s); ``period_s``: seconds between steps.
    Returns the controller (for the webhook) and the informers to stop.
    """
    from kube.leading import LeaderElector, settings_from
    from kube.watching import Informer

    if election is None:
        election = settings_from(
            lease_name=LEASE_NAME, namespace=None, identity="", lease_duration_s=15.0, renew_deadline_s=10.0, retry_period_s=2.0
        )
    elector = LeaderElector(api, election)
    controller = GateController(state, writer_for(api), leading=elector.is_leader, alive=lease_alive(elector))

    def on_event(event: Any) -> None:
        if isinstance(event.object, Mapping):
            controller.observe(event.type, event.object)

    def on_relist(items: Iterable[Mapping[str, Any]]) -> None:
        controller.relist(items)

    informer = Informer(api, PODS, on_event=on_event, on_relist=on_relist, settings=informer_settings).start()

    def campaign() -> None:
        while not stop.is_set():
            elector.run(stop, lambda done: run_controller(controller, done, period_s))

    thread = threading.Thread(target=campaign, name="narrowing", daemon=True)
    thread.start()
    return controller, [informer]
