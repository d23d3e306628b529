"""Reconciler metrics (Prometheus): placement changes, transfers in flight, shards degraded and
lost, time from a DataSet's creation to ``Ready``, reconcile duration; per DataSet (labels
``namespace``, ``name``, removed when the DataSet goes) bytes remaining and the smoothed
hydration throughput.

One :class:`ReconcilerMetrics` per reconciler, on its own registry (no import-time global), served
by :func:`serve` on the controller's ``--metrics-port``.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

READY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)


class ReconcilerMetrics:
    """The reconciler's series; gauges are sums over DataSets, set per DataSet by :meth:`record`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.placement_changes = Counter(
            "kbl_reconciler_placement_changes", "Piece slots moved to another node, by cause", ["cause"], registry=r
        )
        self.transfers = Gauge("kbl_reconciler_transfers_in_flight", "Entries of status.transfers over every DataSet", registry=r)
        self.degraded = Gauge("kbl_reconciler_shards_degraded", "Shards below their full redundancy (after being ready)", registry=r)
        self.lost = Gauge("kbl_reconciler_shards_lost", "Shards with fewer than the needed pieces and no source", registry=r)
        self.time_to_ready = Histogram(
            "kbl_reconciler_time_to_ready_seconds", "From a DataSet's creation to its first Ready=True", buckets=READY_BUCKETS, registry=r
        )
        self.duration = Histogram(
            "kbl_reconciler_reconcile_duration_seconds", "One reconcile pass over the DataSets it touched", registry=r
        )
        self.errors = Counter("kbl_reconciler_errors", "Reconcile passes that failed (retried)", registry=r)
        self.bytes_remaining = Gauge(
            "kbl_reconciler_dataset_bytes_remaining", "Bytes of a DataSet's pieces not yet ready on their target nodes",
            ["namespace", "name"], registry=r,
        )
        self.throughput = Gauge(
            "kbl_reconciler_dataset_bytes_per_second",
            "A DataSet's bytes becoming ready per second (smoothed as status.estimatedReadyTime)",
            ["namespace", "name"], registry=r,
        )
        self._per: dict[str, tuple[int, int, int]] = {}

    def record(self, key: str, *, transfers: int, degraded: int, lost: int) -> None:
        self._per[key] = (transfers, degraded, lost)
        self._publish()

    def progress(self, key: str, *, remaining: int, rate: float | None) -> None:
        """A DataSet's bytes remaining and throughput (0 while unknown)."""
        namespace, name = key.split("/", 1)
        self.bytes_remaining.labels(namespace=namespace, name=name).set(remaining)
        self.throughput.labels(namespace=namespace, name=name).set(rate or 0.0)

    def forget(self, key: str) -> None:
        self._per.pop(key, None)
        namespace, name = key.split("/", 1)
        for gauge in (self.bytes_remaining, self.throughput):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)
        self._publish()

    def _publish(self) -> None:
        self.transfers.set(sum(v[0] for v in self._per.values()))
        self.degraded.set(sum(v[1] for v in self._per.values()))
        self.lost.set(sum(v[2] for v in self._per.values()))


def serve(metrics: ReconcilerMetrics, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - a pod's metrics port
    """Serve ``/metrics`` on ``host:port`` from a daemon thread."""
    start_http_server(port, addr=host, registry=metrics.registry)
