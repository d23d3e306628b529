"""Reconciler settings: every knob of the placement reconciler, in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from placement.settings import PlacementSettings
from topology.slices import INLINE_PLACEMENT_BYTES

#: etcd's default ``--max-request-bytes`` (1.5 MiB): the largest object a default API server
#: stores (a custom resource is stored as its JSON; the API server refuses request bodies over
#: 3 MiB before that: kubernetes/kubernetes#107233).
MAX_OBJECT_BYTES = 1_572_864

#: The planners' defaults, with repairs spread over receivers (a copy's time is per receiving node).
RECONCILER_PLACEMENT = PlacementSettings(fill_spread=1.0)


@dataclass(frozen=True, slots=True)
class ReconcilerSettings:
    """Knobs of the placement reconciler (durations in seconds).

    Attributes
    ----------
    node_lost_grace_s:
        A NotReady node is *lost* (its pieces rebuilt elsewhere) once its ``Ready`` condition
        has been false this long; before that its pieces stay in the target (a reboot, a flap).
    max_transfers_per_node:
        In-flight transfers (``status.transfers``) a node may *serve* (be the ``from`` of), over
        every DataSet; moves beyond it wait for a later pass (0: no bound). A lost holder's
        repairs are never held back. What a node *receives* is not bounded here: a joiner gets
        its whole share of the target in one pass, and its agent copies ``parallel_copies``
        (default 4) pieces at a time, repairs and first copies before moves.
    resync_s:
        Every DataSet is reconciled at least this often, events or not.
    agent_ttl_s:
        A node's agent is *live* while its ``NodeHoldings`` ``status.heartbeatTime`` is younger
        than this (the agent writes one at least every 30 s). A node whose agent is silent past it
        is a lost holder, exactly as a node lost: its pieces no longer count ready, it gets no new
        pieces, its slots get new holders. A node with no ``NodeHoldings`` (or no heartbeat) counts
        as live only during the first ``agent_ttl_s`` after the reconciler starts (agents of a
        brand-new cluster, or a restarted reconciler's, have that long to report); afterwards
        it is silent. 0: liveness is not checked (every present node has an agent).
    eta_smoothing_s:
        Time constant of the bytes-ready rate behind ``status.estimatedReadyTime`` (an
        exponentially weighted mean of the rate between passes at least ``eta_sample_s`` apart:
        a sample ``dt`` seconds after the last weighs ``1 - exp(-dt / eta_smoothing_s)``).
    eta_sample_s:
        The shortest interval between two rate samples of one DataSet.
    weight:
        The allocatable resource that weighs nodes (as :func:`placement.place`).
    seed:
        The rendezvous seed of every placement (same seed, same placement: restarts converge).
    placement:
        The planners' own knobs (``fill_spread=1``: a repair gives no node more than its
        share of the missing bytes, so copies run in parallel on many nodes).
    max_object_bytes:
        The largest DataSet object the API server stores (:data:`MAX_OBJECT_BYTES`, etcd's
        default; EKS does not let it be raised). A new target whose object (its spec, metadata
        and status, ``status.placement`` counted exactly by
        :func:`~dataplane.reconciler.planning.placement_json_bytes`) would be larger is not
        written: the DataSet keeps its previous target (or none) and gets ``Placed=False``
        reason ``PlacementTooLarge`` with the sizes and a Warning Event, instead of a write the
        API server refuses on every pass. 0: no check (an etcd configured for larger requests).
    inline_placement_bytes:
        A target whose ``status.placement`` JSON is larger than this is written as
        PlacementSlices (:mod:`topology.slices`: immutable objects of at most 2,048 pieces) and
        ``status.placement`` holds their index: no DataSet object grows past etcd's limit, a
        change writes only the slices it touches, and a status write sends every agent a small
        object. 0: every target is sliced.
    progress_write_s:
        A status write that only moves progress (pieces and bytes ready, the progress text, the
        ETA, a condition's message) waits until this long after the DataSet's last write. Every
        watcher of DataSets (each node's agent, the extender, the controller) receives the whole
        object with each write, and while agents hydrate a write per pass would send the target
        to every node several times a second. Anything else (the target, transfers, lost
        shards, a condition's status or reason, ``observedGeneration``) is written at once, and
        a deferred write is made when it is due. 0: every change at once.
    incremental:
        Re-plan a placed DataSet with :func:`placement.shifts.shift` (only the pieces a join,
        loss or drain forces move, O(pieces) numpy) before falling back to
        :func:`placement.place`; ``False``: always ``place`` (the exact planner, the oracle the
        tests compare the shift with).
    """

    node_lost_grace_s: float = 300.0
    max_transfers_per_node: int = 64
    resync_s: float = 30.0
    agent_ttl_s: float = 120.0
    eta_smoothing_s: float = 300.0
    eta_sample_s: float = 10.0
    weight: str = "ephemeral-storage"
    seed: int = 0
    placement: PlacementSettings = field(default_factory=lambda: RECONCILER_PLACEMENT)
    incremental: bool = True
    max_object_bytes: int = MAX_OBJECT_BYTES
    progress_write_s: float = 10.0
    inline_placement_bytes: int = INLINE_PLACEMENT_BYTES

    def __post_init__(self) -> None:
        if (
            self.node_lost_grace_s < 0 or self.resync_s <= 0 or self.max_transfers_per_node < 0 or self.agent_ttl_s < 0
            or self.eta_smoothing_s <= 0 or self.eta_sample_s < 0 or self.max_object_bytes < 0 or self.progress_write_s < 0
            or self.inline_placement_bytes < 0
        ):
            raise ValueError(
                "grace, agent TTL and ETA sample interval must be >= 0, resync and ETA smoothing > 0, "
                "the transfer bound, the object sizes and the progress interval >= 0"
            )
