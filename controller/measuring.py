"""Utilisation of a KBL's own nodes, for the planner's feedback: metrics.k8s.io or Prometheus.

:class:`MetricsServerUtilisation` reads ``NodeMetrics`` (``metrics.k8s.io/v1beta1``, served by
metrics-server) for the nodes labelled ``kbl.io/kbl=<name>`` and divides used CPU and memory by
allocatable: ``cpu = sum(usage.cpu) / sum(allocatable.cpu)``, same for memory.
:class:`PrometheusUtilisation` evaluates the KBL's ``kbl.io/prometheus-query`` annotation with
the HTTP API (``/api/v1/query``) and takes the first sample's value. A source that fails for a
KBL leaves that KBL out (no feedback this round) rather than failing the reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from kube.api import ApiError, KubeApi, Resource
from placement.capacity import PROMETHEUS_QUERY, Utilisation
from topology.errors import QuantityError
from topology.kbls import KBL
from topology.nodes import Node
from topology.quantities import to_int, to_milli

NODE_METRICS = Resource("metrics.k8s.io", "v1beta1", "nodes", "NodeMetrics", namespaced=False)


class MetricsServerUtilisation:
    """CPU and memory utilisation of each KBL's nodes from metrics-server."""

    def __init__(self, kube: KubeApi) -> None:
        self.kube = kube

    def __call__(self, kbls: Sequence[KBL], nodes: Sequence[Node]) -> Mapping[str, Utilisation]:
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
        out: dict[str, Utilisation] = {}
        for kbl in kbls:
            own = [n for n in nodes if n.kbl == kbl.name and n.name in usage]
            cpu_total = sum(n.allocatable.cpu_m for n in own)
            mem_total = sum(n.allocatable.memory_b for n in own)
            if not own or not cpu_total or not mem_total:
                continue
            cpu = sum(usage[n.name][0] for n in own) / cpu_total
            memory = sum(usage[n.name][1] for n in own) / mem_total
            out[kbl.key] = Utilisation(cpu=cpu, memory=memory)
        return out


class PrometheusUtilisation:
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

    def __call__(self, kbls: Sequence[KBL], nodes: Sequence[Node]) -> Mapping[str, Utilisation]:
        out: dict[str, Utilisation] = {}
        for kbl in kbls:
            promql = kbl.annotations.get(PROMETHEUS_QUERY)
            if promql:
                value = self.query(promql)
                if value is not None:
                    out[kbl.key] = Utilisation(metric=value)
        return out
