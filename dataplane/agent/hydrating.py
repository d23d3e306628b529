"""Making the disk match the placement: what this node must hold, and getting it there.

Deciding apart from doing: :func:`slots_for` is pure (the placement and transfers in, the
pieces this node must hold and must keep out); :class:`Hydrator` does the I/O.

For every DataSet with a placement, the node's **targets** are the slots ``(shard, piece)`` the
placement assigns to it, and its **keep** set adds the slots of ``status.transfers`` whose
``from`` is this node (make before break: the old holder keeps its copy until the reconciler
releases it). A piece on disk outside the keep set is deleted; a DataSet without a placement
deletes nothing; a DataSet that is gone, or re-created with another uid, loses its folder.

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

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from dataplane.agent.bandwidth import TokenBucket
from dataplane.agent.coding import Codec, CodingError, codec
from dataplane.agent.metrics import PEER_CROSS_ZONE, PEER_ZONE, SOURCE, AgentMetrics
from dataplane.agent.settings import AgentSettings
from dataplane.agent.sources import PeerClient, Reader, SourceError, reader_for
from dataplane.agent.storing import AgentError, ChecksumError, DiskFullError, PieceRecord, Store
from topology.datasets import DataSet, Erasure
from topology.holdings import REPLICA, NodeHoldings, piece_key

log = logging.getLogger(__name__)

Slot = tuple[int, str]  # (shard, piece key)


@dataclass(frozen=True, slots=True)
class Slots:
    """What one node must hold of one DataSet: ``targets`` (slot -> piece index) and ``keep``."""

    targets: dict[Slot, int]
    keep: frozenset[Slot]


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


@dataclass
class ClusterView:
    """What the agent knows of the cluster: DataSets, peers' holdings and node zones."""

    datasets: dict[str, DataSet] = field(default_factory=dict)
    raw: dict[str, dict[str, object]] = field(default_factory=dict)
    holdings: dict[str, NodeHoldings] = field(default_factory=dict)
    zones: dict[str, str] = field(default_factory=dict)
    #: DataSets that exist but do not parse: their folders are left alone (never wiped for a typo).
    invalid: set[str] = field(default_factory=set)
    synced: bool = False


