"""A kube-scheduler driver: schedules a stream of pods the way kube-scheduler does with extenders.

The driver reproduces, on a simulated clock, the parts of ``pkg/scheduler/schedule_one.go`` and
``pkg/scheduler/extender.go`` that decide where a pod lands when a scheduler extender is
configured (read from upstream for behaviour, written here from scratch):

1. **In-tree filters** on every node, in kube-scheduler's node order (zones interleaved, the
   ``NodeTree`` order) starting at a rotating ``nextStartNodeIndex``: NodeUnschedulable,
   TaintToleration (``NoSchedule``/``NoExecute``), NodeAffinity's ``nodeSelector``, and
   NodeResourcesFit (the pod's effective request against allocatable minus the requests of the
   bound, active pods). The scan stops after :func:`num_feasible_nodes_to_find` feasible nodes,
   with the ``percentageOfNodesToScore`` of the pod's profile (``spec.schedulerName``; the
   profile's own value, else the global one: several profiles share one kube-scheduler, its
   node order, start index and extenders); the start index then advances by the number of nodes
   processed (feasible + failed). NodeAffinity's PreFilter first narrows the nodes evaluated to
   the names of a ``matchFields metadata.name In`` required term.
2. **Extender filter**, in configuration order, each on the survivors, skipping an extender not
   *interested* in the pod (``managedResources`` set and none of them in the requests or limits
   of its containers or init containers: upstream ``IsInterested``; such an extender is not
   asked to prioritize or bind either, and NodeResourcesFit ignores its ``ignoredByScheduler``
   resources): ``NodeNames`` only when
   ``nodeCacheCapable``, else the full ``Nodes`` list of real node objects. A non-empty
   ``Error``, a transport error or a non-200 fails the attempt (unless ``ignorable``); a reply
   naming a node that was not offered is an error; ``FailedNodes`` and
   ``FailedAndUnresolvableNodes`` are recorded (the latter wins when a node is in both).
3. **One feasible node**: chosen directly, no scoring and no prioritize call.
4. **Score**: NodeResourcesFit (LeastAllocated) and NodeResourcesBalancedAllocation at their
   default weight 1, each 0..100 (see :func:`least_allocated_score` and
   :func:`balanced_allocation_score`), and NodeAffinity's preferred terms (the sum of the
   weights of the terms a node matches, normalised to 0..100 over the scored nodes by
   DefaultNormalizeScore, times its weight 2 in the default profile). The other default score
   plugins add the same amount to every node for the pods of our traces (no ``PreferNoSchedule``
   taints, no spread constraints, no volumes), so they cannot change a choice and are left out. Then
   every extender's ``prioritize``: ``score x weight x (MaxNodeScore / MaxExtenderPriority)``
   (= ``x 10``) added without clamping; prioritize errors are ignored (the extender adds nothing).
5. **selectHost**: the highest total, ties broken uniformly at random by reservoir sampling
   (seeded).
6. **Bind**: through the first extender with a ``bindVerb`` that is interested in the pod (so
   its cache sees the assignment), else the default binder. The driver then reports the pod's life to an
   ``on_pod_event`` hook exactly as an informer would see it (ADDED pending, MODIFIED bound,
   MODIFIED Succeeded, DELETED), which is how a harness feeds an extender running from a
   snapshot with no API server. Pods created at the same instant (a Job's burst) are all
   announced (ADDED) before the first of them is scheduled, as a watch delivers them while the
   scheduler works through its queue.

Pods run for their duration on the simulated clock and release their resources. A pod that finds
no node is *unschedulable*: it is retried when a running pod finishes (the AssignedPodDelete
cluster event), but not before its backoff (1 s doubling to 10 s) expires, and at the latest after
5 minutes (the unschedulable-pods flush).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson

from topology.errors import ExtenderCallError, KblError
from topology.nodes import Node, Resources
from topology.pods import Pod

#: kube-scheduler constants (schedule_one.go, framework, extender/v1).
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
MAX_NODE_SCORE = 100
MAX_EXTENDER_PRIORITY = 10
#: Requests assumed by the score plugins for a container that asks for nothing (util.GetNonzeroRequests).
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

PodEventHook = Callable[[str, dict[str, Any]], None]


# ---------------------------------------------------------------------------- the rules, pure
def num_feasible_nodes_to_find(percentage_of_nodes_to_score: int, num_all_nodes: int) -> int:
    """How many feasible nodes kube-scheduler looks for before it stops filtering.

    Below 100 nodes every node is examined. Otherwise the percentage is the configured
    ``percentageOfNodesToScore``; ``0`` (unset) means adaptive: ``50 - numAllNodes / 125``
    (integer division), at least 5. The count is ``numAllNodes * percentage / 100`` (integer),
    at least 100.

    Examples
    --------
    >>> num_feasible_nodes_to_find(0, 5000)
    500
    >>> num_feasible_nodes_to_find(100, 5000)
    5000
    """
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    percentage = percentage_of_nodes_to_score
    if percentage == 0:
        percentage = max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    count = num_all_nodes * percentage // 100
    return max(count, MIN_FEASIBLE_NODES_TO_FIND)


def least_allocated_score(requested: Sequence[int], allocatable: Sequence[int], weights: Sequence[int] = (1, 1)) -> int:
    """NodeResourcesFit's LeastAllocated score, 0..100.

    Per resource ``(allocatable - requested) * 100 // allocatable`` (0 when nothing is
    allocatable or the request exceeds it), then the weighted mean with integer division.
    ``requested`` already includes the pod being scheduled.
    """
    total = 0
    for req, alloc, weight in zip(requested, allocatable, weights, strict=True):
        if alloc == 0 or req > alloc:
            continue
        total += (alloc - req) * MAX_NODE_SCORE // alloc * weight
    return total // sum(weights)


def balanced_allocation_score(requested: Sequence[int], allocatable: Sequence[int]) -> int:
    """NodeResourcesBalancedAllocation's score, 0..100: ``int((1 - std) * 100)``.

    ``std`` is the standard deviation of the requested fractions (each capped at 1); for two
    resources it is ``|f1 - f2| / 2``.
    """
    fractions = [min(req / alloc, 1.0) if alloc else 1.0 for req, alloc in zip(requested, allocatable, strict=True)]
    if len(fractions) == 2:
        std = abs(fractions[0] - fractions[1]) / 2
    else:
        mean = sum(fractions) / len(fractions)
        std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
    return int((1 - std) * MAX_NODE_SCORE)


def extender_contribution(score: int, weight: int) -> int:
    """An extender score's share of a node's total: ``score x weight x (100 / 10)``, unclamped."""
    return score * weight * (MAX_NODE_SCORE // MAX_EXTENDER_PRIORITY)


def select_host(scored: Sequence[tuple[str, int]], rng: random.Random) -> str:
    """The node with the highest total score; ties broken uniformly by reservoir sampling.

    Raises
    ------
    KblError
        If ``scored`` is empty.
    """
    if not scored:
        raise KblError("select_host: empty priority list")
    selected, best = scored[0]
    ties = 1
    for name, score in scored[1:]:
        if score > best:
            selected, best, ties = name, score, 1
        elif score == best:
            ties += 1
            if rng.randrange(ties) == 0:
                selected = name
    return selected


def node_tree_order(nodes: Sequence[Node]) -> list[Node]:
    """Nodes in kube-scheduler's snapshot order: one node of each zone in turn (``NodeTree.list``).

    Zones keep the order in which their first node appears; nodes keep their order within a zone.
    """
    zones: dict[str, list[Node]] = {}
    for node in nodes:
        zones.setdefault(node.zone, []).append(node)
    out: list[Node] = []
    depth = 0
    while len(out) < len(nodes):
        for members in zones.values():
            if depth < len(members):
                out.append(members[depth])
        depth += 1
    return out


# ---------------------------------------------------------------------- NodeAffinity, pure
#: The default profile's weight of the NodeAffinity score plugin.
NODE_AFFINITY_WEIGHT = 2


@dataclass(frozen=True, slots=True)
class NodeAffinity:
    """A pod's ``spec.affinity.nodeAffinity`` as kube-scheduler's NodeAffinity plugin reads it.

    ``required`` are the ``nodeSelectorTerms`` (ORed; ``None`` when absent); ``preferred`` the
    ``(weight, term)`` pairs; ``names`` the PreFilter result: when every required term has a
    ``matchFields`` ``metadata.name In`` requirement, only the union of those names is evaluated.
    """

    required: tuple[Mapping[str, Any], ...] | None = None
    preferred: tuple[tuple[int, Mapping[str, Any]], ...] = ()
    names: frozenset[str] | None = None

    @classmethod
    def of(cls, pod_obj: Mapping[str, Any]) -> NodeAffinity:
        affinity = ((pod_obj.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
        required_raw = (affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")
        required = tuple(required_raw) if required_raw is not None else None
        preferred_raw = affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
        preferred = tuple((int(p.get("weight", 0)), p.get("preference") or {}) for p in preferred_raw)
        names: set[str] | None = None
        if required:
            names = set()
            for term in required:
                found = [
                    set(f.get("values") or ())
                    for f in term.get("matchFields") or ()
                    if f.get("key") == "metadata.name" and f.get("operator") == "In"
                ]
                if not found:
                    names = None
                    break
                names |= set.intersection(*found)
        return cls(required, preferred, None if names is None else frozenset(names))


def _requirement_holds(values: Sequence[str], operator: str, have: str | None) -> bool:
    if operator == "In":
        return have is not None and have in values
    if operator == "NotIn":
        return have is None or have not in values
    if operator == "Exists":
        return have is not None
    if operator == "DoesNotExist":
        return have is None
    if operator in ("Gt", "Lt") and have is not None and values:
        try:
            return int(have) > int(values[0]) if operator == "Gt" else int(have) < int(values[0])
        except ValueError:
            return False
    return False


def term_matches(node: Node, term: Mapping[str, Any]) -> bool:
    """One ``nodeSelectorTerm``: every matchExpression (labels) and matchField (name) holds.

    An empty term matches nothing, as upstream.
    """
    expressions = term.get("matchExpressions") or ()
    fields = term.get("matchFields") or ()
    if not expressions and not fields:
        return False
    for req in expressions:
        if not _requirement_holds(req.get("values") or (), req.get("operator", ""), node.labels.get(req.get("key", ""))):
            return False
    for req in fields:
        have = node.name if req.get("key") == "metadata.name" else None
        if not _requirement_holds(req.get("values") or (), req.get("operator", ""), have):
            return False
    return True


def preferred_score(node: Node, affinity: NodeAffinity) -> int:
    """The NodeAffinity score before normalisation: the weights of the matching preferred terms."""
    return sum(weight for weight, term in affinity.preferred if term_matches(node, term))


# ------------------------------------------------------------------------------ the extender
@dataclass(frozen=True, slots=True)
class ManagedResource:
    """One ``managedResources`` entry of an extender: an extended resource name, and
    ``ignoredByScheduler`` (NodeResourcesFit then leaves it out of its fit check)."""

    name: str
    ignored_by_scheduler: bool = False


def requested_resource_names(pod_obj: Mapping[str, Any]) -> set[str]:
    """The resource names in the ``requests`` or ``limits`` of the pod's containers and init
    containers (what ``HTTPExtender.IsInterested`` looks at)."""
    spec = pod_obj.get("spec") or {}
    names: set[str] = set()
    for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        resources = (container.get("resources") if isinstance(container, Mapping) else None) or {}
        names.update(resources.get("requests") or ())
        names.update(resources.get("limits") or ())
    return names


@dataclass(frozen=True, slots=True)
class ExtenderConfig:
    """One ``extenders:`` stanza of a KubeSchedulerConfiguration (the fields the driver uses).

    ``managed_resources``: with none, every pod is sent to the extender; with some, only the
    pods whose containers or init containers request or limit one of them (upstream
    ``HTTPExtender.IsInterested``): the others never reach its filter, prioritize or bind.
    """

    url_prefix: str
    filter_verb: str = "filter"
    prioritize_verb: str = "prioritize"
    bind_verb: str = ""
    weight: int = 1
    node_cache_capable: bool = False
    ignorable: bool = False
    http_timeout_s: float = 5.0
    managed_resources: tuple[ManagedResource, ...] = ()

    def __post_init__(self) -> None:
        if self.prioritize_verb and self.weight <= 0:
            raise KblError("extender weight must be > 0 when prioritizeVerb is set")


@dataclass(frozen=True, slots=True)
class FilterReply:
    """What an extender filter left: the surviving node names and the failure maps."""

    names: list[str]
    failed: dict[str, str]
    unresolvable: dict[str, str]


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """A reply field looked up case-insensitively, as Go's ``encoding/json`` decodes."""
    if name in obj:
        return obj[name]
    lower = name.lower()
    for key, value in obj.items():
        if key.lower() == lower:
            return value
    return None


