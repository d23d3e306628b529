"""Making the disk match the placement: what this node must hold, and getting it there.

Deciding apart from doing: :func:`slots_for` is pure (the placement and transfers in, the
pieces this node must hold and must keep out); :class:`Hydrator` does the I/O.

For every DataSet with a placement, the node's **targets** are the slots ``(shard, piece)`` the
placement assigns to it, and its **keep** set adds the slots of ``status.transfers`` whose
``from`` is this node (make before break: the old holder keeps its copy until the reconciler
releases it). A piece on disk outside the keep set is deleted; a DataSet without a placement
deletes nothing; a DataSet that is gone, or re-created with another uid, loses its folder. One
that does not parse, or whose sliced target has not arrived (:attr:`ClusterView.waiting`), is
not gone: its folder stays.

Source choice for a missing piece, cheapest first (the bytes hydrated are counted per kind):

1. ``peer-zone``: a ready holder of the same piece in this node's zone; for an erasure fragment
   that nobody else holds, any ``k`` other fragments ready in this zone, rebuilt with the codec;
2. ``source``: the DataSet's ``spec.source`` (the replica byte for byte, or the shard encoded
   into ``k+m`` fragments of which this node keeps its own);
3. ``peer-cross-zone``: the same, from holders in other zones.

Every copy goes through the shared token bucket, into a temporary file, is verified against the
checksum the source or the peer gave, and only then renamed into place (:mod:`.storing`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dataplane.agent.bandwidth import TokenBucket
from dataplane.agent.coding import Codec, CodingError, codec
from dataplane.agent.live import FrameReader, LiveFragment, StreamError
from dataplane.agent.metrics import PEER_CROSS_ZONE, PEER_ZONE, SOURCE, AgentMetrics
from dataplane.agent.segments import pack, resegment, segment_sum
from dataplane.agent.settings import AgentSettings
from dataplane.agent.sources import PeerClient, Reader, SourceError, reader_for
from dataplane.agent.storing import AgentError, ChecksumError, DiskFullError, PieceRecord, Store
from dataplane.agent.streaming import checked_segments, zip_parallel
from topology.datasets import DataSet, DataSetSpec, Erasure
from topology.holdings import REPLICA, NodeHoldings, piece_key

log = logging.getLogger(__name__)

Slot = tuple[int, str]  # (shard, piece key)


@dataclass(frozen=True, slots=True)
class Slots:
    """What one node must hold of one DataSet: ``targets`` (slot -> piece index) and ``keep``."""

    targets: dict[Slot, int]
    keep: frozenset[Slot]


def holders_of(dataset: DataSet, shard: int) -> list[tuple[int, str]]:
    """``(piece index, node)`` of every placed piece of ``shard`` (one scan of its placement row)."""
    placement = dataset.placement
    if placement is None or not 0 <= shard < placement.shards:
        return []
    return [(p, placement.nodes[at]) for p, at in enumerate(placement.pieces[shard].tolist()) if at >= 0]


def candidates(dataset: DataSet, shard: int, key: str, node: str) -> list[str]:
    """The nodes whose holdings ``node`` reads to copy ``(shard, key)``: its holders in the
    placement and the ``from`` of its transfers (pure: what an agent reads is decided here)."""
    out = [holder for p, holder in holders_of(dataset, shard) if piece_key(dataset.spec, p) == key]
    out += [t.source for t in dataset.transfers if t.shard == shard and piece_key(dataset.spec, t.piece) == key]
    return list(dict.fromkeys(n for n in out if n != node))


def _resume_name(spec: DataSetSpec, shard: int, key: str) -> str:
    """The name of a piece's partial copy, stable across attempts (``~`` is not allowed in object names)."""
    return f"{spec.namespace}~{spec.name}~{spec.uid}~{shard}~{key}"


def _age_s(stamp: str) -> float:
    """Seconds since an RFC 3339 time (infinite when absent or unreadable)."""
    try:
        return time.time() - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")


def slots_for(dataset: DataSet, node: str) -> Slots | None:
    """The node's target and keep slots (``None`` when the DataSet has no placement yet)."""
    placement = dataset.placement
    if placement is None:
        return None
    targets: dict[Slot, int] = {}
    try:
        me = placement.nodes.index(node)
    except ValueError:
        me = -1
    if me >= 0:
        rows, cols = (placement.pieces == me).nonzero()
        for s, p in zip(rows.tolist(), cols.tolist(), strict=True):
            targets[(s, piece_key(dataset.spec, p))] = p
    keep = set(targets)
    for t in dataset.transfers:
        if t.source == node:
            keep.add((t.shard, piece_key(dataset.spec, t.piece)))
    return Slots(targets, frozenset(keep))


@dataclass
class Local:
    """This node's pieces of one DataSet (in memory, rebuilt from disk at start)."""

    uid: str
    ready: dict[Slot, PieceRecord] = field(default_factory=dict)
    hydrating: set[Slot] = field(default_factory=set)
    corrupt: set[Slot] = field(default_factory=set)
    retry_at: dict[Slot, float] = field(default_factory=dict)
    failures: dict[Slot, int] = field(default_factory=dict)


