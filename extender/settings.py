"""The extender's knobs, in one frozen settings object with defaults and units in the names.

Everything an operator may tune lives in :class:`ExtenderSettings`: the URL prefix the verbs are
served under, the per-level locality costs, hotspot avoidance, binding, event rate limits, the
time an in-flight assignment is trusted, and the request-size bounds that protect the server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from topology import labels
from topology.errors import KblError
from topology.localities import LocalityCosts

#: Size of a real node object (``fixtures/eks-node.json`` is 8 KB); 16 KiB leaves room for nodes
#: with many images or labels.
NODE_OBJECT_BUDGET_B = 16 * 1024
#: The largest candidate list kube-scheduler sends in practice (a 5,000-node cluster).
MAX_CANDIDATE_NODES = 5000
#: The ``schedulerName`` of kbl's own kube-scheduler (the chart's ``scheduler.name``).
DEFAULT_SCHEDULER_NAME = "kbl-scheduler"


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
        is gone (see :func:`extender.scoring.effective_costs`). The default ``1.0`` fades only a
        node that cannot take the pod in the cache (bound + in-flight + this pod over
        allocatable): kube-scheduler's NodeResourcesFit already keeps full nodes out of its own
        view, so fading earlier only gives away a data node's last local slots while cheaper
        readers are left for later (measured in BENCHMARKS.md, issue 5: 1.116x the optimum at
        0.8 against 1.019x with the defaults); the full-in-the-cache case still catches binds kube-scheduler
        has not seen (another scheduler, an extender restart). Contention for a hot node is
        handled by the pending-batch term (``batch_limit``), which prices a slot by what other
        pending readers of the data would lose, instead of by utilization.
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
    batch_limit:
        Most *other* pending pods (known from the watch, same scheduler, usable data wish)
        priced into a pod's score (:mod:`extender.batching`); with more, or with 0, the pod is
        scored on its own (plain locality). Bounds the work per state change: the assignment has
        at most ``limit * (limit + 2)`` arcs whatever the cluster size.
    slot_prices:
        Add to every node the online shadow price of one of its pod slots (what the workload
        seen so far loses, on average, when that node runs out of room:
        :class:`extender.pricing.SlotPrices`) before scoring a pod that is priced with other
        pending pods. Only with ``batch_limit > 0``. Off by default: on the locality benchmark it
        helps Job bursts a little on three seeds but costs one of three seeds of the first trace
        and multiplies the extender's p99 (BENCHMARKS.md, issue 25 item 2, slot prices).
    scheduler_name:
        The kbl scheduler's default profile (``spec.schedulerName`` of kbl pods); the admission
        webhook routes only pods of this scheduler (:mod:`extender.admission`).
    exhaustive_scheduler_name:
        The profile of the same kube-scheduler with ``percentageOfNodesToScore: 100``; the
        webhook routes there the pods it cannot narrow to their data holders by name (preferred
        locality, or the zone fallback). ``""`` (default): no routing.
    narrowing:
        Gate preferred data pods at creation and narrow them before kube-scheduler samples
        (:mod:`extender.narrowing`) instead of routing them; needs the gate controller (``kbl
        serve`` with an API server) and falls back to routing while it is not alive.
    narrow_candidates:
        How many nodes with room a gated pod is narrowed to (cheapest network cost first).
    narrow_release_timeout_s:
        Seconds a narrowed pod may stay unbound before it is deleted and recreated unnarrowed.
    """

    url_prefix: str = ""
    costs: LocalityCosts = field(default_factory=LocalityCosts)
    hotspot_threshold: float = 1.0
    bind_enabled: bool = True
    inflight_ttl_s: float = 30.0
    event_interval_s: float = 300.0
    events_per_s: float = 5.0
    event_burst: int = 20
    max_body_bytes: int = MAX_CANDIDATE_NODES * NODE_OBJECT_BUDGET_B + 1024 * 1024
    max_pending_pods: int = 10_000
    rack_label: str = labels.DEFAULT_RACK
    batch_limit: int = 32
    slot_prices: bool = False
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    exhaustive_scheduler_name: str = ""
    narrowing: bool = False
    narrow_candidates: int = 16
    narrow_release_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.url_prefix and (not self.url_prefix.startswith("/") or self.url_prefix.endswith("/")):
            raise ValueError(f"url_prefix {self.url_prefix!r} must start with '/' and not end with '/' (or be empty)")
        if not 0.0 <= self.hotspot_threshold <= 1.0:
            raise ValueError("hotspot_threshold must be within 0..1")
        if self.inflight_ttl_s <= 0 or self.event_interval_s < 0 or self.events_per_s <= 0 or self.event_burst < 1:
            raise ValueError("inflight_ttl_s and events_per_s must be > 0, event_interval_s >= 0, event_burst >= 1")
        if self.batch_limit < 0:
            raise ValueError("batch_limit must be >= 0")
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if self.narrow_candidates < 1 or self.narrow_release_timeout_s <= 0:
            raise ValueError("narrow_candidates must be >= 1 and narrow_release_timeout_s > 0")
        if not self.scheduler_name or self.exhaustive_scheduler_name == self.scheduler_name:
            raise ValueError("scheduler_name must be set and differ from exhaustive_scheduler_name")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "settings") -> ExtenderSettings:
        """Settings from a mapping of field names (a ``kbl serve --config`` file).

        Keys are the field names above, in snake_case or camelCase (``hotspotThreshold``);
        ``costs`` is a mapping of ``node``, ``rack``, ``zone``, ``region``, ``remote``.

        Raises
        ------
        KblError
            Naming the key: an unknown key, a value of the wrong type, or one out of range.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = _snake(str(raw_key))
            if key not in fields:
                raise KblError(f"{source}: unknown setting {raw_key!r}; known: {', '.join(sorted(fields))}")
            default = getattr(cls(), key)
            if key == "costs":
                if not isinstance(value, Mapping):
                    raise KblError(f"{source}: costs: expected a mapping of node, rack, zone, region, remote")
                try:
                    values[key] = dataclasses.replace(default, **{str(k): float(v) for k, v in value.items()})
                except (TypeError, ValueError) as exc:
                    raise KblError(f"{source}: costs: {exc}") from None
                continue
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default))
            if not ok:
                raise KblError(f"{source}: {raw_key}: expected {type(default).__name__}, got {value!r}")
            values[key] = float(value) if isinstance(default, float) else value
        try:
            return cls(**values)
        except ValueError as exc:
            raise KblError(f"{source}: {exc}") from None

    def path(self, verb: str) -> str:
        """The URL path of a verb under the prefix (``/kbl`` + ``filter`` -> ``/kbl/filter``)."""
        return f"{self.url_prefix}/{verb}"


def _snake(name: str) -> str:
    """``hotspotThreshold`` -> ``hotspot_threshold`` (snake_case passes through)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def normalize_prefix(prefix: str) -> str:
    """Turn a user-given prefix (``kbl/``, ``/kbl``, ``/``) into the settings form (``/kbl`` or ``""``)."""
    stripped = prefix.strip().strip("/")
    return f"/{stripped}" if stripped else ""
