"""The node agent's knobs: one settings object with defaults, units in the names."""

from __future__ import annotations

from dataclasses import dataclass

#: The audience of the projected ServiceAccount tokens that readers and peers present.
DEFAULT_AUDIENCE = "kbl-agent"
#: Where the DaemonSet mounts the agent's own projected token (sent to peers).
DEFAULT_TOKEN_PATH = "/var/run/secrets/kbl/token"  # noqa: S105 - a path, not a secret


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Everything an agent needs to know about itself.

    Attributes
    ----------
    node:
        The node's name (the NodeHoldings object's name).
    root:
        The data root on the node (``/var/lib/kbl`` in the DaemonSet).
    host, port:
        Where the read API listens; ``port=0`` takes a free port (reported in the holdings).
    advertise_host:
        The host in the endpoint peers use (defaults to ``host``; the pod IP in a cluster).
    bandwidth_bytes_per_s:
        Token-bucket rate shared by every hydration copy (0: unbounded), and the rate of a second
        bucket shared by every piece sent to a peer (the sending side of those copies). Reads by
        pods are never throttled, so hydration cannot starve them.
    burst_bytes:
        The bucket's depth.
    scrub_interval_s:
        Seconds between two full re-verifications of every piece (0: no periodic scrub).
    report_min_interval_s:
        At most one NodeHoldings write per this many seconds (always written on a change).
    heartbeat_s:
        A holdings write at least this often even when nothing changed.
    resync_s:
        Seconds between two reconciles of the disk against the placements when no event came.
    parallel_copies:
        Pieces hydrated at once.
    chunk_bytes:
        Read/write unit of copies and of the read API.
    segment_bytes:
        The segment of a shard (:mod:`dataplane.agent.segments`): the unit of erasure coding,
        of the per-segment checksums and of every verified read.
    encoder_wait_s:
        How long a fragment holder waits for its zone's encoder to start (the encoder reads the
        shard from the source once and stages every fragment of its zone) before it reads the
        source itself. It waits as long as the encoder reports the shard hydrating.
    stream_window_segments, stream_attach_s, stream_stall_s:
        The zone's encoder streams the fragments of its zone's other holders to them as it encodes
        (:mod:`dataplane.agent.live`): at most ``stream_window_segments`` encoded segments per
        holder wait in memory (0: no streaming, every fragment staged on disk); a holder not
        attached within ``stream_attach_s`` of the encode's start when its window fills has its
        fragment staged on disk instead; one attached and silent for ``stream_stall_s`` is dropped
        (it rebuilds its fragment from its zone or reads the source).
    staging_ttl_s:
        Fragments staged for other holders are removed once those hold them, or after this long.
    reboot_required_file:
        A file whose presence means the node needs a reboot to finish patching (the host's
        ``/var/run/reboot-required``, mounted in the DaemonSet); the agent labels its Node
        ``kbl.io/reboot-required=true`` while it exists, for the companion controller's
        data-aware reboots. Empty: not checked.
    holdings_ttl_s:
        A peer's NodeHoldings, read when a copy needs it, is reused for this long.
    checkpoint_bytes:
        A resumable copy (a replica from the source, any piece from a peer) is checkpointed
        every this many bytes: a crash or a broken connection loses at most this much.
    capacity_bytes:
        A quota for this agent's data (0: the filesystem's own size). A write that would pass it
        fails like a full disk (ENOSPC).
    token_cache_s:
        Seconds a TokenReview answer is reused.
    access_review_cache_s:
        Seconds a SubjectAccessReview answer (allowed or denied) is reused: a removed RBAC
        binding stops working within this time.
    audience:
        The audience the TokenReview asks for.
    peer_timeout_s:
        Timeout of one request to a peer or the source.
    s3_part_bytes:
        Size of one ranged GET of a multipart S3 download.
    s3_max_attempts:
        botocore attempts per S3 call (throttling and 5xx are retried, standard mode).
    retry_base_s, retry_max_s:
        Backoff of a piece whose hydration failed: doubling from the base, at most the max.
    """

    node: str
    root: str
    host: str = "0.0.0.0"  # noqa: S104 - the DaemonSet listens on the pod IP
    port: int = 8090
    advertise_host: str = ""
    scheme: str = "http"
    bandwidth_bytes_per_s: float = 0.0
    burst_bytes: int = 4 << 20
    scrub_interval_s: float = 3600.0
    report_min_interval_s: float = 1.0
    heartbeat_s: float = 30.0
    resync_s: float = 2.0
    parallel_copies: int = 4
    chunk_bytes: int = 1 << 20
    segment_bytes: int = 1 << 20
    encoder_wait_s: float = 30.0
    staging_ttl_s: float = 3600.0
    stream_window_segments: int = 16
    stream_attach_s: float = 5.0
    stream_stall_s: float = 10.0
    checkpoint_bytes: int = 64 << 20
    holdings_ttl_s: float = 1.0
    reboot_required_file: str = ""
    capacity_bytes: int = 0
    token_cache_s: float = 10.0
    access_review_cache_s: float = 10.0
    audience: str = DEFAULT_AUDIENCE
    peer_timeout_s: float = 30.0
    s3_part_bytes: int = 8 << 20
    s3_max_attempts: int = 8
    retry_base_s: float = 0.25
    retry_max_s: float = 30.0
