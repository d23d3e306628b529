"""What the controller measures: utilization of a KBL's nodes (its input) and its own metrics.

:class:`ControllerMetrics` is the controller's Prometheus registry, served by ``kbl controller
--metrics-port``: reconcile duration, actions by kind and outcome, groups and their sizes, pending
pods by reason (the planner's verdict: whether a new node would help, and if not, why), the time
from a pod's becoming unschedulable to the cloud request made for it, and cloud errors by code.

:class:`MetricsServerUtilization` reads ``NodeMetrics`` (``metrics.k8s.io/v1beta1``, served by
metrics-server) for the nodes labelled ``kbl.io/kbl=<name>`` and divides used CPU and memory by
allocatable: ``cpu = sum(usage.cpu) / sum(allocatable.cpu)``, same for memory.
:class:`PrometheusUtilization` evaluates the KBL's ``kbl.io/prometheus-query`` annotation with
the HTTP API (``/api/v1/query``) and takes the first sample's value. A source that fails for a
KBL leaves that KBL out (no feedback this round) rather than failing the reconcile.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kube.api import ApiError, KubeApi, Resource
from placement.capacity import PROMETHEUS_QUERY, Utilization
from topology.errors import QuantityError
from topology.kbls import KBL
from topology.nodes import Node
from topology.quantities import to_int, to_milli
from topology.times import parse_time

if TYPE_CHECKING:
    from placement.capacity import CapacityState, Plan

#: Reconcile-duration buckets in seconds.
RECONCILE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Unschedulable-to-request buckets in seconds.
REQUEST_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ControllerMetrics:
    """The controller's metrics, in a registry of its own (no global state)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconcile = Histogram("kbl_controller_reconcile_seconds", "Duration of one reconcile", buckets=RECONCILE_BUCKETS_S, registry=r)
        self.actions = Counter("kbl_controller_actions", "Planned actions by kind and outcome", ["kind", "outcome"], registry=r)
        self.groups = Gauge("kbl_controller_node_groups", "kbl-managed node groups the cloud reports", registry=r)
        self.group_size = Gauge("kbl_controller_node_group_desired", "Desired size of each node group", ["group", "kbl"], registry=r)
        self.pending = Gauge("kbl_controller_pending_pods", "Unschedulable KBL pods by the planner's reason", ["reason"], registry=r)
        self.to_request = Histogram(
            "kbl_controller_unschedulable_to_request_seconds", "From a pod's becoming unschedulable to the cloud request made for it",
            buckets=REQUEST_BUCKETS_S, registry=r,
        )
        self.cloud_errors = Counter("kbl_controller_cloud_errors", "Failed cloud calls by error code", ["code"], registry=r)
        self._lock = threading.Lock()
        self._requested: set[str] = set()  # pods already counted in to_request
        self._first_seen: dict[str, float] = {}
        self._sizes: set[tuple[str, str]] = set()
        self._reasons: set[str] = set()

    def action(self, kind: str, outcome: str) -> None:
        self.actions.labels(kind, outcome).inc()

    def cloud_error(self, code: str) -> None:
        self.cloud_errors.labels(code).inc()

    def saw_pending(self, plan: Plan, now_s: float) -> None:
        """Remember when each unschedulable pod of the plan was first seen (before acting on it)."""
        with self._lock:
            for verdict in plan.verdicts:
                for key in verdict.pods:
                    self._first_seen.setdefault(key, now_s)

    def requested_for(self, pods: Sequence[tuple[str, str]], now_s: float) -> None:
        """A cloud request was made for these ``(pod key, creation time)`` pods; each counts once,
        from its creation (else from when the controller first saw it unschedulable)."""
        with self._lock:
            for key, created in pods:
                start = parse_time(created) or self._first_seen.get(key)
                if key in self._requested or start is None:
                    continue
                self._requested.add(key)
                self.to_request.observe(max(0.0, now_s - start))

    def reconciled(self, state: CapacityState, plan: Plan, seconds: float) -> None:
        """After a reconcile: its duration, the groups' sizes and the pending pods by reason."""
        self.reconcile.observe(seconds)
        self.groups.set(len(state.groups))
        with self._lock:
            now = {(g.name, g.kbl) for g in state.groups}
            for gone in self._sizes - now:
                self.group_size.remove(*gone)
            self._sizes = now
        for g in state.groups:
            self.group_size.labels(g.name, g.kbl).set(g.desired)
        counts: dict[str, int] = {}
        for verdict in plan.verdicts:
            counts[verdict.reason] = counts.get(verdict.reason, 0) + len(verdict.pods)
        with self._lock:
            self._reasons |= set(counts)
            reasons = set(self._reasons)
        for reason in reasons:
            self.pending.labels(reason).set(counts.get(reason, 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


NODE_METRICS = Resource("metrics.k8s.io", "v1beta1", "nodes", "NodeMetrics", namespaced=False)


class MetricsServerUtilization:
    """CPU and memory utilization of each KBL's nodes from metrics-server."""

    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube

    def __call__(self, kbls: Sequence[KBL], nodes: Sequence[Node]) -> Mapping[str, Utilization]:
        try:
            metrics, _ = self.kube.list(NODE_METRICS)
        except ApiError:
            return {}
        usage: dict[str, tuple[int, int]] = {}
        for item in metrics:
            raw = item.get("usage") or {}
            try:
                usage[item["metadata"]["name"]] = (to_milli(raw.get("cpu", "0")), to_int(raw.get("memory", "0")))
            except (QuantityError, KeyError):
                continue
        out: dict[str, Utilization] = {}
        for kbl in kbls:
            own = [n for n in nodes if n.kbl == kbl.name and n.name in usage]
            cpu_total = sum(n.allocatable.cpu_m for n in own)
            mem_total = sum(n.allocatable.memory_b for n in own)
            if not own or not cpu_total or not mem_total:
                continue
            cpu = sum(usage[n.name][0] for n in own) / cpu_total
            memory = sum(usage[n.name][1] for n in own) / mem_total
            out[kbl.key] = Utilization(cpu=cpu, memory=memory)
        return out


class PrometheusUtilization:
    """The value of each KBL's Prometheus query (``kbl.io/prometheus-query``)."""

    def __init__(self, base_url: str, *, client: httpx.Client | None = None, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.Client(timeout=timeout_s)

    def query(self, promql: str) -> float | None:
        """The first sample of an instant query, or ``None`` if there is none or it failed."""
        try:
            answer = self.client.get(f"{self.base_url}/api/v1/query", params={"query": promql})
            answer.raise_for_status()
            body = answer.json()
            result = body["data"]["result"]
            if not result:
                return None
            return float(result[0]["value"][1])
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            return None

    def __call__(self, kbls: Sequence[KBL], nodes: Sequence[Node]) -> Mapping[str, Utilization]:
        out: dict[str, Utilization] = {}
        for kbl in kbls:
            promql = kbl.annotations.get(PROMETHEUS_QUERY)
            if promql:
                value = self.query(promql)
                if value is not None:
                    out[kbl.key] = Utilization(metric=value)
        return out