class ExtenderClient:
    """kube-scheduler's HTTPExtender: builds the exact payloads and applies the reply rules.

    ``encoded_nodes`` maps a node name to its JSON object, encoded once (the full ``Nodes`` list
    of a non-cache-capable request is built by joining those bytes). ``seconds`` accumulates the
    wall time spent in calls, the latency the extender adds to scheduling.
    """

    def __init__(self, config: ExtenderConfig, encoded_nodes: Mapping[str, bytes], client: httpx.Client | None = None) -> None:
        self.config = config
        self.encoded_nodes = encoded_nodes
        self.client = client or httpx.Client(timeout=config.http_timeout_s)
        self.seconds = 0.0
        self.calls = 0

    def close(self) -> None:
        self.client.close()

    def is_interested(self, pod_obj: Mapping[str, Any]) -> bool:
        """Upstream ``IsInterested``: no managed resources, or the pod requests or limits one."""
        managed = self.config.managed_resources
        if not managed:
            return True
        names = requested_resource_names(pod_obj)
        return any(m.name in names for m in managed)

    def _args(self, pod_json: bytes, names: Sequence[str]) -> bytes:
        if self.config.node_cache_capable:
            return b'{"Pod":' + pod_json + b',"Nodes":null,"NodeNames":' + orjson.dumps(list(names)) + b"}"
        items = b",".join(self.encoded_nodes[n] for n in names)
        return b'{"Pod":' + pod_json + b',"Nodes":{"metadata":{},"items":[' + items + b']},"NodeNames":null}'

    def _send(self, verb: str, body: bytes) -> Any:
        url = self.config.url_prefix.rstrip("/") + "/" + verb
        started = time.perf_counter()
        try:
            response = self.client.post(url, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise ExtenderCallError(f"{verb} at {url}: {exc}") from None
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1
        if response.status_code != 200:
            raise ExtenderCallError(f"failed {verb} with extender at URL {url}, code {response.status_code}")
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ExtenderCallError(f"{verb} at {url}: reply is not JSON: {exc}") from None

    def _not_offered(self, name: object) -> ExtenderCallError:
        prefix = self.config.url_prefix
        return ExtenderCallError(f"extender {prefix!r} claims a filtered node {name!r} which is not found in the input node list")

    def filter(self, pod_json: bytes, names: Sequence[str]) -> FilterReply:
        """Call ``filter`` on the offered nodes and apply kube-scheduler's reply rules.

        Raises
        ------
        ExtenderCallError
            Transport error, non-200, non-JSON, a non-empty ``Error``, or a returned node that
            was not offered.
        """
        if not self.config.filter_verb:
            return FilterReply(list(names), {}, {})
        reply = self._send(self.config.filter_verb, self._args(pod_json, names))
        if not isinstance(reply, dict):
            raise ExtenderCallError(f"filter reply is not an ExtenderFilterResult: {str(reply)[:200]}")
        error = _field(reply, "Error")
        if error:
            raise ExtenderCallError(f"filter: extender error: {error}")
        offered = set(names)
        out: list[str] = []
        reply_names = _field(reply, "NodeNames")
        reply_nodes = _field(reply, "Nodes")
        if self.config.node_cache_capable and reply_names is not None:
            for name in reply_names:
                if name not in offered:
                    raise self._not_offered(name)
                out.append(name)
        elif reply_nodes is not None:
            for item in _field(reply_nodes, "items") or []:
                name = (item.get("metadata") or {}).get("name") if isinstance(item, dict) else None
                if name not in offered:
                    raise self._not_offered(name)
                out.append(name)
        failed = dict(_field(reply, "FailedNodes") or {})
        unresolvable = dict(_field(reply, "FailedAndUnresolvableNodes") or {})
        return FilterReply(out, failed, unresolvable)

    def prioritize(self, pod_json: bytes, names: Sequence[str]) -> dict[str, int]:
        """Call ``prioritize``; returns ``{host: score}`` (scores as sent, not clamped).

        Raises
        ------
        ExtenderCallError
            On any failure; the caller ignores it, as kube-scheduler does.
        """
        if not self.config.prioritize_verb:
            return {}
        reply = self._send(self.config.prioritize_verb, self._args(pod_json, names))
        if not isinstance(reply, list):
            raise ExtenderCallError(f"prioritize reply is not a HostPriorityList: {str(reply)[:200]}")
        scores: dict[str, int] = {}
        for entry in reply:
            if isinstance(entry, dict) and "Host" in entry and "Score" in entry:  # the usual spelling, fast
                host, score = entry["Host"], entry["Score"]
            else:
                host = _field(entry, "Host") if isinstance(entry, dict) else None
                score = _field(entry, "Score") if isinstance(entry, dict) else None
            if not isinstance(host, str) or not isinstance(score, int):
                raise ExtenderCallError(f"prioritize: malformed HostPriority {entry!r}")
            scores[host] = scores.get(host, 0) + score
        return scores

    def bind(self, pod: Pod, node: str) -> None:
        """Call ``bind`` with an ExtenderBindingArgs.

        Raises
        ------
        ExtenderCallError
            On any failure or a non-empty ``Error``.
        """
        body = orjson.dumps({"PodName": pod.name, "PodNamespace": pod.namespace, "PodUID": pod.uid, "Node": node})
        reply = self._send(self.config.bind_verb, body)
        error = _field(reply, "Error") if isinstance(reply, dict) else "reply is not an ExtenderBindingResult"
        if error:
            raise ExtenderCallError(f"bind: extender error: {error}")


# ------------------------------------------------------------------------------- the scheduler
@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """Knobs of the simulated kube-scheduler.

    ``percentage_of_nodes_to_score`` is the global setting (0 = adaptive); ``profiles`` maps a
    profile's ``schedulerName`` to its own ``percentageOfNodesToScore``, which overrides the global
    one for the pods naming it in ``spec.schedulerName`` (a profile absent from the map, or a pod
    of an unlisted scheduler, uses the global value). Backoff follows ``podInitialBackoffSeconds``
    / ``podMaxBackoffSeconds``; unschedulable pods are flushed after ``unschedulable_flush_s`` at
    the latest. ``horizon_s`` bounds the simulated time. ``seed`` drives the tie-break.
    """

    percentage_of_nodes_to_score: int = 0
    profiles: Mapping[str, int] = field(default_factory=dict)
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 10.0
    unschedulable_flush_s: float = 300.0
    horizon_s: float = 7 * 24 * 3600.0
    fit_weight: int = 1
    balanced_weight: int = 1
    seed: int = 0

    def percentage_for(self, scheduler_name: str) -> int:
        """The ``percentageOfNodesToScore`` of a pod's profile (the profile's, else the global one)."""
        return self.profiles.get(scheduler_name, self.percentage_of_nodes_to_score)


@dataclass(frozen=True, slots=True)
class PodArrival:
    """A pod of a trace: its object, typed pod, arrival time and run time (seconds)."""

    obj: dict[str, Any]
    pod: Pod
    arrival_s: float
    duration_s: float


@dataclass(slots=True)
class Attempt:
    """One scheduling cycle: the chosen node, or why none."""

    node: str | None
    evaluated: int = 0
    feasible: int = 0
    offered: list[str] = field(default_factory=list)
    #: True when an extender was interested in the pod (``offered`` went to it).
    to_extenders: bool = False
    reason: str = ""
    failed: dict[str, str] = field(default_factory=dict)
    unresolvable: dict[str, str] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class PodOutcome:
    """What happened to one pod of the trace (or to a replacement its owner created).

    ``origin``: the trace pod a replacement stands for (``""``: the pod itself). ``offered``:
    node names offered to the extenders, summed over its attempts. ``deleted``: deleted before
    it ran (its owner recreated it).
    """

    key: str
    node: str | None = None
    start_s: float | None = None
    attempts: int = 0
    extender_s: float = 0.0
    origin: str = ""
    offered: int = 0
    deleted: bool = False


@dataclass(slots=True)
class RunResult:
    """All pods' outcomes and the driver's counters."""

    outcomes: dict[str, PodOutcome]
    attempts: int = 0
    failed_attempts: int = 0
    extender_errors: int = 0
    prioritize_errors: int = 0
    end_s: float = 0.0
    #: Pods deleted through the API (by a controller) and recreated by their owner.
    deleted: int = 0
    #: Pods still gated at the end of the run.
    gated: int = 0
    #: This thread's CPU seconds in the admission hook and in the controllers (extender work).
    admission_cpu_s: float = 0.0
    controller_cpu_s: float = 0.0
    #: This thread's CPU seconds playing the API server for the controllers (not extender work).
    api_cpu_s: float = 0.0
    #: This thread's CPU seconds in ``on_pod_event`` (the extender's informer: its cache applying
    #: watch events, extender work that runs in the driver's thread here).
    informer_cpu_s: float = 0.0
    #: Pods the admission hook moved to another scheduler profile (by name).
    routed: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> list[str]:
        """Pods never scheduled within the horizon (deleted pods excluded: their replacement counts)."""
        return [k for k, o in self.outcomes.items() if o.node is None and not o.deleted]

    @property
    def scheduled(self) -> int:
        """Pods bound."""
        return sum(1 for o in self.outcomes.values() if o.node is not None)

    @property
    def delayed(self) -> int:
        """Pods that needed more than one attempt."""
        return sum(1 for o in self.outcomes.values() if o.attempts > 1)


#: Event kinds of the run's heap; at one instant they sort in this order.
_FINISH, _ARRIVE, _RETRY, _UNGATE, _TICK = 0, 1, 2, 3, 4


def _gates(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("spec") or {}).get("schedulingGates"))