EventSink = Callable[[str, str, str, str], None]  # (dataset key, reason, message, type)


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
        for key, dataset in datasets.items():
            slots = slots_for(dataset, self.node)
            if slots is None:
                continue
            if not slots.targets and key not in self.local and not self._on_disk(dataset):
                continue
            state = self.local_of(dataset)
            self._release(dataset, state, slots)
            now = time.monotonic()
            for slot in sorted(slots.targets):
                if slot in state.ready or (key, slot) in self.inflight or state.retry_at.get(slot, 0.0) > now:
                    continue
                started += 1
                with self.lock:
                    state.hydrating.add(slot)
                    self.inflight[(key, slot)] = self.pool.submit(self._hydrate_task, dataset, slot, slots.targets[slot])
        if synced:
            self._forget_deleted(datasets)
        return started

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

    def _forget_deleted(self, datasets: dict[str, DataSet]) -> None:
        for ns, name in self.store.local_datasets():
            key = f"{ns}/{name}"
            if key in datasets or key in self.view.invalid:
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
            self.disk_full = False
            self.metrics.disk_full.set(0)
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
        """Copy one piece from the cheapest good source; ``(record, source kind)``."""
        shard, key = slot
        started = time.monotonic()
        errors: list[str] = []
        for kind, attempt in self._plans(dataset, shard, key, piece):
            try:
                record = attempt()
            except DiskFullError:
                raise
            except (SourceError, ChecksumError, CodingError) as exc:
                errors.append(f"{kind}: {exc}")
                continue
            seconds = max(1e-9, time.monotonic() - started)
            self.metrics.hydrated_bytes.labels(kind).inc(record.size)
            self.metrics.hydrated_pieces.labels(kind).inc()
            self.metrics.copy_seconds.observe(seconds)
            self.metrics.throughput.set(record.size / seconds)
            return record, kind
        raise SourceError("; ".join(errors) or "no holder and no source for this piece")

    def _holders(self, dataset: DataSet, shard: int, key: str) -> list[tuple[str, str]]:
        """``(node, endpoint)`` of peers that report ``(shard, key)`` ready for this uid."""
        out = []
        with self.lock:
            holdings = list(self.view.holdings.values())
        for h in holdings:
            if h.node == self.node or not h.endpoint:
                continue
            mine = h.of(dataset.key, dataset.spec.uid)
            if mine is not None and (not dataset.spec.uid or mine.uid == dataset.spec.uid) and mine.has_ready(key, shard):
                out.append((h.node, h.endpoint))
        return out

    def _plans(self, dataset: DataSet, shard: int, key: str, piece: int) -> Iterator[tuple[str, Callable[[], PieceRecord]]]:
        my_zone = self.zone_of(self.node)
        holders = [(n, e, self.zone_of(n)) for n, e in self._holders(dataset, shard, key)]  # one zone look-up per holder
        same = [(n, e) for n, e, z in holders if z == my_zone]
        other = [(n, e) for n, e, z in holders if z != my_zone]
        red = dataset.spec.redundancy
        for _, endpoint in same:
            yield PEER_ZONE, lambda e=endpoint: self._from_peer(dataset, shard, key, e)  # type: ignore[misc]
        if isinstance(red, Erasure):
            near = self._fragment_holders(dataset, shard, key, zone=my_zone)
            if len(near) >= red.k:
                yield PEER_ZONE, lambda: self._rebuild(dataset, shard, piece, near)
        if dataset.spec.source is not None:
            yield SOURCE, lambda: self._from_source(dataset, shard, piece)
        for _, endpoint in other:
            yield PEER_CROSS_ZONE, lambda e=endpoint: self._from_peer(dataset, shard, key, e)  # type: ignore[misc]
        if isinstance(red, Erasure):
            anywhere = self._fragment_holders(dataset, shard, key, zone=None)
            if len(anywhere) >= red.k:
                yield PEER_CROSS_ZONE, lambda: self._rebuild(dataset, shard, piece, anywhere)

    def _fragment_holders(self, dataset: DataSet, shard: int, missing: str, *, zone: str | None) -> list[tuple[str, str, str]]:
        """``(fragment key, node, endpoint)``, one holder per other fragment (same zone first)."""
        red = dataset.spec.redundancy
        assert isinstance(red, Erasure)
        out: list[tuple[str, str, str]] = []
        my_zone = self.zone_of(self.node)
        for p in range(red.k + red.m):
            key = str(p)
            if key == missing:
                continue
            holders = self._holders(dataset, shard, key)
            if zone is not None:
                holders = [h for h in holders if self.zone_of(h[0]) == zone]
            holders.sort(key=lambda h: self.zone_of(h[0]) != my_zone)
            if holders:
                out.append((key, *holders[0]))
        return out

    # ---------------------------------------------------------------- copies
    def _write(
        self,
        dataset: DataSet,
        shard: int,
        key: str,
        chunks: Iterable[bytes],
        *,
        sha256: str = "",
        md5: str = "",
        size: int | None = None,
        shard_bytes: int | None = None,
        scheme: str = "",
    ) -> PieceRecord:
        spec = dataset.spec
        layout = self.store.layout
        final = layout.piece_path(spec.namespace, spec.name, spec.shard_name(shard), shard, key)
        sums = layout.sum_path(spec.namespace, spec.name, shard, key)
        check_md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        with self.store.writer() as w:
            for chunk in chunks:
                self.bucket.take(len(chunk))
                w.write(chunk)
                if check_md5 is not None:
                    check_md5.update(chunk)
            if size is not None and w.size != size:
                raise ChecksumError(f"{final.name}: {w.size} bytes, expected {size}")
            if check_md5 is not None and check_md5.hexdigest() != md5:
                raise ChecksumError(f"{final.name}: md5 {check_md5.hexdigest()} != source ETag {md5}")
            with self.lock:
                state = self.local.get(dataset.key)
                if state is None or state.uid != spec.uid:
                    raise AgentError(f"{dataset.key} changed while copying")
                return w.commit(final, sums, expected_sha256=sha256 or None, shard_bytes=shard_bytes, scheme=scheme)

    def _from_peer(self, dataset: DataSet, shard: int, key: str, endpoint: str) -> PieceRecord:
        spec = dataset.spec
        chunks, sha, shard_bytes, close = self.peers.piece(endpoint, spec.namespace, spec.name, shard, key)
        try:
            scheme = self._codec(dataset).scheme if isinstance(spec.redundancy, Erasure) else ""
            return self._write(dataset, shard, key, chunks, sha256=sha, shard_bytes=shard_bytes or None, scheme=scheme)
        finally:
            close()

    def _codec(self, dataset: DataSet) -> Codec:
        red = dataset.spec.redundancy
        assert isinstance(red, Erasure)
        return codec(red.k, red.m)

    def _from_source(self, dataset: DataSet, shard: int, piece: int) -> PieceRecord:
        spec = dataset.spec
        reader = self.reader(dataset)
        name = spec.shard_name(shard)
        self.metrics.source_requests.inc()
        expected = reader.stat(name)
        if not isinstance(spec.redundancy, Erasure):
            return self._write(dataset, shard, REPLICA, reader.read(name), sha256=expected.sha256, md5=expected.md5, size=expected.size)
        data = bytearray()
        for chunk in reader.read(name):
            self.bucket.take(len(chunk))
            data += chunk
        raw = bytes(data)
        if expected.sha256 and hashlib.sha256(raw).hexdigest() != expected.sha256:
            raise ChecksumError(f"{name}: source bytes do not match the source's sha256")
        if expected.md5 and hashlib.md5(raw, usedforsecurity=False).hexdigest() != expected.md5:
            raise ChecksumError(f"{name}: source bytes do not match the source's ETag")
        c = self._codec(dataset)
        fragment = c.encode(raw)[piece]
        return self._write(dataset, shard, str(piece), [fragment], shard_bytes=len(raw), scheme=c.scheme)

    def _rebuild(self, dataset: DataSet, shard: int, piece: int, holders: list[tuple[str, str, str]]) -> PieceRecord:
        spec = dataset.spec
        red = spec.redundancy
        assert isinstance(red, Erasure)
        c = self._codec(dataset)
        fragments: list[bytes] = []
        for key, _node, endpoint in holders:
            if len(fragments) >= red.k:
                break
            try:
                data = self.peers.piece_bytes(endpoint, spec.namespace, spec.name, shard, key)
            except SourceError:
                continue
            self.bucket.take(len(data))
            fragments.append(data)
        if len(fragments) < red.k:
            raise SourceError(f"only {len(fragments)} of the {red.k} fragments needed to rebuild fragment {piece}")
        rebuilt = c.rebuild(fragments, piece)
        self.metrics.rebuilt_pieces.inc()
        return self._write(dataset, shard, str(piece), [rebuilt], shard_bytes=c.shard_bytes(fragments[0]), scheme=c.scheme)

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
