"""The agent's Prometheus metrics, in a registry of its own (several agents may share a process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Source kinds of hydrated bytes, cheapest first.
PEER_ZONE = "peer-zone"
SOURCE = "source"
PEER_CROSS_ZONE = "peer-cross-zone"
KINDS = (PEER_ZONE, SOURCE, PEER_CROSS_ZONE)


@dataclass
class AgentMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.hydrated_bytes = Counter("kbl_agent_hydrated_bytes", "Bytes hydrated, by source kind", ["kind"], registry=r)
        self.hydrated_pieces = Counter("kbl_agent_hydrated_pieces", "Pieces hydrated, by source kind", ["kind"], registry=r)
        self.rebuilt_pieces = Counter("kbl_agent_rebuilt_fragments", "Erasure fragments rebuilt from k others", registry=r)
        self.source_requests = Counter("kbl_agent_source_requests", "Reads opened on the DataSet source", registry=r)
        self.failures = Counter("kbl_agent_hydration_failures", "Hydrations that failed, by reason", ["reason"], registry=r)
        self.pieces = Gauge("kbl_agent_pieces", "Pieces on this node, by state (ready, hydrating, corrupt)", ["state"], registry=r)
        self.verified = Counter("kbl_agent_pieces_verified", "Pieces re-verified by the scrub", registry=r)
        self.corrupt = Counter("kbl_agent_pieces_corrupt", "Pieces found corrupt and quarantined", registry=r)
        self.copy_seconds = Histogram(
            "kbl_agent_copy_seconds", "Seconds per hydrated piece", buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300), registry=r
        )
        self.throughput = Gauge("kbl_agent_copy_throughput_bytes_per_second", "Bytes per second of the last hydrated piece", registry=r)
        self.disk_full = Gauge("kbl_agent_disk_full", "1 while a write failed for lack of space", registry=r)
        self.served_bytes = Counter("kbl_agent_served_bytes", "Bytes served by the read API, by what (shard, piece)", ["what"], registry=r)
        self.auth_refused = Counter("kbl_agent_auth_refused", "Requests refused for lack of valid credentials", registry=r)
        self.authz_refused = Counter(
            "kbl_agent_authz_refused", "Authenticated requests refused (403): the identity may not read that DataSet", registry=r
        )

    def hydrated(self, kind: str) -> float:
        """Bytes hydrated from one kind of source so far."""
        return float(self.hydrated_bytes.labels(kind)._value.get())
