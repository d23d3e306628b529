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
        self.rebuilt_bytes = Counter("kbl_agent_rebuilt_bytes", "Bytes of erasure fragments rebuilt from k others", registry=r)
        self.staged_fragments = Counter(
            "kbl_agent_staged_fragments", "Fragments encoded for a zone peer (the shard read from the source once per zone)", registry=r
        )
        self.streamed_fragments = Counter(
            "kbl_agent_streamed_fragments",
            "Fragments the zone's encoder offered to their holder as it encoded, by outcome (done, spilled to staging, dropped)",
            ["outcome"],
            registry=r,
        )
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
        self.resumed_bytes = Counter(
            "kbl_agent_resumed_bytes",
            "Bytes of partial copies taken over after a crash or a broken connection (not copied again)",
            registry=r,
        )
        self.records_served = Counter("kbl_agent_piece_records_served", "Piece records (segment tables) sent to peers", registry=r)
        self.decoded_segments = Counter(
            "kbl_agent_decoded_segments", "Shard segments decoded from k fragments for reads (only those a range touches)", registry=r
        )
        self.corrupt_on_read = Counter(
            "kbl_agent_corrupt_segments_on_read", "Segments that failed their checksum on a read (never served)", registry=r
        )
        self.dataset_remaining = Gauge(
            "kbl_agent_dataset_bytes_remaining",
            "Bytes this node still has to hydrate for a DataSet (its target pieces not ready yet; fragments estimated as shard/k)",
            ["namespace", "name"],
            registry=r,
        )
        self.dataset_throughput = Gauge(
            "kbl_agent_dataset_throughput_bytes_per_second",
            "Hydration throughput for a DataSet on this node (moving average over about 10 s)",
            ["namespace", "name"],
            registry=r,
        )
        self.api_reads = Counter(
            "kbl_agent_api_reads", "Objects read from the API server on demand (peers' holdings, nodes' zones)", ["resource"], registry=r
        )
        self.reboot_required = Gauge(
            "kbl_agent_reboot_required", "1 while the node reports it needs a reboot to finish patching", registry=r
        )
        self.auth_refused = Counter("kbl_agent_auth_refused", "Requests refused for lack of valid credentials", registry=r)
        self.authz_refused = Counter(
            "kbl_agent_authz_refused", "Authenticated requests refused (403): the identity may not read that DataSet", registry=r
        )

    def hydrated(self, kind: str) -> float:
        """Bytes hydrated from one kind of source so far."""
        return float(self.hydrated_bytes.labels(kind)._value.get())