def _object_at(obj: Mapping[str, Any], *, node: str | None, phase: str) -> dict[str, Any]:
    out = dict(obj)
    out["spec"] = dict(obj.get("spec") or {})
    if node is not None:
        out["spec"]["nodeName"] = node
    out["status"] = {"phase": phase}
    return out


class Scheduler:
    """The simulated kube-scheduler; see the module docstring for the algorithm.

    Parameters
    ----------
    nodes:
        The cluster's nodes (typed); resources already used by other pods can be given in
        ``used``.
    extenders:
        Extender clients, in configuration order.
    settings:
        :class:`SchedulerSettings`.
    on_pod_event:
        Called with ``(event_type, pod_object)`` as an informer would report the pod.
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        extenders: Sequence[ExtenderClient] = (),
        settings: SchedulerSettings | None = None,
        *,
        on_pod_event: PodEventHook | None = None,
    ) -> None:
        self.settings = settings or SchedulerSettings()
        self.nodes = node_tree_order(nodes)
        self.extenders = list(extenders)
        self.on_pod_event = on_pod_event
        self.rng = random.Random(self.settings.seed)
        self.next_start_node_index = 0
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.alloc = np.array([[n.allocatable.cpu_m, n.allocatable.memory_b] for n in self.nodes], dtype=np.int64)
        self.used_score = np.zeros_like(self.alloc)  # non-zero requests, for the score plugins
        self.free = [n.allocatable for n in self.nodes]
        # The same free resources as arrays (cpu, memory, storage, pods), for the vectorised fit.
        self.free_basic = np.array(
            [[n.allocatable.cpu_m, n.allocatable.memory_b, n.allocatable.storage_b, n.allocatable.pods] for n in self.nodes],
            dtype=np.int64,
        ).reshape(len(self.nodes), 4)
        self.unschedulable = np.array([n.unschedulable for n in self.nodes], dtype=bool)
        self.any_taints = any(n.taints for n in self.nodes)
        # Static per-node answers, cached by what decides them (node objects do not change in a run).
        self._masks: dict[tuple[str, Any], np.ndarray[Any, np.dtype[np.bool_]]] = {}
        self._columns: dict[str, np.ndarray[Any, np.dtype[Any]]] = {}
        self._names = np.array([n.name for n in self.nodes], dtype=object)
        self.extender_errors = 0
        self.prioritize_errors = 0
        #: The API server's side: the mutating webhook at creation, other pod watchers, and
        #: controllers acting through this scheduler's :meth:`patch_pod` / :meth:`delete_pod`.
        self.admit: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        #: A mutating webhook over the wire: AdmissionReview request bytes in, reply bytes out
        #: (its CPU is the webhook's); encoding the request and applying the reply's JSONPatch
        #: are the API server's (:attr:`RunResult.api_cpu_s`).
        self.webhook: Callable[[bytes], bytes] | None = None
        self.watchers: list[PodEventHook] = []
        self.controllers: list[Callable[[], bool]] = []
        self.controller_period_s = 1.0
        #: The gate controller a harness installed (for its counters), else ``None``.
        self.narrowing: Any = None
        self.now = 0.0
        self._version = 0
        self._replacements = 0
        self._result = RunResult({})
        self._by_key: dict[str, PodArrival] = {}
        self._templates: dict[str, dict[str, Any]] = {}
        self._events: list[tuple[float, int, int, str]] = []
        self._seq = 0
        self._groups: dict[float, list[str]] = {}
        self._group_of: dict[str, float] = {}
        self._announced: set[str] = set()
        self._held: set[str] = set()
        self._gone: set[str] = set()
        self._tick_at = math.inf
        self._hooks_s = 0.0

    # ------------------------------------------------------------ one cycle
    def _column(self, key: str) -> np.ndarray[Any, np.dtype[Any]]:
        """Every node's value of label ``key`` (``None`` when absent), cached."""
        col = self._columns.get(key)
        if col is None:
            col = np.array([n.labels.get(key) for n in self.nodes], dtype=object)
            self._columns[key] = col
        return col

    def term_mask(self, term: Mapping[str, Any]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """:func:`term_matches` on every node at once (``In``/``NotIn``/``Exists``/``DoesNotExist``
        vectorised; ``Gt``/``Lt`` node by node), cached per term."""
        key = orjson.dumps(term, option=orjson.OPT_SORT_KEYS)
        mask = self._masks.get(("term", key))
        if mask is not None:
            return mask
        expressions = term.get("matchExpressions") or ()
        fields = term.get("matchFields") or ()
        mask = np.full(len(self.nodes), bool(expressions or fields))
        for req, column in [(r, self._column(r.get("key", ""))) for r in expressions] + [
            (r, self._names if r.get("key") == "metadata.name" else np.full(len(self.nodes), None, dtype=object)) for r in fields
        ]:
            values, operator = list(req.get("values") or ()), req.get("operator", "")
            present = column != None  # noqa: E711 (element-wise on an object array)
            if operator in ("In", "NotIn"):
                found = present & np.isin(column, values)
                mask &= found if operator == "In" else ~found
            elif operator in ("Exists", "DoesNotExist"):
                mask &= present if operator == "Exists" else ~present
            else:
                mask &= np.fromiter((_requirement_holds(values, operator, v) for v in column.tolist()), dtype=bool, count=len(self.nodes))
        self._masks[("term", key)] = mask
        return mask

    def _static_mask(self, kind: str, key: Any, holds: Callable[[Node], bool]) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """``holds`` on every node, computed once per ``(kind, key)``."""
        mask = self._masks.get((kind, key))
        if mask is None:
            mask = np.fromiter((holds(n) for n in self.nodes), dtype=bool, count=len(self.nodes))
            self._masks[(kind, key)] = mask
        return mask

    @property
    def ignored_resources(self) -> frozenset[str]:
        """The managed resources of the extenders marked ``ignoredByScheduler``: NodeResourcesFit
        leaves them out of its fit check (upstream ``NodeResourcesFitArgs.IgnoredResources``,
        filled from the extenders' configuration)."""
        return frozenset(m.name for e in self.extenders for m in e.config.managed_resources if m.ignored_by_scheduler)

    def fit_request(self, pod: Pod) -> Resources:
        """The pod's request as NodeResourcesFit checks it: ignored extended resources left out."""
        req = pod.requests
        ignored = self.ignored_resources
        if not ignored or not any(k in ignored for k in req.extended):
            return req
        return dataclasses.replace(req, extended={k: v for k, v in req.extended.items() if k not in ignored})

    def _filter_masks(
        self, pod: Pod, affinity: NodeAffinity, subset: np.ndarray[Any, np.dtype[np.int64]] | None
    ) -> list[tuple[str, np.ndarray[Any, np.dtype[np.bool_]]]]:
        """The in-tree filters as (reason, passes) masks over every node, in the plugins' order.

        Same rules as :meth:`_passes_filters`, vectorised: NodeUnschedulable, TaintToleration,
        NodeAffinity (``nodeSelector`` and required terms), NodeResourcesFit. Required terms of a
        pod narrowed by name (``subset``) are evaluated on those nodes only.
        """
        selector = "node(s) didn't match Pod's node affinity/selector"
        masks = [("node(s) were unschedulable", ~self.unschedulable)]
        if self.any_taints:  # without taints every pod tolerates every node
            masks.append(("node(s) had untolerated taint", self._static_mask("taints", pod.tolerations, lambda n: pod.tolerates(n.taints))))
        if pod.node_selector:
            wanted = tuple(sorted(pod.node_selector.items()))
            masks.append((selector, self._static_mask("selector", wanted, lambda n: all(n.labels.get(k) == v for k, v in wanted))))
        if affinity.required is not None:
            terms = affinity.required
            if subset is not None:
                mask = np.zeros(len(self.nodes), dtype=bool)
                for i in subset.tolist():
                    mask[i] = any(term_matches(self.nodes[i], t) for t in terms)
            else:
                mask = np.zeros(len(self.nodes), dtype=bool)
                for term in terms:
                    mask = mask | self.term_mask(term)
            masks.append((selector, mask))
        req = self.fit_request(pod)
        fits = (
            (req.cpu_m <= self.free_basic[:, 0])
            & (req.memory_b <= self.free_basic[:, 1])
            & (req.storage_b <= self.free_basic[:, 2])
            & (req.pods <= self.free_basic[:, 3])
        )
        if any(v > 0 for v in req.extended.values()):
            fits &= np.fromiter((f.fits(req) for f in self.free), dtype=bool, count=len(self.nodes))
        masks.append(("Insufficient resources", fits))
        return masks

    def _passes_filters(self, pod: Pod, i: int, affinity: NodeAffinity | None = None) -> str | None:
        """The in-tree filters on one node: ``None`` when it passes, else the reason (the reference rule)."""
        node = self.nodes[i]
        if node.unschedulable:
            return "node(s) were unschedulable"
        if not pod.tolerates(node.taints):
            return "node(s) had untolerated taint"
        for key, value in pod.node_selector.items():
            if node.labels.get(key) != value:
                return "node(s) didn't match Pod's node affinity/selector"
        if affinity is not None and affinity.required is not None and not any(term_matches(node, t) for t in affinity.required):
            return "node(s) didn't match Pod's node affinity/selector"
        if not self.free[i].fits(self.fit_request(pod)):
            return "Insufficient resources"
        return None

    def schedule_one(self, pod: Pod, pod_obj: Mapping[str, Any]) -> Attempt:
        """Run one scheduling cycle for ``pod`` against the current cluster state.

        Returns the chosen node (not yet bound) or the reason there is none. Extender filter
        errors fail the attempt; prioritize errors are counted in :attr:`prioritize_errors`.
        """
        n_all = len(self.nodes)
        attempt = Attempt(node=None)
        if n_all == 0:
            attempt.reason = "no nodes available to schedule pods"
            return attempt
        affinity = NodeAffinity.of(pod_obj)
        # PreFilter: NodeAffinity's node names narrow the nodes evaluated (in node-tree order);
        # numFeasibleNodesToFind then counts from that list's length.
        subset = None
        if affinity.names is not None:
            subset = np.array(sorted(self.index[n] for n in affinity.names if n in self.index), dtype=np.int64)
        order = np.arange(n_all, dtype=np.int64) if subset is None else subset
        n_eval = len(order)
        to_find = num_feasible_nodes_to_find(self.settings.percentage_for(pod.scheduler_name), n_eval)
        start = self.next_start_node_index % n_eval if n_eval else 0
        # The scan in the rotated order, stopped at the to_find-th feasible node (vectorised).
        rotated = np.roll(order, -start)
        masks = self._filter_masks(pod, affinity, subset)
        passes = np.ones(n_all, dtype=bool)
        for _, mask in masks:
            passes &= mask
        ok = passes[rotated]
        where = np.flatnonzero(ok)
        processed = int(where[to_find - 1]) + 1 if len(where) >= to_find > 0 else n_eval
        scanned = rotated[:processed]
        feasible = scanned[ok[:processed]]
        for i in scanned[~ok[:processed]].tolist():
            attempt.failed[self.nodes[i].name] = next(reason for reason, mask in masks if not mask[i])
        self.next_start_node_index = (self.next_start_node_index + processed) % n_all
        attempt.evaluated = processed
        names = [self.nodes[i].name for i in feasible.tolist()]
        # upstream IsInterested: an extender whose managed resources the pod does not request is skipped
        interested = [ext for ext in self.extenders if ext.is_interested(pod_obj)]
        attempt.offered = list(names)
        attempt.to_extenders = bool(interested)
        pod_json = orjson.dumps(pod_obj) if interested else b""
        for ext in interested:
            if not names:
                break
            try:
                reply = ext.filter(pod_json, names)
            except ExtenderCallError as exc:
                self.extender_errors += 1
                if ext.config.ignorable:
                    continue
                attempt.reason = str(exc)
                return attempt
            attempt.unresolvable.update(reply.unresolvable)
            for name, msg in reply.failed.items():
                if name not in reply.unresolvable:
                    attempt.failed[name] = msg
            names = reply.names
        attempt.feasible = len(names)
        if not names:
            attempt.reason = f"0/{n_all} nodes are available"
            return attempt
        if len(names) == 1:
            attempt.node = names[0]
            return attempt
        idx = np.array([self.index[n] for n in names], dtype=np.int64)
        totals = self._plugin_scores(pod, idx)
        if affinity.preferred:  # NodeAffinity score, DefaultNormalizeScore to 0..100, times its weight
            raw = np.zeros(len(idx), dtype=np.int64)
            for weight, term in affinity.preferred:
                raw += weight * self.term_mask(term)[idx]
            top = int(raw.max())
            if top > 0:
                totals = totals + NODE_AFFINITY_WEIGHT * (MAX_NODE_SCORE * raw // top)
        total_list = totals.tolist()
        for ext in interested:
            if not ext.config.prioritize_verb:
                continue
            try:
                scores = ext.prioritize(pod_json, names)
            except ExtenderCallError:
                self.prioritize_errors += 1
                continue
            for j, name in enumerate(names):
                if name in scores:
                    total_list[j] += extender_contribution(scores[name], ext.config.weight)
        attempt.totals = dict(zip(names, total_list, strict=True))
        attempt.node = select_host(list(attempt.totals.items()), self.rng)
        return attempt

    def _plugin_scores(self, pod: Pod, idx: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, np.dtype[np.int64]]:
        """NodeResourcesFit (LeastAllocated) and BalancedAllocation on nodes ``idx``, weighted.

        The integer and float arithmetic of :func:`least_allocated_score` and
        :func:`balanced_allocation_score` (two resources, weights 1), on arrays.
        """
        cpu = pod.requests.cpu_m or DEFAULT_MILLI_CPU_REQUEST
        memory = pod.requests.memory_b or DEFAULT_MEMORY_REQUEST
        requested = self.used_score[idx] + np.array([cpu, memory], dtype=np.int64)
        alloc = self.alloc[idx]
        fits = (alloc != 0) & (requested <= alloc)
        least_each = np.where(fits, (alloc - requested) * MAX_NODE_SCORE // np.where(alloc == 0, 1, alloc), 0)
        least = least_each.sum(axis=1) // 2
        fractions = np.where(alloc != 0, np.minimum(requested / np.where(alloc == 0, 1, alloc), 1.0), 1.0)
        std = np.abs(fractions[:, 0] - fractions[:, 1]) / 2
        balanced = ((1 - std) * MAX_NODE_SCORE).astype(np.int64)
        s = self.settings
        out: np.ndarray[Any, np.dtype[np.int64]] = s.fit_weight * least + s.balanced_weight * balanced
        return out

    # ------------------------------------------------------------ bind / release
    def assume(self, pod: Pod, node: str) -> None:
        """Account the pod's request on ``node`` (the scheduler cache's AssumePod)."""
        i = self.index[node]
        self.free[i] = self.free[i] - pod.requests
        self.free_basic[i] -= (pod.requests.cpu_m, pod.requests.memory_b, pod.requests.storage_b, pod.requests.pods)
        self.used_score[i, 0] += pod.requests.cpu_m or DEFAULT_MILLI_CPU_REQUEST
        self.used_score[i, 1] += pod.requests.memory_b or DEFAULT_MEMORY_REQUEST

    def release(self, pod: Pod, node: str) -> None:
        """Give the pod's request back (the pod finished)."""
        i = self.index[node]
        self.free[i] = self.free[i] + pod.requests
        self.free_basic[i] += (pod.requests.cpu_m, pod.requests.memory_b, pod.requests.storage_b, pod.requests.pods)
        self.used_score[i, 0] -= pod.requests.cpu_m or DEFAULT_MILLI_CPU_REQUEST
        self.used_score[i, 1] -= pod.requests.memory_b or DEFAULT_MEMORY_REQUEST

    def bind(self, pod: Pod, node: str, pod_obj: Mapping[str, Any] | None = None) -> None:
        """Bind through the first extender with a bindVerb that is interested in the pod
        (``pod_obj``; upstream ``extendersBinding``), else the default binder.

        Raises
        ------
        ExtenderCallError
            If the binding extender fails (the pod goes back to the queue).
        """
        for ext in self.extenders:
            if ext.config.bind_verb and (pod_obj is None or ext.is_interested(pod_obj)):
                ext.bind(pod, node)
                return

    # ------------------------------------------------------------ the stream
    def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        """The watch event to the extender's informer and the other watchers (the gate
        controller's), their CPU time counted as extender work (:attr:`RunResult.informer_cpu_s`,
        :attr:`RunResult.controller_cpu_s`), never as the API server's."""
        started = time.thread_time()
        if self.on_pod_event is not None:
            self.on_pod_event(kind, obj)
        informed = done = time.thread_time()
        if self.watchers:
            for watcher in self.watchers:
                watcher(kind, obj)
            done = time.thread_time()
            self._result.controller_cpu_s += done - informed
        self._result.informer_cpu_s += informed - started
        self._hooks_s += done - started

    def _backoff(self, attempts: int) -> float:
        s = self.settings
        return float(min(s.initial_backoff_s * 2 ** max(attempts - 1, 0), s.max_backoff_s))

    def run(self, arrivals: Iterable[PodArrival], *, progress: Callable[[int], None] | None = None) -> RunResult:
        """Schedule a whole trace on the simulated clock.

        With :attr:`admit` set, each pod object passes through it when it is created (the API
        server calling the mutating webhook); a pod created with ``spec.schedulingGates`` is
        not scheduled until its gates are removed through :attr:`api` (the scheduling queue's
        PreEnqueue), after which it enters the active queue at once. The :attr:`controllers`
        run before every scheduling cycle and every :attr:`controller_period_s` while any of
        them reports work; they act only through :attr:`api` (patches validated by the pod
        update rules, deletes that the owner's controller answers with a replacement).

        Parameters
        ----------
        arrivals:
            The trace's pods (any order; sorted by arrival, ties in given order).
        progress:
            Called with the number of pods newly placed, for a progress bar.

        Returns
        -------
        RunResult
            Every pod's node, start time, attempts and extender time.
        """
        pods = sorted(enumerate(arrivals), key=lambda t: (t[1].arrival_s, t[0]))
        result = RunResult({a.pod.key: PodOutcome(a.pod.key) for _, a in pods})
        self._result = result
        self._by_key = {a.pod.key: a for _, a in pods}
        self._templates = {a.pod.key: a.obj for _, a in pods}
        self._events = []
        self._seq = 0
        for _, a in pods:
            self._push(a.arrival_s, _ARRIVE, a.pod.key)
        self._groups = {}
        for _, a in pods:
            self._groups.setdefault(a.arrival_s, []).append(a.pod.key)
        self._group_of = {a.pod.key: a.arrival_s for _, a in pods}
        self._announced = set()
        self._held = set()
        self._gone = set()
        self._tick_at = math.inf
        unschedulable: dict[str, float] = {}  # key -> earliest retry time (backoff expiry)
        retry_at: dict[str, float] = {}
        self.now = 0.0
        events = self._events
        while events:
            now, kind, _, key = heapq.heappop(events)
            if now > self.settings.horizon_s:
                break
            self.now = now
            if kind == _TICK:
                self._tick_at = math.inf
                self._control()
                continue
            if key in self._gone:
                continue
            arrival = self._by_key[key]
            if kind == _FINISH:
                node = result.outcomes[key].node
                assert node is not None
                self.release(arrival.pod, node)
                self._gone.add(key)
                self._emit("MODIFIED", _object_at(arrival.obj, node=node, phase="Succeeded"))
                self._emit("DELETED", _object_at(arrival.obj, node=node, phase="Succeeded"))
                for waiting, earliest in unschedulable.items():  # AssignedPodDelete wakes them
                    when = max(now, earliest)
                    if when < retry_at.get(waiting, math.inf):
                        retry_at[waiting] = when
                        self._push(when, _RETRY, waiting)
                continue
            if kind == _ARRIVE:
                # Pods created at one instant (a Job's burst) are all in the watch before the
                # scheduler's next cycle: announce them together, in arrival order.
                if key not in self._announced:
                    for other in self._groups.get(self._group_of.get(key, -1.0), [key]):
                        if other not in self._announced and other not in self._gone:
                            self._announce(other)
                    if key not in self._announced:
                        self._announce(key)
                arrival = self._by_key[key]
                if _gates(arrival.obj):
                    self._held.add(key)  # PreEnqueue: SchedulingGated
                    self._control()
                    continue
            elif kind == _UNGATE:
                if key in self._held or result.outcomes[key].node is not None:
                    continue
            elif retry_at.get(key) != now or key not in unschedulable:
                continue  # a stale retry
            self._control()
            if key in self._gone:
                continue
            arrival = self._by_key[key]
            outcome = result.outcomes[key]
            outcome.attempts += 1
            result.attempts += 1
            ext_before = sum(e.seconds for e in self.extenders)
            attempt = self.schedule_one(arrival.pod, arrival.obj)
            if arrival.pod.data is not None and attempt.to_extenders:
                outcome.offered += len(attempt.offered)
            bound = False
            if attempt.node is not None:
                self.assume(arrival.pod, attempt.node)
                try:
                    self.bind(arrival.pod, attempt.node, arrival.obj)
                    bound = True
                except ExtenderCallError:
                    self.extender_errors += 1
                    self.release(arrival.pod, attempt.node)
            outcome.extender_s += sum(e.seconds for e in self.extenders) - ext_before
            if bound:
                assert attempt.node is not None
                outcome.node, outcome.start_s = attempt.node, now
                unschedulable.pop(key, None)
                retry_at.pop(key, None)
                self._emit("MODIFIED", _object_at(arrival.obj, node=attempt.node, phase="Running"))
                self._push(now + arrival.duration_s, _FINISH, key)
                if progress is not None:
                    progress(1)
                continue
            result.failed_attempts += 1
            unschedulable[key] = now + self._backoff(outcome.attempts)
            flush = now + self.settings.unschedulable_flush_s
            retry_at[key] = flush
            self._push(flush, _RETRY, key)
        result.end_s = self.now
        result.extender_errors = self.extender_errors
        result.prioritize_errors = self.prioritize_errors
        result.gated = len(self._held)
        return result

    # ------------------------------------------------------------ the API server's part
    def _push(self, when: float, kind: int, key: str) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, kind, self._seq, key))

    def _announce(self, key: str) -> None:
        """Create the pod: admission (the webhook, as the API server calls it), then ADDED."""
        arrival = self._by_key[key]
        obj = arrival.obj
        if self.webhook is not None:
            obj = self._call_webhook(obj)
        if self.admit is not None:
            started = time.thread_time()
            obj = self.admit(obj)
            self._result.admission_cpu_s += time.thread_time() - started
        if self.admit is not None or self.webhook is not None:
            scheduler = (obj.get("spec") or {}).get("schedulerName")
            if scheduler != (arrival.obj.get("spec") or {}).get("schedulerName"):
                self._result.routed[str(scheduler)] = self._result.routed.get(str(scheduler), 0) + 1
        self._version += 1
        obj = {**obj, "metadata": {**(obj.get("metadata") or {}), "resourceVersion": str(self._version)}}
        self._by_key[key] = PodArrival(obj, Pod.from_object(obj), arrival.arrival_s, arrival.duration_s)
        self._announced.add(key)
        self._emit("ADDED", _object_at(obj, node=None, phase="Pending"))

    def _call_webhook(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The API server calling :attr:`webhook` at CREATE and applying its JSONPatch (an
        unreadable reply or a failed call admits the pod unchanged: ``failurePolicy: Ignore``)."""
        import base64

        from extender.admission import apply_patch

        started = time.thread_time()
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        body = orjson.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": uid, "operation": "CREATE", "object": obj}}
        )
        asked = time.thread_time()
        try:
            reply = self.webhook(body) if self.webhook is not None else b""
        except Exception:
            reply = b""
        answered = time.thread_time()
        try:
            patch = (orjson.loads(reply).get("response") or {}).get("patch") if reply else None
            out = apply_patch(obj, orjson.loads(base64.b64decode(patch))) if patch else obj
        except (orjson.JSONDecodeError, KblError, ValueError, AttributeError):
            out = obj
        done = time.thread_time()
        self._result.admission_cpu_s += answered - asked
        self._result.api_cpu_s += (asked - started) + (done - answered)
        return out

    def _control(self) -> None:
        """Run the controllers (this thread's CPU time is counted); keep ticking while busy."""
        busy = False
        for control in self.controllers:
            started, api, hooks = time.thread_time(), self._result.api_cpu_s, self._hooks_s
            busy = control() or busy
            # the API server's share of its calls (patch validation, the Job controller) is not the
            # controller's; the watchers those calls notify are counted by :meth:`_emit`
            self._result.controller_cpu_s += time.thread_time() - started - (self._result.api_cpu_s - api) - (self._hooks_s - hooks)
        if busy and self._tick_at > self.now + self.controller_period_s:
            self._tick_at = self.now + self.controller_period_s
            self._push(self._tick_at, _TICK, "")

    def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        """See :meth:`_patch_pod`; its CPU time is the API server's (:attr:`RunResult.api_cpu_s`)."""
        started, hooks = time.thread_time(), self._hooks_s
        try:
            return self._patch_pod(namespace, name, patch)
        finally:  # the watchers it notifies count as theirs (:meth:`_emit`)
            self._result.api_cpu_s += time.thread_time() - started - (self._hooks_s - hooks)

    def delete_pod(self, namespace: str, name: str) -> None:
        """See :meth:`_delete_pod`; its CPU time is the API server's and the Job controller's."""
        started, hooks = time.thread_time(), self._hooks_s
        try:
            self._delete_pod(namespace, name)
        finally:
            self._result.api_cpu_s += time.thread_time() - started - (self._hooks_s - hooks)

    def _patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Mapping[str, Any]:
        """A JSON merge patch of a pending pod, as the API server takes it: the
        ``metadata.resourceVersion`` precondition (409), the pod update rules of
        :func:`extender.narrowing.mutation_error` (422), then MODIFIED to the watchers; a pod
        whose last gate went enters the scheduling queue.

        Raises
        ------
        ApiError
            404 for an unknown or finished pod, 409 on a stale version, 422 on a forbidden change.
        """
        from extender.narrowing import mutation_error
        from kube.api import ApiError, ConflictError
        from kube.memory import merge_patch

        key = f"{namespace}/{name}"
        if key not in self._by_key or key in self._gone or key not in self._announced:
            raise ApiError(404, f"pods {name!r} not found")
        arrival = self._by_key[key]
        old = arrival.obj
        want = (patch.get("metadata") or {}).get("resourceVersion")
        if want is not None and want != (old.get("metadata") or {}).get("resourceVersion"):
            raise ConflictError(f"pods {name!r}: the object has been modified")
        if self._result.outcomes[key].node is not None:
            old = _object_at(old, node=self._result.outcomes[key].node, phase="Running")
        new: dict[str, Any] = merge_patch(old, {k: v for k, v in patch.items() if k != "status"})
        error = mutation_error(old, new)
        if error is not None:
            raise ApiError(422, f"Pod {name!r} is invalid: {error}")
        self._version += 1
        new["metadata"]["resourceVersion"] = str(self._version)
        new.pop("status", None)
        self._by_key[key] = PodArrival(new, Pod.from_object(new), arrival.arrival_s, arrival.duration_s)
        node = self._result.outcomes[key].node
        self._emit("MODIFIED", _object_at(new, node=node, phase="Pending" if node is None else "Running"))
        if key in self._held and not _gates(new):
            self._held.discard(key)
            self._push(self.now, _UNGATE, key)
        return new

    def _delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod (a gone one is fine); its controller owner (the Job controller) creates a
        replacement at once from the pod's template (the object before admission), with a new
        name and uid, which goes through admission again."""
        key = f"{namespace}/{name}"
        if key not in self._by_key or key in self._gone or key not in self._announced:
            return
        arrival = self._by_key[key]
        outcome = self._result.outcomes[key]
        self._gone.add(key)
        self._held.discard(key)
        outcome.deleted = True
        self._result.deleted += 1
        if outcome.node is not None:  # a running pod deleted: its resources come back
            self.release(arrival.pod, outcome.node)
        self._emit("DELETED", _object_at(arrival.obj, node=outcome.node, phase="Pending" if outcome.node is None else "Running"))
        owners = [r for r in (arrival.obj.get("metadata") or {}).get("ownerReferences") or () if r.get("controller")]
        if not owners:
            return
        template = self._templates[key]
        self._replacements += 1
        meta = dict(template.get("metadata") or {})
        meta["name"] = f"{meta.get('name')}-r{self._replacements}"
        meta["uid"] = f"{meta.get('uid') or key}-r{self._replacements}"
        meta.pop("resourceVersion", None)
        obj = {**template, "metadata": meta}
        pod = Pod.from_object(obj)
        new_key = pod.key
        self._templates[new_key] = template
        self._by_key[new_key] = PodArrival(obj, pod, self.now, arrival.duration_s)
        self._result.outcomes[new_key] = PodOutcome(new_key, origin=outcome.origin or key)
        self._push(self.now, _ARRIVE, new_key)