class HoldingsCache:
    """Peers' NodeHoldings read on demand, one node at a time, each answer kept ``ttl_s``.

    The agent does not watch every node's holdings (at 5,000 nodes every holdings write would wake
    5,000 agents): it reads those of the nodes the placement names as holders of a piece it must
    copy, when it copies. In steady state (nothing to hydrate) it reads none.
    """

    def __init__(self, fetch: Callable[[str], NodeHoldings | None], *, ttl_s: float = 1.0) -> None:
        self._fetch = fetch
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, NodeHoldings | None]] = {}
        self._lock = threading.Lock()
        self.reads = 0

    def get(self, node: str, *, fresh: bool = False) -> NodeHoldings | None:
        """``node``'s holdings, from the cache unless ``fresh`` (a read that found too few holders asks again)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(node)
            if not fresh and hit is not None and now - hit[0] < self.ttl_s:
                return hit[1]
        found = self._fetch(node)
        with self._lock:
            self.reads += 1
            self._cache[node] = (time.monotonic(), found)
        return found

    def put(self, holdings: NodeHoldings) -> None:
        """An answer known without a read (tests, or a node's own report)."""
        with self._lock:
            self._cache[holdings.node] = (time.monotonic(), holdings)


@dataclass
class ClusterView:
    """What the agent knows of the cluster: DataSets (watched), peers' holdings (read on demand) and node zones."""

    holdings: HoldingsCache
    datasets: dict[str, DataSet] = field(default_factory=dict)
    raw: dict[str, dict[str, object]] = field(default_factory=dict)
    zones: dict[str, str] = field(default_factory=dict)
    #: DataSets that exist but do not parse: their folders are left alone (never wiped for a typo).
    invalid: set[str] = field(default_factory=set)
    #: DataSets whose newest version names PlacementSlices not all received yet (the two watch
    #: streams are not ordered): ``datasets`` keeps the last version acted on, if any, and their
    #: folders are left alone as the invalid ones' are. Not unplaced: not known yet.
    waiting: set[str] = field(default_factory=set)
    synced: bool = False

    def kept(self, key: str) -> bool:
        """Whether a DataSet missing from ``datasets`` still exists (invalid, or waiting for its
        slices): its folder and partial copies are kept."""
        return key in self.invalid or key in self.waiting


EventSink = Callable[[str, str, str, str], None]  # (dataset key, reason, message, type)


class Deferred(AgentError):  # noqa: N818 - not a failure: "later"
    """Not now: the zone's encoder is about to stage this fragment; the copy is tried again shortly."""


class Hydrator:
    """The disk of one node made to match the placements (module docstring)."""

    def __init__(
        self,
        settings: AgentSettings,
        store: Store,
        view: ClusterView,
        peers: PeerClient,
        metrics: AgentMetrics,
        *,
        events: EventSink | None = None,
        zone_of: Callable[[str], str] | None = None,
        readers: Callable[[DataSet], Reader] | None = None,
    ) -> None:
        self.settings = settings
        self.node = settings.node
        self.store = store
        self.view = view
        self.peers = peers
        self.metrics = metrics
        self.events = events or (lambda *_: None)
        self.zone_of = zone_of or (lambda n: view.zones.get(n, ""))
        self._readers = readers
        rate = settings.bandwidth_bytes_per_s
        # At most half a second of traffic in one burst, so a low rate is a low rate from the start.
        burst = min(settings.burst_bytes, max(settings.chunk_bytes, int(rate * 0.5))) if rate > 0 else settings.burst_bytes
        self.bucket = TokenBucket(rate, burst)
        self.local: dict[str, Local] = {}
        self.lock = threading.RLock()
        self.pool = ThreadPoolExecutor(max_workers=max(1, settings.parallel_copies), thread_name_prefix=f"hydrate-{self.node}")
        self.inflight: dict[tuple[str, Slot], Future[None]] = {}
        self.changed = threading.Event()
        self.disk_full = False
        self.last_error = ""
        self._reader_cache: dict[tuple[str, str], Reader] = {}
        #: Fragments being encoded for zone peers, streamed as they are (:mod:`.live`): same key -> (uid, fragment).
        self.live: dict[tuple[str, int, str], tuple[str, LiveFragment]] = {}
        #: Fragments staged for zone peers: (dataset key, shard, piece key) -> (uid, holder, staged at).
        self.staged: dict[tuple[str, int, str], tuple[str, str, float]] = {}
        #: Bytes hydrated per DataSet (for the per-DataSet throughput), and the last progress sample.
        self.hydrated_by_dataset: dict[str, int] = {}
        self._progress: dict[str, tuple[float, int, float]] = {}  # key -> (at, hydrated, smoothed bytes/s)
        #: When this node first waited for its zone's reader of a shard, per (dataset key, shard).
        self._waiting: dict[tuple[str, int], float] = {}
        #: The sending side of peer copies: pieces served to peers share this bucket.
        self.send_bucket = TokenBucket(rate, burst)

    # ------------------------------------------------------------------ state
    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def reader(self, dataset: DataSet) -> Reader:
        if self._readers is not None:
            return self._readers(dataset)
        assert dataset.spec.source is not None
        key = (dataset.key, repr(dataset.spec.source))
        if key not in self._reader_cache:
            self._reader_cache[key] = reader_for(dataset.spec.source, self.settings)
        return self._reader_cache[key]

    def local_of(self, dataset: DataSet) -> Local:
        """The DataSet's local state, loaded from disk the first time (wiped when the uid changed)."""
        spec = dataset.spec
        with self.lock:
            state = self.local.get(dataset.key)
            if state is not None and state.uid == spec.uid:
                return state
            on_disk = self.store.dataset_uid(spec.namespace, spec.name)
            if on_disk != spec.uid:
                if on_disk:
                    log.info("%s: uid %s on disk, %s in the cluster: starting over", dataset.key, on_disk, spec.uid)
                self.store.remove_dataset(spec.namespace, spec.name)
                self.store.set_dataset_uid(spec.namespace, spec.name, spec.uid)
            state = Local(uid=spec.uid)
            state.ready = self.store.scan(spec.namespace, spec.name, spec.shard_name)
            self.local[dataset.key] = state
            self.changed.set()
            return state

    # -------------------------------------------------------------- reconcile
    def reconcile(self) -> int:
        """One pass over every DataSet: delete what is released, start missing copies; returns copies started."""
        started = 0
        with self.lock:
            datasets = dict(self.view.datasets)
            synced = self.view.synced
        mine: dict[str, Slots] = {}
        for key, dataset in datasets.items():
            slots = slots_for(dataset, self.node)
            if slots is None:
                continue
            if not slots.targets and key not in self.local and not self._on_disk(dataset):
                continue
            mine[key] = slots
            state = self.local_of(dataset)
            self._release(dataset, state, slots)
            now = time.monotonic()
            todo = [
                slot
                for slot in slots.targets
                if slot not in state.ready and (key, slot) not in self.inflight and state.retry_at.get(slot, 0.0) <= now
            ]
            moving = {(t.shard, piece_key(dataset.spec, t.piece)) for t in dataset.transfers if t.to == self.node} if todo else set()
            # Repairs and first copies before moves whose old holder still holds the piece; bigger shards first.
            for slot in sorted(todo, key=lambda sl: (sl in moving, -int(dataset.spec.shard_sizes[sl[0]]), sl)):
                started += 1
                with self.lock:
                    state.hydrating.add(slot)
                    self.inflight[(key, slot)] = self.pool.submit(self._hydrate_task, dataset, slot, slots.targets[slot])
        self._report_progress(datasets, mine)
        if synced:
            self._forget_deleted(datasets)
            if not self.inflight:
                self._forget_partials(datasets)
        if self.staged:
            self._clean_staging(datasets)
        return started

    def _report_progress(self, datasets: dict[str, DataSet], mine: dict[str, Slots]) -> None:
        """Per-DataSet gauges: bytes still to hydrate here, and the hydration throughput (moving average)."""
        now = time.monotonic()
        for key in [k for k in self._progress if k not in datasets]:
            self._progress.pop(key)
            ns, _, name = key.partition("/")
            with contextlib.suppress(KeyError):
                self.metrics.dataset_remaining.remove(ns, name)
                self.metrics.dataset_throughput.remove(ns, name)
        for key, slots in mine.items():
            dataset = datasets[key]
            state = self.local.get(key)
            spec = dataset.spec
            red = spec.redundancy
            k = red.k if isinstance(red, Erasure) else 1
            ready = state.ready if state is not None else {}
            remaining = sum(int(spec.shard_sizes[s]) // k for s, _key in slots.targets if (s, _key) not in ready)
            with self.lock:
                done = self.hydrated_by_dataset.get(key, 0)
            at, before, rate = self._progress.get(key, (now, done, 0.0))
            if now - at >= 1.0:
                sample = (done - before) / (now - at)
                rate = 0.3 * sample + 0.7 * rate  # about ten one-second samples
                at, before = now, done
            self._progress[key] = (at, before, rate)
            self.metrics.dataset_remaining.labels(spec.namespace, spec.name).set(remaining)
            self.metrics.dataset_throughput.labels(spec.namespace, spec.name).set(rate)

    def _on_disk(self, dataset: DataSet) -> bool:
        return bool(self.store.dataset_uid(dataset.namespace, dataset.name))

    def _release(self, dataset: DataSet, state: Local, slots: Slots) -> None:
        spec = dataset.spec
        for slot in [s for s in state.ready if s not in slots.keep]:
            shard, key = slot
            if (dataset.key, slot) in self.inflight:
                continue
            log.info("%s: releasing %s/%s", dataset.key, shard, key)
            self.store.remove(spec.namespace, spec.name, spec.shard_name(shard), shard, key)
            with self.lock:
                state.ready.pop(slot, None)
            self.changed.set()
        with self.lock:
            state.corrupt &= set(slots.targets)

    def _forget_partials(self, datasets: dict[str, DataSet]) -> None:
        """Partial copies of DataSets that are gone or re-created are dropped (nobody will resume them)."""
        live = {(d.spec.namespace, d.spec.name, d.spec.uid) for d in datasets.values()}
        for name, path in self.store.partials():
            ns, _, rest = name.partition("~")
            ds, _, rest = rest.partition("~")
            uid = rest.partition("~")[0]
            if (ns, ds, uid) not in live and not self.view.kept(f"{ns}/{ds}"):
                self.store.drop_partial(path)

    def _forget_deleted(self, datasets: dict[str, DataSet]) -> None:
        for ns, name in self.store.local_datasets():
            key = f"{ns}/{name}"
            if key in datasets or self.view.kept(key):
                continue
            if any(k == key for k, _ in self.inflight):
                continue
            log.info("%s: DataSet gone, removing its folder", key)
            self.store.remove_dataset(ns, name)
            with self.lock:
                self.local.pop(key, None)
            self.changed.set()

    # -------------------------------------------------------------- hydration
    def _hydrate_task(self, dataset: DataSet, slot: Slot, piece: int) -> None:
        state = self.local_of(dataset)
        key = dataset.key
        try:
            record, kind = self.hydrate(dataset, slot, piece)
        except Deferred as exc:
            log.debug("%s: %s/%s: %s", key, slot[0], slot[1], exc)
            with self.lock:
                state.retry_at[slot] = time.monotonic() + 0.2
            wake = threading.Timer(0.21, self.changed.set)  # the reconcile loop would otherwise wait up to its resync
            wake.daemon = True
            wake.start()
        except DiskFullError as exc:
            self._failed(dataset, state, slot, "DiskFull", str(exc))
            self.disk_full = True
            self.metrics.disk_full.set(1)
        except (SourceError, ChecksumError, CodingError, AgentError, OSError) as exc:
            self._failed(dataset, state, slot, "HydrationFailed", str(exc))
        except Exception as exc:
            log.exception("%s: hydrating %s", key, slot)
            self._failed(dataset, state, slot, "HydrationFailed", repr(exc))
        else:
            with self.lock:
                if self.local.get(key) is state:
                    state.ready[slot] = record
                    state.corrupt.discard(slot)
                    state.failures.pop(slot, None)
                    state.retry_at.pop(slot, None)
                self._waiting.pop((key, slot[0]), None)
            self.disk_full = False
            self.metrics.disk_full.set(0)
            with self.lock:
                self.hydrated_by_dataset[key] = self.hydrated_by_dataset.get(key, 0) + record.size
            log.info("%s: %s/%s ready from %s (%d bytes)", key, slot[0], slot[1], kind, record.size)
        finally:
            with self.lock:
                state.hydrating.discard(slot)
                self.inflight.pop((key, slot), None)
            self.changed.set()

    def _failed(self, dataset: DataSet, state: Local, slot: Slot, reason: str, message: str) -> None:
        with self.lock:
            n = state.failures.get(slot, 0) + 1
            state.failures[slot] = n
            state.retry_at[slot] = time.monotonic() + min(self.settings.retry_max_s, self.settings.retry_base_s * 2 ** min(n - 1, 10))
        self.last_error = message
        self.metrics.failures.labels(reason).inc()
        log.warning("%s: %s/%s: %s: %s", dataset.key, slot[0], slot[1], reason, message)
        self.events(dataset.key, reason, f"node {self.node}: shard {slot[0]} piece {slot[1]}: {message}", "Warning")

    def hydrate(self, dataset: DataSet, slot: Slot, piece: int) -> tuple[PieceRecord, str]:
        """Copy one piece from the cheapest good source; ``(record, source kind)``.

        Raises :class:`Deferred` when the zone's encoder is about to stage this fragment (try
        again shortly), :class:`SourceError` when no source gave good bytes.
        """
        shard, key = slot
        started = time.monotonic()
        errors: list[str] = []
        deferred: Deferred | None = None
        for kind, attempt in self._plans(dataset, shard, key, piece):
            try:
                record = attempt()
            except DiskFullError:
                raise
            except Deferred as exc:
                deferred = exc
                break
            except (SourceError, ChecksumError, CodingError) as exc:
                errors.append(f"{kind}: {exc}")
                continue
            seconds = max(1e-9, time.monotonic() - started)
            self.metrics.hydrated_bytes.labels(kind).inc(record.size)
            self.metrics.hydrated_pieces.labels(kind).inc()
            self.metrics.copy_seconds.observe(seconds)
            self.metrics.throughput.set(record.size / seconds)
            return record, kind
        if deferred is not None:
            raise deferred
        raise SourceError("; ".join(errors) or "no holder and no source for this piece")

    def _candidates(self, dataset: DataSet, shard: int, key: str) -> list[str]:
        return candidates(dataset, shard, key, self.node)

    def _holders(self, dataset: DataSet, shard: int, key: str, *, fresh: bool = False) -> list[tuple[str, str]]:
        """``(node, endpoint)`` of peers that report ``(shard, key)`` ready for this uid (only the candidates are read)."""
        out = []
        for node in self._candidates(dataset, shard, key):
            h = self.view.holdings.get(node, fresh=fresh)
            if h is None or not h.endpoint:
                continue
            mine = h.of(dataset.key, dataset.spec.uid)
            if mine is not None and (not dataset.spec.uid or mine.uid == dataset.spec.uid) and mine.has_ready(key, shard):
                out.append((h.node, h.endpoint))
        return out

    def _transfer_source(self, dataset: DataSet, shard: int, piece: int) -> str:
        """The ``from`` node of the transfer that brings this slot here (``""`` when none)."""
        for t in dataset.transfers:
            if t.to == self.node and t.shard == shard and t.piece == piece:
                return t.source
        return ""

    def _plans(self, dataset: DataSet, shard: int, key: str, piece: int) -> Iterator[tuple[str, Callable[[], PieceRecord]]]:
        my_zone = self.zone_of(self.node)
        holders = [(n, e, self.zone_of(n)) for n, e in self._holders(dataset, shard, key)]  # one zone look-up per holder
        origin = self._transfer_source(dataset, shard, piece)
        if origin:
            # The reconciler chose where this copy comes from (its per-node transfer limit counts
            # on it): that holder first, the others only when it is gone.
            chosen = [h for h in holders if h[0] == origin]
            if chosen:
                _n, e, z = chosen[0]
                yield (PEER_ZONE if z == my_zone else PEER_CROSS_ZONE), lambda: self._from_peer(dataset, shard, key, e)
            else:
                log.info("%s: %s/%s: transfer source %s holds no ready copy; choosing another", dataset.key, shard, key, origin)
        same = [(n, e) for n, e, z in holders if z == my_zone and n != origin]
        other = [(n, e) for n, e, z in holders if z != my_zone and n != origin]
        red = dataset.spec.redundancy
        for _, endpoint in same:
            yield PEER_ZONE, lambda e=endpoint: self._from_peer(dataset, shard, key, e)  # type: ignore[misc]
        reader = self._zone_encoder(dataset, shard, my_zone)
        if isinstance(red, Erasure):
            if reader and reader != self.node:
                yield PEER_ZONE, lambda: self._from_encoder(dataset, shard, key, reader)
            near = self._fragment_holders(dataset, shard, key, zone=my_zone)
            if len(near) >= red.k:
                yield PEER_ZONE, lambda: self._rebuild(dataset, shard, piece, near)
        elif reader and reader != self.node and dataset.spec.source is not None:
            # One holder per zone reads a replica from the source; the others copy it from that one.
            yield PEER_ZONE, lambda: self._await(dataset, shard, reader, "reads it from the source")
        if dataset.spec.source is not None:
            yield SOURCE, lambda: self._from_source(dataset, shard, piece, stage=reader == self.node)
        for _, endpoint in other:
            yield PEER_CROSS_ZONE, lambda e=endpoint: self._from_peer(dataset, shard, key, e)  # type: ignore[misc]
        if isinstance(red, Erasure):
            anywhere = self._fragment_holders(dataset, shard, key, zone=None)
            if len(anywhere) >= red.k:
                yield PEER_CROSS_ZONE, lambda: self._rebuild(dataset, shard, piece, anywhere)

    def _fragment_holders(
        self, dataset: DataSet, shard: int, missing: str, *, zone: str | None, fresh: bool = False
    ) -> list[tuple[str, str, str]]:
        """``(fragment key, node, endpoint)``, one holder per other fragment (same zone first)."""
        red = dataset.spec.redundancy
        assert isinstance(red, Erasure)
        out: list[tuple[str, str, str]] = []
        my_zone = self.zone_of(self.node)
        for p in range(red.k + red.m):
            key = str(p)
            if key == missing:
                continue
            holders = self._holders(dataset, shard, key, fresh=fresh)
            if zone is not None:
                holders = [h for h in holders if self.zone_of(h[0]) == zone]
            holders.sort(key=lambda h: self.zone_of(h[0]) != my_zone)
            if holders:
                out.append((key, *holders[0]))
        return out

    # ---------------------------------------------------------- encode once
    def _zone_encoder(self, dataset: DataSet, shard: int, zone: str) -> str:
        """The node that reads shard ``shard`` from the source for ``zone`` (and encodes it, for erasure).

        The target holder of the lowest piece index in that zone: every agent computes the same
        from the placement, so exactly one per zone reads the source; the zone's other holders
        copy from it (a replica once it is ready there, a fragment from what it staged).
        """
        return next((node for _p, node in holders_of(dataset, shard) if self.zone_of(node) == zone), "")

    def _zone_slots(self, dataset: DataSet, shard: int) -> list[tuple[int, str]]:
        """``(fragment index, node)`` of the other target holders of ``shard`` in this node's zone."""
        zone = self.zone_of(self.node)
        return [(p, node) for p, node in holders_of(dataset, shard) if node != self.node and self.zone_of(node) == zone]

    def _from_encoder(self, dataset: DataSet, shard: int, key: str, encoder: str) -> PieceRecord:
        """This fragment from the zone's encoder (staged or ready there); :class:`Deferred` while it encodes."""
        h = self.view.holdings.get(encoder)
        if h is None or not h.endpoint:
            return self._await(dataset, shard, encoder, "encodes it")
        try:
            return self._from_peer(dataset, shard, key, h.endpoint)
        except SourceError as exc:
            error = str(exc)
        try:
            return self._from_live(dataset, shard, key, h.endpoint)
        except (SourceError, ChecksumError, StreamError) as exc:
            error = f"{error}; streamed: {exc}"
        return self._await(dataset, shard, encoder, "encodes it", error)

    def _from_live(self, dataset: DataSet, shard: int, key: str, endpoint: str) -> PieceRecord:
        """This fragment pulled from the zone's encoder as it encodes it (:mod:`.live`): every segment
        checked against its table entry as it arrives, committed once the record came and matches."""
        spec = dataset.spec
        unit, chunks = self.peers.live(endpoint, spec.namespace, spec.name, shard, key)
        table: array[int] = array("Q")
        frames = FrameReader(chunks, f"fragment {shard}/{key} from {endpoint} (streamed)")
        try:
            with self.store.writer(unit=unit, digest="", expected_sums=table) as w:
                for data, xsum in frames:
                    self.bucket.take(len(data))
                    table.append(xsum)
                    w.write(data)
                record = frames.record
                if record is None or record.unit != unit or record.size != w.size or record.sums != table:
                    raise ChecksumError(f"fragment {shard}/{key} from {endpoint}: the record does not match the segments received")
                return self._commit(
                    dataset,
                    lambda: self._paths(dataset, shard, key),
                    lambda path, sums: w.commit_like(record, path, sums),
                )
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def live_fragment(self, dataset: DataSet, shard: int, key: str) -> LiveFragment | None:
        """The fragment this node is encoding for a zone peer right now, ``None`` when none."""
        with self.lock:
            found = self.live.get((dataset.key, shard, key))
        return found[1] if found is not None and found[0] == dataset.spec.uid else None

    def _await(self, dataset: DataSet, shard: int, node: str, what: str, error: str = "") -> PieceRecord:
        """Wait for ``node``, this zone's reader of the shard: :class:`Deferred` while its agent is alive
        and hydrating the shard (or has not started yet, for ``encoder_wait_s``); :class:`SourceError`
        (read it yourself) once it is silent, done without us, or too slow to start."""
        h = self.view.holdings.get(node)
        mine = h.of(dataset.key, dataset.spec.uid) if h is not None else None
        own = self._own_key(dataset, shard, node)
        alive = h is not None and _age_s(h.heartbeat) < 2 * self.settings.heartbeat_s + 10
        if alive and mine is not None and shard in mine.hydrating.get(own, frozenset()):
            raise Deferred(f"{node} {what}: shard {shard} is hydrating there")
        first = self._waiting.setdefault((dataset.key, shard), time.monotonic())
        if time.monotonic() - first < self.settings.encoder_wait_s and (mine is None or not mine.has_ready(own, shard)):
            raise Deferred(f"waiting for {node}, which {what}, to start on shard {shard}")
        raise SourceError(f"zone reader {node}: {error or 'not hydrating this shard'}")

    @staticmethod
    def _own_key(dataset: DataSet, shard: int, node: str) -> str:
        """The piece key ``node`` holds of ``shard`` in the placement (``""`` when none)."""
        return next((piece_key(dataset.spec, p) for p, holder in holders_of(dataset, shard) if holder == node), "")

    # ------------------------------------------------------------ quarantine
    def quarantine(self, dataset: DataSet, slot: Slot, why: str) -> None:
        """Take a piece that failed its checksum out of service: moved aside, reported corrupt, fetched again."""
        spec = dataset.spec
        shard, piece_key = slot
        with self.lock:
            state = self.local.get(dataset.key)
            if state is None or state.uid != spec.uid or slot not in state.ready:
                return
            state.ready.pop(slot, None)
            state.corrupt.add(slot)
        moved = self.store.quarantine(spec.namespace, spec.name, spec.shard_name(shard), shard, piece_key)
        self.metrics.corrupt.inc()
        message = (
            f"node {self.node}: shard {shard} piece {piece_key} failed its checksum ({why}); quarantined to {moved}, fetching a good copy"
        )
        log.warning("%s: %s", dataset.key, message)
        self.events(dataset.key, "PieceCorrupt", message, "Warning")
        self.changed.set()

    # ---------------------------------------------------------------- copies
    def _commit(self, dataset: DataSet, final: Callable[[], tuple[Path, Path]], commit: Callable[[Path, Path], PieceRecord]) -> PieceRecord:
        """Commit a finished copy if the DataSet is still the one it was copied for (fsync outside the lock)."""
        with self.lock:
            state = self.local.get(dataset.key)
            if state is None or state.uid != dataset.spec.uid:
                raise AgentError(f"{dataset.key} changed while copying")
        path, sums = final()
        return commit(path, sums)

    def _paths(self, dataset: DataSet, shard: int, key: str) -> tuple[Path, Path]:
        spec = dataset.spec
        layout = self.store.layout
        return (
            layout.piece_path(spec.namespace, spec.name, spec.shard_name(shard), shard, key),
            layout.sum_path(spec.namespace, spec.name, shard, key),
        )

    def _from_peer(self, dataset: DataSet, shard: int, key: str, endpoint: str) -> PieceRecord:
        """A peer's piece, every segment checked against the peer's record as it arrives.

        Resumable: a copy that broke off goes on after its last checkpointed segment, from this
        peer or another holder of the same bytes (the origin is the sender's segment table).
        """
        spec = dataset.spec
        theirs = self.peers.record(endpoint, spec.namespace, spec.name, shard, key)
        origin = f"piece:{theirs.size}:{theirs.unit}:{segment_sum(pack(theirs.sums).encode())}"
        with self.store.writer(
            unit=theirs.unit, digest="", expected_sums=theirs.sums, resume=_resume_name(spec, shard, key), origin=origin
        ) as w:
            if w.resumed_segments:
                log.info("%s: %s/%s: resuming after segment %d", dataset.key, shard, key, w.resumed_segments)
                self.metrics.resumed_bytes.inc(w.size)
            chunks = self.peers.piece(endpoint, spec.namespace, spec.name, shard, key, start=w.size)
            try:
                for chunk in chunks:
                    self.bucket.take(len(chunk))
                    w.write(chunk)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            if w.size != theirs.size:
                raise ChecksumError(f"piece {shard}/{key} from {endpoint}: {w.size} bytes, {theirs.size} promised")
            return self._commit(
                dataset,
                lambda: self._paths(dataset, shard, key),
                lambda path, sums: w.commit_like(theirs, path, sums),
            )

    def _codec(self, dataset: DataSet) -> Codec:
        red = dataset.spec.redundancy
        assert isinstance(red, Erasure)
        return codec(red.k, red.m)

    def _from_source(self, dataset: DataSet, shard: int, piece: int, *, stage: bool = False) -> PieceRecord:
        """Read the shard from the source once: the replica byte for byte, or encoded segment by segment.

        An erasure-coded shard is read and encoded once per zone: with ``stage`` (this node is its
        zone's encoder) the fragments of the zone's other holders are written too, under
        ``.kbl-staging``, and those holders fetch them from here instead of reading the source.
        """
        spec = dataset.spec
        reader = self.reader(dataset)
        name = spec.shard_name(shard)
        self.metrics.source_requests.inc()
        expected = reader.stat(name)
        seg = self.settings.segment_bytes
        if not isinstance(spec.redundancy, Erasure):
            # Resumable when the source names its version (S3's ETag and version id; a file's size and mtime).
            origin = f"source:{expected.etag}:{expected.version_id}:{expected.size}" if expected.etag else ""
            with self.store.writer(unit=seg, digest=expected.digest, resume=_resume_name(spec, shard, REPLICA), origin=origin) as w:
                if w.resumed_segments:
                    log.info("%s: %s/replica: resuming after segment %d", dataset.key, shard, w.resumed_segments)
                    self.metrics.resumed_bytes.inc(w.size)
                for chunk in reader.read(name, w.size, expected.size, pin=expected):
                    self.bucket.take(len(chunk))
                    w.write(chunk)
                if w.size != expected.size:
                    raise ChecksumError(f"{name}: {w.size} bytes, expected {expected.size}")
                return self._commit(
                    dataset,
                    lambda: self._paths(dataset, shard, REPLICA),
                    lambda path, sums: w.commit(path, sums, sha256=expected.sha256, md5=expected.md5, segment_bytes=seg),
                )
        c = self._codec(dataset)
        unit = c.unit(seg)
        others = dict(self._zone_slots(dataset, shard)) if stage else {}
        others = {p: n for p, n in others.items() if not self._holds_ready(dataset, n, shard, str(p))}
        # The zone's other holders pull their fragments as they are encoded (:mod:`.live`); a holder
        # that does not come in time has its fragment staged on this disk instead, as without streaming.
        window = self.settings.stream_window_segments
        live = (
            {
                p: LiveFragment(str(p), unit, window=window, attach_s=self.settings.stream_attach_s, stall_s=self.settings.stream_stall_s)
                for p in others
            }
            if window > 0
            else {}
        )
        registered = [(dataset.key, shard, str(p)) for p in live]
        with self.lock:
            for name_, lf in zip(registered, live.values(), strict=True):
                self.live[name_] = (spec.uid, lf)
        # Checked against the source's promise, and recorded as the shard's digest in every fragment's
        # record; with no promise (a path source) no cryptographic digest is computed.
        check: Any = None
        if expected.sha256 or expected.md5:
            check = hashlib.sha256() if expected.sha256 else hashlib.md5(usedforsecurity=False)
        try:
            with contextlib.ExitStack() as stack:

                def staging_writer(p: int, queued: Iterable[bytes]) -> None:
                    w = writers[p] = stack.enter_context(self.store.writer(unit=unit, digest=""))
                    for data in queued:
                        w.write(data)
                    self.metrics.streamed_fragments.labels("spilled").inc()

                first = [piece, *(p for p in others if p not in live)]
                writers = {p: stack.enter_context(self.store.writer(unit=unit, digest="")) for p in first}
                size = 0
                # The source is read in its own thread a few segments ahead (file and socket reads
                # release the GIL): the read overlaps the encode and the writes.
                ahead = stack.enter_context(
                    contextlib.closing(zip_parallel([resegment(reader.read(name, 0, expected.size, pin=expected), seg)]))
                )
                for (segment,) in ahead:
                    self.bucket.take(len(segment))
                    size += len(segment)
                    if check is not None:
                        check.update(segment)
                    fragments = c.encode(segment)
                    for p, w in writers.items():
                        w.write(fragments[p])
                    for p, lf in list(live.items()):
                        data = fragments[p]
                        outcome = lf.offer(data, segment_sum(data))
                        while outcome == "spill":
                            queued = lf.spill()
                            if queued is None:  # attached meanwhile
                                outcome = lf.offer(data, segment_sum(data))
                                continue
                            staging_writer(p, [*queued, data])
                            break
                        if outcome != "sent":
                            live.pop(p)
                            if outcome == "dropped":
                                self.metrics.streamed_fragments.labels("dropped").inc()
                                log.warning("%s: %s/%s: %s stopped following its fragment: dropped", dataset.key, shard, p, others[p])
                if size != expected.size:
                    raise ChecksumError(f"{name}: {size} bytes, expected {expected.size}")
                if check is not None and check.hexdigest() != (expected.sha256 or expected.md5):
                    raise ChecksumError(f"{name}: source bytes do not match the source's {'sha256' if expected.sha256 else 'ETag'}")
                sha, md5 = (check.hexdigest(), "") if expected.sha256 else ("", expected.md5)
                for p, lf in live.items():
                    record = PieceRecord(sha, lf.size, size, c.scheme, segment_bytes=seg, unit=unit, sums=lf.sums, md5=md5)
                    if lf.finish(record):
                        self.metrics.streamed_fragments.labels("done" if lf.state == "done" else lf.state).inc()
                        continue
                    queued = lf.spill()  # nobody attached before the end (a shard of a few segments): staged
                    if queued is None:
                        lf.finish(record)
                        self.metrics.streamed_fragments.labels("done").inc()
                    else:
                        staging_writer(p, queued)
                layout = self.store.layout
                staged = [p for p in writers if p != piece]
                for p in staged:
                    w = writers[p]
                    self._commit(
                        dataset,
                        lambda p=p: (  # type: ignore[misc]
                            layout.staged_path(spec.namespace, spec.name, spec.uid, shard, str(p)),
                            layout.staged_sum_path(spec.namespace, spec.name, spec.uid, shard, str(p)),
                        ),
                        lambda path, sums, w=w: w.commit(  # type: ignore[misc]
                            path, sums, sha256=sha, md5=md5, shard_bytes=size, scheme=c.scheme, segment_bytes=seg
                        ),
                    )
                    with self.lock:
                        self.staged[(dataset.key, shard, str(p))] = (spec.uid, others[p], time.monotonic())
                if staged:
                    self.metrics.staged_fragments.inc(len(staged))
                w = writers[piece]
                return self._commit(
                    dataset,
                    lambda: self._paths(dataset, shard, str(piece)),
                    lambda path, sums: w.commit(path, sums, sha256=sha, md5=md5, shard_bytes=size, scheme=c.scheme, segment_bytes=seg),
                )
        finally:
            for lf in live.values():
                lf.fail()  # no-op for the finished ones: a follower of a failed encode commits nothing
            with self.lock:
                for name_ in registered:
                    self.live.pop(name_, None)

    def _holds_ready(self, dataset: DataSet, node: str, shard: int, key: str) -> bool:
        h = self.view.holdings.get(node)
        mine = h.of(dataset.key, dataset.spec.uid) if h is not None else None
        return mine is not None and mine.has_ready(key, shard)

    def _rebuild(self, dataset: DataSet, shard: int, piece: int, holders: list[tuple[str, str, str]]) -> PieceRecord:
        """Fragment ``piece`` rebuilt segment by segment from ``k`` peers' fragments, read concurrently."""
        spec = dataset.spec
        red = spec.redundancy
        assert isinstance(red, Erasure)
        c = self._codec(dataset)
        chosen: list[tuple[str, str, PieceRecord]] = []
        for key, _node, endpoint in holders:
            if len(chosen) >= red.k:
                break
            try:
                chosen.append((key, endpoint, self.peers.record(endpoint, spec.namespace, spec.name, shard, key)))
            except SourceError:
                continue
        if len(chosen) < red.k:
            raise SourceError(f"only {len(chosen)} of the {red.k} fragments needed to rebuild fragment {piece}")
        first = chosen[0][2]
        if any((r.size, r.unit, r.shard_bytes) != (first.size, first.unit, first.shard_bytes) for _k, _e, r in chosen):
            raise CodingError(f"shard {shard}: the fragments' records disagree on sizes")
        count = first.geometry.count
        streams = [
            checked_segments(
                self.peers.piece(endpoint, spec.namespace, spec.name, shard, key),
                record,
                range(count),
                f"fragment {shard}/{key} from {endpoint}",
            )
            for key, endpoint, record in chosen
        ]
        with self.store.writer(unit=first.unit, digest="") as w:
            rows = zip_parallel(streams)
            try:
                for row in rows:
                    self.bucket.take(sum(len(x) for x in row))
                    w.write(c.rebuild(row, piece))
            finally:
                rows.close()
            if w.size != first.size:
                raise SourceError(f"rebuilt fragment {shard}/{piece}: {w.size} bytes, {first.size} expected")
            record = self._commit(
                dataset,
                lambda: self._paths(dataset, shard, str(piece)),
                lambda path, sums: w.commit_like(first, path, sums),
            )
        self.metrics.rebuilt_pieces.inc()
        self.metrics.rebuilt_bytes.inc(record.size)
        return record

    # ------------------------------------------------------------- staging
    def staged_record(self, dataset: DataSet, shard: int, key: str) -> tuple[Path, PieceRecord] | None:
        """A fragment this node staged for a zone peer: ``(path, record)``, ``None`` when none."""
        spec = dataset.spec
        layout = self.store.layout
        try:
            raw = layout.staged_sum_path(spec.namespace, spec.name, spec.uid, shard, key).read_bytes()
            record = PieceRecord.from_json(raw)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return layout.staged_path(spec.namespace, spec.name, spec.uid, shard, key), record

    def _clean_staging(self, datasets: dict[str, DataSet]) -> None:
        """Staged fragments go once their holder has them ready, their DataSet changed, or after the TTL."""
        with self.lock:
            items = list(self.staged.items())
        now = time.monotonic()
        layout = self.store.layout
        for (key, shard, piece), (uid, node, at) in items:
            dataset = datasets.get(key)
            done = (
                dataset is None
                or dataset.spec.uid != uid
                or now - at > self.settings.staging_ttl_s
                or self._holds_ready(dataset, node, shard, piece)
            )
            if not done:
                continue
            ns, _, name = key.partition("/")
            for path in (layout.staged_sum_path(ns, name, uid, shard, piece), layout.staged_path(ns, name, uid, shard, piece)):
                with contextlib.suppress(FileNotFoundError):
                    size = path.stat().st_size
                    path.unlink()
                    self.store.settle(size, 0)
            with self.lock:
                self.staged.pop((key, shard, piece), None)

    # ------------------------------------------------------------- reporting
    def snapshot(self) -> dict[str, tuple[Local, str, str]]:
        """A consistent copy of the local states, with each DataSet's namespace and name."""
        with self.lock:
            out: dict[str, tuple[Local, str, str]] = {}
            for key, st in self.local.items():
                ns, _, name = key.partition("/")
                copy = Local(uid=st.uid, ready=dict(st.ready), hydrating=set(st.hydrating), corrupt=set(st.corrupt))
                out[key] = (copy, ns, name)
            return out
