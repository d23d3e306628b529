"""The extender's Prometheus metrics, in a registry of its own (no global state).

Measured on the request path: requests by verb and status code, latency histograms per verb,
better nodes not offered, unusable data wishes. Read from the cache at scrape time by a
collector: bytes read at each locality level by pods bound while we watched (node, rack, zone,
region, remote), cache sizes, in-flight assignments, readiness, rejected objects, relists, and
the event recorder's counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from extender.eventing import EventRecorder
from extender.state import ClusterState
from topology.localities import LEVELS

#: Latency buckets in seconds: sub-millisecond to the 5 s default extender timeout.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StateCollector(Collector):
    def __init__(self, state: ClusterState, events: EventRecorder) -> None:
        self.state = state
        self.events = events

    def collect(self) -> Iterator[Metric]:
        state = self.state
        with state.lock:
            locality = state.locality_bytes.copy()
            counts = state.counts()
            rejected = dict(state.rejected)
            relists = dict(state.relists)
            inflight = state.inflight
            ready = state.ready
        family = CounterMetricFamily(
            "kbl_extender_locality_bytes", "Bytes read at each locality level by pods bound while the extender watched", labels=["level"]
        )
        for level in LEVELS:
            family.add_metric([level.label], float(locality[int(level)]))
        yield family
        sizes = GaugeMetricFamily("kbl_extender_cache_objects", "Objects in the extender's cache", labels=["kind"])
        for kind, value in counts.items():
            sizes.add_metric([kind], value)
        yield sizes
        yield GaugeMetricFamily("kbl_extender_inflight_assignments", "Binds not yet confirmed by the watch", value=inflight)
        yield GaugeMetricFamily("kbl_extender_ready", "1 once the cache has had its first full sync", value=1.0 if ready else 0.0)
        bad = CounterMetricFamily("kbl_extender_rejected_objects", "Invalid objects ignored by the cache", labels=["kind"])
        for kind, value in rejected.items():
            bad.add_metric([kind], value)
        yield bad
        rel = CounterMetricFamily("kbl_extender_relists", "Full relists per resource (first sync and after 410 Gone)", labels=["resource"])
        for resource, value in relists.items():
            rel.add_metric([resource], value)
        yield rel
        ev = CounterMetricFamily("kbl_extender_events", "Kubernetes events about pods, by outcome", labels=["outcome"])
        for outcome, value in dict(self.events.counts).items():
            ev.add_metric([outcome], value)
        yield ev


@dataclass
class ExtenderMetrics:
    """The metrics of one app instance."""

    state: ClusterState
    events: EventRecorder
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        self.requests = Counter(
            "kbl_extender_requests", "Extender requests by verb and HTTP status", ["verb", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "kbl_extender_request_duration_seconds", "Time to answer a verb", ["verb"], buckets=LATENCY_BUCKETS_S, registry=self.registry
        )
        self.missed = Counter(
            "kbl_extender_better_node_not_offered",
            "Prioritize calls where a node serving the pod's data markedly better was not among the candidates",
            registry=self.registry,
        )
        self.unusable = Counter(
            "kbl_extender_unusable_data_wishes",
            "Requests for pods whose kbl annotations could not be honoured",
            ["verb"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self.state, self.events))

    @contextmanager
    def observe(self, verb: str) -> Iterator[list[int]]:
        """Time a request; the caller puts the HTTP status in the yielded one-item list."""
        code = [200]
        started = time.perf_counter()
        try:
            yield code
        except BaseException:
            code[0] = 500
            raise
        finally:
            self.latency.labels(verb).observe(time.perf_counter() - started)
            self.requests.labels(verb, str(code[0])).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
