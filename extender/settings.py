"""The extender's knobs, in one frozen settings object with defaults and units in the names.

Everything an operator may tune lives in :class:`ExtenderSettings`: the URL prefix the verbs are
served under, the per-level locality costs, hotspot avoidance, binding, event rate limits, the
time an in-flight assignment is trusted, and the request-size bounds that protect the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from topology import labels
from topology.localities import LocalityCosts

#: Size of a real node object (``fixtures/eks-node.json`` is 8 KB); 16 KiB leaves room for nodes
#: with many images or labels.
NODE_OBJECT_BUDGET_B = 16 * 1024
#: The largest candidate list kube-scheduler sends in practice (a 5,000-node cluster).
MAX_CANDIDATE_NODES = 5000


@dataclass(frozen=True, slots=True)
class ExtenderSettings:
    """How the extender scores, filters, binds and protects itself.

    Parameters
    ----------
    url_prefix:
        Path prefix of the verbs (``""`` serves ``/filter``; ``"/kbl"`` serves ``/kbl/filter``).
        It must match the path part of ``urlPrefix`` in the KubeSchedulerConfiguration.
    costs:
        Relative cost of one byte read at each locality level (see
        :class:`~topology.localities.LocalityCosts`).
    hotspot_threshold:
        Utilization (0..1, the largest of cpu, memory and pod-count utilization after placing
        the pod) above which a node's locality advantage starts to fade; at full utilization it
        is gone (see :func:`extender.scoring.effective_costs`). ``1.0`` disables fading.
    bind_enabled:
        Serve ``/bind``; when false, ``/bind`` answers with ``Error`` set.
    inflight_ttl_s:
        Seconds an assignment recorded at bind time is counted on its node before the watch
        confirms it; after that it is dropped (the watch is the source of truth).
    event_interval_s:
        Minimum seconds between two "best data node not offered" events about the same pod.
    events_per_s, event_burst:
        Global token bucket for those events (rate and bucket size).
    max_body_bytes:
        Largest request body accepted; larger ones get ``413`` before they are read in full.
        The default fits 5,000 full Node objects of 16 KiB each plus the pod.
    max_pending_pods:
        Pods seen in filter/prioritize requests remembered (LRU) so ``/bind`` knows their
        requests and data wishes.
    rack_label:
        Node label naming the rack.
    """

    url_prefix: str = ""
    costs: LocalityCosts = field(default_factory=LocalityCosts)
    hotspot_threshold: float = 0.8
    bind_enabled: bool = True
    inflight_ttl_s: float = 30.0
    event_interval_s: float = 300.0
    events_per_s: float = 5.0
    event_burst: int = 20
    max_body_bytes: int = MAX_CANDIDATE_NODES * NODE_OBJECT_BUDGET_B + 1024 * 1024
    max_pending_pods: int = 10_000
    rack_label: str = labels.DEFAULT_RACK

    def __post_init__(self) -> None:
        if self.url_prefix and (not self.url_prefix.startswith("/") or self.url_prefix.endswith("/")):
            raise ValueError(f"url_prefix {self.url_prefix!r} must start with '/' and not end with '/' (or be empty)")
        if not 0.0 <= self.hotspot_threshold <= 1.0:
            raise ValueError("hotspot_threshold must be within 0..1")
        if self.inflight_ttl_s <= 0 or self.event_interval_s < 0 or self.events_per_s <= 0 or self.event_burst < 1:
            raise ValueError("inflight_ttl_s and events_per_s must be > 0, event_interval_s >= 0, event_burst >= 1")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")

    def path(self, verb: str) -> str:
        """The URL path of a verb under the prefix (``/kbl`` + ``filter`` -> ``/kbl/filter``)."""
        return f"{self.url_prefix}/{verb}"


def normalize_prefix(prefix: str) -> str:
    """Turn a user-given prefix (``kbl/``, ``/kbl``, ``/``) into the settings form (``/kbl`` or ``""``)."""
    stripped = prefix.strip().strip("/")
    return f"/{stripped}" if stripped else ""
