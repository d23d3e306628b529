"""Reconciling: the placement reconciler's loop on Informers, and its writes.

:class:`Reconciler` keeps three caches fed by :class:`~kube.watching.Informer` s (DataSets, Nodes,
NodeHoldings), never relisting per event. An event marks the DataSets it touches dirty (a DataSet
event: that DataSet; a Node whose readiness, schedulability, labels, annotations or weight
changed: every DataSet; a NodeHoldings change: the DataSets it reports on); a worker reconciles
the dirty ones, and every DataSet each ``resync_s`` (a NotReady node turns *lost* by the clock
alone). Each DataSet's decision is :func:`~dataplane.reconciler.planning.decide`; its status is
written with ``patch_status`` only when it changed, Events explain the change, then the drain
annotations of draining nodes are brought up to date.

Leader election is the caller's (:mod:`kube.leading`, Lease ``kbl-reconciler``): ``guard`` is
called before every write and raises when leadership is gone. Every write is idempotent and the
decision depends on the cluster only, so a reconciler killed between two writes and restarted
converges to the same placement.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from dataplane.reconciler.metrics import ReconcilerMetrics
from dataplane.reconciler.planning import (
    DERIVE_LIMIT,
    ClusterView,
    Decision,
    Event,
    PlanMemo,
    ReadyCache,
    conditions_with_times,
    decide,
    node_annotations,
    placement_json_bytes,
)
from dataplane.reconciler.progress import ProgressMeter, estimated_ready, eta_text
from dataplane.reconciler.settings import ReconcilerSettings
from kube.api import DATASETS, NODE_HOLDINGS, NODES, PLACEMENT_SLICES, ApiError, DeletesObjects, KubeApi, WatchEvent
from kube.watching import Informer
from placement.stability import NodeTable
from topology import labels
from topology.datasets import DataSet, ShardPlacement, SliceIndex
from topology.errors import KblError
from topology.holdings import NodeHoldings
from topology.nodes import Node, slim_node_object
from topology.slices import (
    LookUps,
    NameOrder,
    PlacementSlice,
    SliceStore,
    changed_slices,
    shards_per_slice,
    slice_count,
    sliced_form,
    split,
)
from topology.snapshots import paused_gc
from topology.times import format_time, parse_time

log = logging.getLogger(__name__)

#: The resources the reconciler lists and watches.
WATCHED = (DATASETS, NODES, NODE_HOLDINGS, PLACEMENT_SLICES)

#: Typed Nodes, typed NodeHoldings, since when each NotReady node has been so, and each agent's
#: last heartbeat (epoch seconds) by node.
NodesView = tuple[dict[str, Node], dict[str, NodeHoldings], dict[str, float], dict[str, float]]


@dataclass
class PassReport:
    """What one pass decided and wrote."""

    decisions: dict[str, Decision] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)
    nodes_patched: list[str] = field(default_factory=list)
    planned: dict[str, dict[str, Any]] = field(default_factory=dict)


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def _node_fingerprint(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a Node the placement depends on (heartbeats change nothing here)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    conditions = status.get("conditions") or ()
    ready = [(c.get("type"), c.get("status")) for c in conditions if isinstance(c, Mapping) and c.get("type") == "Ready"]
    notes = {k: v for k, v in (meta.get("annotations") or {}).items() if k in (labels.DRAIN, labels.DRAIN_DEADLINE)}
    return (
        sorted((meta.get("labels") or {}).items()),
        sorted(notes.items()),
        bool((obj.get("spec") or {}).get("unschedulable")),
        ready,
        sorted((status.get("allocatable") or {}).items()),
    )


def _holdings_fingerprint(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in ((obj or {}).get("status") or {}).get("datasets") or ():
        if isinstance(entry, Mapping):
            out[f"{entry.get('namespace') or 'default'}/{entry.get('name')}"] = (entry.get("uid"), entry.get("ready"))
    return out


class Reconciler:
    """The placement reconciler (module docstring).

    Parameters
    ----------
    api:
        The Kubernetes API.
    settings:
        Grace period, transfer bound, resync interval, placement knobs.
    clock:
        Epoch seconds (node-lost grace periods, condition and annotation times).
    metrics:
        Where to record series (a fresh registry when ``None``).
    guard:
        Called with the step name before every write; raises to stop (leader election).
    step_hook:
        Called with ``before-status``/``after-status``/``before-node``/``after-node`` (tests kill
        the process there).
    dry_run:
        Decide and report (:attr:`PassReport.planned`), write nothing.
    """

    def __init__(
        self,
        api: KubeApi,
        settings: ReconcilerSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        metrics: ReconcilerMetrics | None = None,
        guard: Callable[[str], None] | None = None,
        step_hook: Callable[[str], None] | None = None,
        dry_run: bool = False,
    ) -> None:
        self.api = api
        self.settings = settings or ReconcilerSettings()
        self.clock = clock
        self.metrics = metrics or ReconcilerMetrics()
        self.guard = guard
        self.step_hook = step_hook
        self.dry_run = dry_run
        self.datasets: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.holdings: dict[str, dict[str, Any]] = {}
        self.passes = 0
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._wake = threading.Event()
        self._invalid_seen: dict[str, str] = {}
        # Typed objects by raw object (an event replaces the raw dict, so identity means unchanged),
        # the nodes' generation (bumped when what placement reads of a node changes) and the last
        # plan per DataSet: a pass re-types and re-plans only what changed.
        self._typed: dict[tuple[str, str], tuple[Mapping[str, Any], Any]] = {}
        self._node_generation = 0
        self._view_generation = 0  # bumped by every Node or NodeHoldings change
        self._nodes_cache: tuple[int, NodesView] | None = None
        # The Nodes and NodeHoldings changed since the cached view (``None``: relisted, rebuild it all).
        self._view_changes: set[tuple[str, str]] | None = None
        # Agent liveness: when this reconciler started (the grace for nodes whose agent has not
        # reported yet), the silent nodes of the last pass and until when that set holds (the
        # earliest heartbeat expiry or end of the grace: the run loop re-checks then).
        self._started: float | None = None
        self._silent: frozenset[str] = frozenset()
        self._silent_of: tuple[Mapping[str, Node], Mapping[str, float]] | None = None
        self.next_expiry: float = math.inf
        # Progress-only status writes (see ReconcilerSettings.progress_write_s): when each
        # DataSet's status was last written, and when a deferred write is due.
        self._last_write: dict[str, float] = {}
        self._deferred: dict[str, float] = {}
        self._cluster: ClusterView | None = None
        self.memo = PlanMemo()
        self.ready = ReadyCache()  # per DataSet, the slots reported ready (dropped when its reports change)
        self._holdings_epoch = 0
        self._risk: dict[str, tuple[float, int]] = {}  # per DataSet, from its last decision (see _risk)
        self.progress = ProgressMeter(smoothing_s=self.settings.eta_smoothing_s, sample_s=self.settings.eta_sample_s)
        self._rate: dict[str, float | None] = {}
        # The PlacementSlices of sliced targets (topology.slices), and the DataSets whose index
        # names a slice not held (decided again when a slice event names them).
        self.slices = SliceStore()
        self._waiting: set[str] = set()
        self._form: dict[str, tuple[ShardPlacement, bool]] = {}
        # Node-list look-ups between two targets and node lists' name orders, for one pass.
        self._lookups: LookUps = {}
        self._orders: dict[tuple[str, ...], NameOrder] = {}
        self._node_lists: dict[tuple[str, ...], tuple[str, ...]] = {}

    # ------------------------------------------------------------------ caches
    def load(self) -> None:
        """List everything once (``--once``, tests, the start of a pass without informers)."""
        with paused_gc():
            self._relist_datasets(self.api.list(DATASETS)[0])
            self._relist_nodes(self.api.list(NODES)[0])
            self._relist_holdings(self.api.list(NODE_HOLDINGS)[0])
            self._relist_slices(self.api.list(PLACEMENT_SLICES)[0])

    def _mark(self, keys: Iterable[str] = (), *, everything: bool = False) -> None:
        with self._lock:
            self._dirty.update(keys)
            self._all_dirty = self._all_dirty or everything
        self._wake.set()

    def _relist_datasets(self, items: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self.datasets = {_key(o): dict(o) for o in items}
        self._mark(everything=True)

    def _on_dataset(self, event: WatchEvent) -> None:
        key = _key(event.object)
        with self._lock:
            held = self.datasets.get(key)
            version = (event.object.get("metadata") or {}).get("resourceVersion")
            if event.type != "DELETED" and held is not None and version and (held.get("metadata") or {}).get("resourceVersion") == version:
                return  # the version held already (the echo of this reconciler's own write): nothing changed
            if event.type == "DELETED":
                self.datasets.pop(key, None)
            else:
                self.datasets[key] = dict(event.object)
        if event.type == "DELETED":
            self.metrics.forget(key)
        self._mark([key])

    def _relist_slices(self, items: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self.slices.replace(items)
            for key in self.slices.keys() | self._waiting:
                self._typed.pop(("dataset", key), None)
        self._mark(everything=True)

    def _on_slice(self, event: WatchEvent) -> None:
        """A PlacementSlice event: held for assembly; a DataSet that waited for it is decided
        again (the echo of this reconciler's own writes wakes nothing: it holds them already)."""
        with self._lock:
            key = self.slices.apply(event.type, event.object)
            waiting = key is not None and key in self._waiting
            if waiting:
                self._typed.pop(("dataset", str(key)), None)
        if waiting:
            self._mark([str(key)])

    def _relist_nodes(self, items: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self.nodes = {str((o.get("metadata") or {}).get("name")): dict(o) for o in items}  # lists come slim (kube.client)
            self._node_generation += 1
            self._view_generation += 1
            self._view_changes = None
        self._mark(everything=True)

    def _on_node(self, event: WatchEvent) -> None:
        name = str((event.object.get("metadata") or {}).get("name"))
        with self._lock:
            old = self.nodes.get(name)
            if event.type == "DELETED":
                self.nodes.pop(name, None)
            else:
                self.nodes[name] = slim_node_object(event.object)  # watch events come whole
            self._view_generation += 1
            if self._view_changes is not None:
                self._view_changes.add(("node", name))
            changed = event.type == "DELETED" or old is None or _node_fingerprint(old) != _node_fingerprint(event.object)
            if changed:
                self._node_generation += 1
        if changed:
            self._mark(everything=True)

    def _relist_holdings(self, items: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self.holdings = {str((o.get("metadata") or {}).get("name")): dict(o) for o in items}
            self._view_generation += 1
            self._view_changes = None
            self.ready.clear()
        self._mark(everything=True)

    def _on_holdings(self, event: WatchEvent) -> None:
        name = str((event.object.get("metadata") or {}).get("name"))
        with self._lock:
            old = self.holdings.get(name)
            if event.type == "DELETED":
                self.holdings.pop(name, None)
            else:
                self.holdings[name] = dict(event.object)
            self._view_generation += 1
            if self._view_changes is not None:
                self._view_changes.add(("holdings", name))
        before, after = _holdings_fingerprint(old), _holdings_fingerprint(None if event.type == "DELETED" else event.object)
        changed = [k for k in before.keys() | after.keys() if before.get(k) != after.get(k)]
        with self._lock:
            self.ready.touch(changed, name)
        self._mark(changed)
        if name in self._silent and event.type != "DELETED" and self._live(_heartbeat(event.object)):
            self._mark(everything=True)  # a silent agent is back: its node is a holder again

    # ----------------------------------------------------------------- passes
    def reconcile_once(self) -> PassReport:
        """List everything, reconcile every DataSet once."""
        self.load()
        with self._lock:
            self._dirty.clear()
            self._all_dirty = False
        return self.reconcile(None)

    def _typed_of(self, kind: str, key: str, obj: Mapping[str, Any], parse: Callable[[Mapping[str, Any]], Any]) -> Any:
        """``parse(obj)``, remembered while ``obj`` is the same raw object (raises as ``parse``)."""
        found = self._typed.get((kind, key))
        if found is not None and found[0] is obj:
            return found[1]
        typed = parse(obj)
        self._typed[(kind, key)] = (obj, typed)
        return typed

    def _nodes_view(self) -> NodesView:
        """Typed Nodes and NodeHoldings, since when each NotReady node has been so (its Ready
        condition's ``lastTransitionTime``, the API server's, so every replica agrees; a NotReady
        node without one is not counted as lost), and each agent's last heartbeat.

        Rebuilt (each object typed once, see :meth:`_typed_of`) only after a Node or NodeHoldings
        event or relist; otherwise the previous pass's, so a pass after a DataSet event does not
        walk the nodes. After events on a few objects (not a relist) the previous view is copied
        and only those objects are read again (issue 24: O(change) passes)."""
        with self._lock:
            seen = self._view_generation
            if self._nodes_cache is not None and self._nodes_cache[0] == seen:
                self.ready.view_epoch = self._holdings_epoch
                return self._nodes_cache[1]
            changes = self._view_changes
            self._view_changes = set()
            if self._nodes_cache is not None and changes is not None and len(changes) <= max(DERIVE_LIMIT, len(self.nodes) // 100):
                self._holdings_epoch = self.ready.view_epoch = self.ready.epoch()
                return self._patched_view(self._nodes_cache[1], changes, seen)
            raw_nodes = dict(self.nodes)
            raw_holdings = dict(self.holdings)
            # The ready cache keeps only what it computes from reports at least this new.
            self._holdings_epoch = self.ready.view_epoch = self.ready.epoch()
        view: NodesView = ({}, {}, {}, {})
        for name, obj in raw_nodes.items():
            self._add_node(view, name, obj)
        for name, obj in raw_holdings.items():
            self._add_holdings(view, name, obj)
        nodes, holdings, since, heard = view
        present = {"node": raw_nodes, "holdings": raw_holdings}
        for gone in [k for k in self._typed if k[0] in present and k[1] not in present[k[0]]]:
            del self._typed[gone]
        self._nodes_cache = (seen, (nodes, holdings, since, heard))
        return nodes, holdings, since, heard

    def _patched_view(self, previous: NodesView, changes: set[tuple[str, str]], seen: int) -> NodesView:
        """:meth:`_nodes_view` from the previous one and the objects that changed (under the lock)."""
        view: NodesView = (dict(previous[0]), dict(previous[1]), dict(previous[2]), dict(previous[3]))
        nodes, holdings, since, heard = view
        for kind, name in changes:
            if kind == "node":
                nodes.pop(name, None)
                since.pop(name, None)
                obj = self.nodes.get(name)
                if obj is None:
                    self._typed.pop(("node", name), None)
                else:
                    self._add_node(view, name, obj)
            else:
                typed = self._typed.get(("holdings", name))
                if typed is not None:  # what this object said before (keyed by its node)
                    holdings.pop(typed[1][0].node, None)
                    heard.pop(typed[1][0].node, None)
                raw = self.holdings.get(name)
                if raw is None:
                    self._typed.pop(("holdings", name), None)
                else:
                    self._add_holdings(view, name, raw)
        self._nodes_cache = (seen, view)
        return view

    def _add_node(self, view: NodesView, name: str, obj: Mapping[str, Any]) -> None:
        """Type a Node object into ``view`` (its NotReady time too); a bad one is logged and skipped."""
        try:
            node: Node = self._typed_of("node", name, obj, Node.from_object)
        except KblError as exc:
            log.warning("node skipped: %s", exc)
            return
        view[0][node.name] = node
        down = None if node.ready else parse_time(node.ready_transition)
        if down is not None:
            view[2][node.name] = down

    def _add_holdings(self, view: NodesView, name: str, obj: Mapping[str, Any]) -> None:
        """Type a NodeHoldings object into ``view`` (its heartbeat too); a bad one is logged and skipped."""
        try:
            found = self._typed_of("holdings", name, obj, _typed_holdings)
        except KblError as exc:
            log.warning("holdings skipped: %s", exc)
            return
        view[1][found[0].node] = found[0]
        if found[1] is not None:
            view[3][found[0].node] = found[1]

    def _view(self) -> tuple[ClusterView, dict[str, DataSet], dict[str, str], tuple[int, int, frozenset[str]]]:
        with self._lock:
            raw_datasets = dict(self.datasets)
            generation = self._node_generation
        nodes, holdings, since, heard = self._nodes_view()
        now = self.clock()
        if self._started is None:
            self._started = now
        lost = frozenset(n for n, down in since.items() if now - down >= self.settings.node_lost_grace_s)
        silent = self._silent_nodes(nodes, heard, now)
        lost |= silent
        cluster = self._cluster
        if cluster is None or cluster.nodes is not nodes or cluster.holdings is not holdings or cluster.lost != lost:
            cluster = self._cluster = ClusterView.following(cluster, nodes, lost, holdings, silent)  # patched for what changed
        datasets: dict[str, DataSet] = {}
        invalid: dict[str, str] = {}
        for key, obj in raw_datasets.items():
            try:
                typed = self._typed_of("dataset", key, obj, DataSet.from_object)
            except KblError as exc:
                invalid[key] = str(exc)
                continue
            datasets[key] = self._with_target(key, obj, typed)
        for gone in [k for k in self._typed if k[0] == "dataset" and k[1] not in raw_datasets]:
            del self._typed[gone]
        return cluster, datasets, invalid, (generation, len(nodes), cluster.lost)

    def _with_target(self, key: str, obj: Mapping[str, Any], typed: DataSet) -> DataSet:
        """``typed`` as it is when its target is inline (or known); a sliced DataSet with its
        target assembled from the PlacementSlices its index names (remembered with the raw
        object). A slice that is not there (deleted by hand: this reconciler deletes only slices
        no index names) leaves its shards unplaced, so they are repaired as lost pieces are (the
        agents keep the last target they assembled until the new index is written, and with it
        what they hold)."""
        if typed.slices is None or typed.placement is not None:
            return typed
        with self._lock:
            resolved = self.slices.resolve(typed)
            if resolved is None:
                self._waiting.add(key)
                log.warning("DataSet %s: a PlacementSlice its status names is missing; its shards are placed again", key)
                partial = self.slices.resolve(typed, partial=True)
                assert partial is not None
                return partial
            self._waiting.discard(key)
            self._typed[("dataset", key)] = (obj, resolved)
        return resolved

    def dataset(self, key: str) -> DataSet | None:
        """DataSet ``key`` as the reconciler holds it, with its target (assembled from its
        PlacementSlices when sliced); ``None`` when unknown or invalid."""
        with self._lock:
            obj = self.datasets.get(key)
        if obj is None:
            return None
        try:
            typed: DataSet = self._typed_of("dataset", key, obj, DataSet.from_object)
        except KblError:
            return None
        return self._with_target(key, obj, typed)

    def _live(self, heartbeat: float | None) -> bool:

        """A heartbeat at ``heartbeat`` (epoch seconds; ``None``: never) is within the agent TTL now."""
        ttl = self.settings.agent_ttl_s
        return not ttl or (heartbeat is not None and self.clock() - heartbeat < ttl)

    def _silent_nodes(self, nodes: Mapping[str, Node], heard: Mapping[str, float], now: float) -> frozenset[str]:
        """The present nodes whose agent is silent: last heartbeat ``agent_ttl_s`` or more ago, or
        none at all once the grace after this reconciler's start is over. Sets
        :attr:`next_expiry` (the earliest moment the set changes by the clock alone).

        Recomputed (a set difference and a ``min`` over the heartbeats; numpy when some agent
        is stale) only when the nodes view changed or the clock passed
        :attr:`next_expiry`: a heartbeat that does not cross the TTL changes nothing here, and the
        set (part of the plan memo's token through ``ClusterView.lost``) changes only when a node
        crosses the boundary."""
        ttl = self.settings.agent_ttl_s
        if not ttl or not nodes:
            self._silent, self.next_expiry = frozenset(), math.inf
            return self._silent
        seen = self._silent_of
        if seen is not None and seen[0] is nodes and seen[1] is heard and now < self.next_expiry:
            return self._silent
        cutoff = now - ttl
        grace_end = (self._started if self._started is not None else now) + ttl
        silent: set[str] = set(nodes.keys() - heard.keys()) if now >= grace_end else set()
        expiries = [grace_end] if now < grace_end and len(heard) < len(nodes) else []
        oldest = min(heard.values(), default=math.inf)
        if oldest > cutoff:  # the usual case: nobody stale (C-level set difference and min only)
            expiries.append(oldest + ttl)
        else:  # some stale: numpy over the heartbeats, a Python loop over the stale ones only
            names = list(heard)
            times = np.fromiter(heard.values(), dtype=np.float64, count=len(names))
            stale = times <= cutoff
            silent.update(n for n in (names[i] for i in np.flatnonzero(stale).tolist()) if n in nodes)
            expiries.append(float(times[~stale].min()) + ttl if not stale.all() else math.inf)
        self._silent = frozenset(silent) if silent != self._silent else self._silent
        self.next_expiry = min(expiries, default=math.inf)
        self._silent_of = (nodes, heard)
        return self._silent

    def reconcile(self, keys: Iterable[str] | None) -> PassReport:
        """Reconcile the DataSets ``keys`` (every one when ``None``), then the nodes' drain annotations.

        No cyclic GC during a pass: typing 100,000 Nodes and million-piece placements allocates
        millions of objects and no cycles, and each collection would walk them all again.
        """
        with paused_gc():
            try:
                return self._reconcile(keys)
            finally:
                _age_allocations()

    def _reconcile(self, keys: Iterable[str] | None) -> PassReport:
        started = time.perf_counter()
        self._lookups.clear()
        self.passes += 1
        report = PassReport()
        cluster, datasets, invalid, token = self._view()
        wanted = sorted(set(datasets) | set(invalid)) if keys is None else sorted(set(keys) & (set(datasets) | set(invalid)))
        # Most at risk first over DataSets too (the per-node transfer bound is shared: who decides
        # first takes it): by each one's riskiest shard at its last decision; unknown ones last.
        wanted.sort(key=lambda k: self._risk.get(k, (math.inf, 0)))
        for key in wanted:
            if key in invalid:
                report.invalid[key] = invalid[key]
                self._write_invalid(key, invalid[key], report)
                continue
            in_flight: dict[str, int] = {}
            for other, ds in datasets.items():
                if other != key:
                    for t in ds.transfers:
                        in_flight[t.source] = in_flight.get(t.source, 0) + 1
            raw = self.datasets.get(key) or {}
            decision = decide(
                datasets[key], cluster, raw.get("status") or {}, settings=self.settings, in_flight=in_flight, memo=self.memo, token=token,
                ready_cache=self.ready,
            )
            decision = self._interned(decision)
            report.decisions[key] = decision
            self._rate[key] = rate = self.progress.observe(key, decision.bytes_ready, self.clock())
            self.metrics.progress(key, remaining=decision.bytes_total - decision.bytes_ready, rate=rate)
            updated = self._write(key, raw, decision, report, datasets[key])
            if updated is not None:
                with contextlib.suppress(KblError):
                    datasets[key] = self._typed_written(key, raw, updated, decision, datasets[key])
            self.metrics.record(key, transfers=len(decision.transfers), degraded=decision.degraded_shards, lost=len(decision.lost_shards))
            self._risk[key] = _risk(decision, datasets[key])
        self.memo.forget(datasets.keys())
        self.ready.forget(datasets.keys())
        for gone in self._risk.keys() - datasets.keys():
            del self._risk[gone]
            self._form.pop(gone, None)

            self._rate.pop(gone, None)
            self.metrics.forget(gone)
        self.progress.forget(datasets.keys())
        with self._lock:
            orphaned = [s for k in self.slices.keys() - self.datasets.keys() for s in self.slices.slices(k).values()]
            for gone in self.slices.keys() - self.datasets.keys():
                self.slices.forget(gone)
        self._delete_slices(orphaned)  # the slices of a deleted DataSet (the API's GC deletes them too)
        self._write_nodes(list(datasets.values()), cluster, report)
        self._lookups.clear()
        self._orders.clear()
        # The node lists of this pass's targets stay for the next one (its DataSets' current lists).
        self._node_lists = {nodes: nodes for d in report.decisions.values() if d.placement is not None for nodes in (d.placement.nodes,)}
        self.metrics.duration.observe(time.perf_counter() - started)
        return report

    def _interned(self, decision: Decision) -> Decision:
        """``decision`` with its target's node list replaced by an equal one already seen this
        pass or the last: DataSets over the same nodes then share one list object, and what is
        remembered by a list's identity (its positions in the node table, its digest) is
        computed once for all of them."""
        placement = decision.placement
        if placement is None:
            return decision
        nodes = self._node_lists.setdefault(placement.nodes, placement.nodes)
        if nodes is placement.nodes:
            return decision
        return replace(decision, placement=ShardPlacement(nodes, placement.pieces))

    def _step(self, name: str) -> None:
        if self.guard is not None:
            self.guard(name)
        if self.step_hook is not None:
            self.step_hook(name)

    def _write(self, key: str, raw: Mapping[str, Any], decision: Decision, report: PassReport, current: DataSet) -> dict[str, Any] | None:
        old = raw.get("status") or {}
        meta = raw.get("metadata") or {}
        generation = meta.get("generation")
        same = (
            decision.placement is not None and current.placement is not None
            and decision.placement.nodes == current.placement.nodes
            and np.array_equal(decision.placement.pieces, current.placement.pieces)
        )  # fmt: skip
        # A large target is written as PlacementSlices (only the ones that changed) and the
        # status holds their index; an unchanged target keeps its JSON (no rendering, and the
        # comparison below is by identity).
        index: SliceIndex | None = None
        fresh: list[PlacementSlice] = []
        want = decision.placement is not None and self._sliced(key, decision.placement)
        form_kept = want == (current.slices is not None)
        if decision.placement is not None and want and not (same and form_kept):
            index, fresh = self._slices_for(key, current, decision.placement, decision.changed_rows)
        same = same and form_kept  # a target that changes form is written again
        placed = index.to_status() if index is not None else old.get("placement") if same else None
        body = decision.status(generation if isinstance(generation, int) else None, placement_json=placed)
        now = self.clock()
        now_text = format_time(now)
        body["conditions"] = conditions_with_times(body["conditions"], old.get("conditions") or [], now_text)
        eta = estimated_ready(decision.bytes_total - decision.bytes_ready, self._rate.get(key), now)
        body["estimatedReadyTime"] = eta_text(eta, old.get("estimatedReadyTime"), now)
        if not same and decision.placement is not None and self.settings.max_object_bytes:
            size = self._object_bytes(raw, body, decision.placement if index is None else None)
            if size > self.settings.max_object_bytes:
                limit = self.settings.max_object_bytes
                self._write_invalid(
                    key,
                    f"the new target needs a {size:,}-byte object ({len(decision.placement.nodes):,} nodes, "
                    f"{decision.total:,} pieces) and the API server stores at most {limit:,} bytes (etcd --max-request-bytes; "
                    "--max-object-bytes): it is not written"
                    + ("; the previous placement is kept" if current.placement is not None else "")
                    + ". Use fewer, larger shards, or split the DataSet",
                    report,
                    reason="PlacementTooLarge",
                )
                return None
        if self.dry_run:
            report.planned[key] = body
            return None
        if all(_same(old.get(k), v) for k, v in body.items()):
            self._deferred.pop(key, None)
            self._prune(key, old)
            return None
        interval = self.settings.progress_write_s
        last = self._last_write.get(key)
        if interval and last is not None and now < last + interval and _progress_only(old, body):
            self._deferred[key] = last + interval  # written when due (run() wakes for it)
            self._prune(key, old)
            return None
        if fresh and not self._create_slices(key, raw, fresh):
            return None
        self._step("before-status")
        namespace, name = key.split("/", 1)
        # A merge patch leaves out what it does not name: an unchanged target is not sent again
        # with every progress write (it is most of the object: up to 1.5 MiB per write).
        sent = {k: v for k, v in body.items() if k != "placement"} if same and "placement" in old else body
        if "placement" in sent and isinstance(old.get("placement"), Mapping):  # the other form's fields go (merge patch)
            sent = {**sent, "placement": {**dict.fromkeys(old["placement"]), **sent["placement"]}}

        try:
            updated = self.api.patch_status(DATASETS, name, {"status": sent}, namespace=namespace)
        except ApiError as exc:
            if exc.status == 404:
                return None  # deleted meanwhile
            raise
        report.written.append(key)
        self._last_write[key] = now
        self._deferred.pop(key, None)
        with self._lock:
            if key in self.datasets:
                self.datasets[key] = updated
        self._step("after-status")
        self._prune(key, updated.get("status") or {})
        for cause, count in (("repair", decision.repairs), ("rebalance", decision.moves - decision.repairs)):
            if count:
                self.metrics.placement_changes.labels(cause=cause).inc(count)
        if decision.conditions[1].status == "True" and _condition(old, "Ready") != "True":
            created = parse_time(meta.get("creationTimestamp"))
            if created is not None:
                self.metrics.time_to_ready.observe(max(0.0, self.clock() - created))
        for event in decision.events:
            self._event(raw, event)
        return updated

    def _typed_written(self, key: str, raw: Mapping[str, Any], updated: dict[str, Any], decision: Decision, current: DataSet) -> DataSet:
        """The typed form of ``updated`` (the object a status write returned), kept as the typed
        form of that raw object for the next pass: the DataSet decided on with the decision's
        target and transfers (what the write put in ``status``) when nothing else of the object
        changed meanwhile (same metadata but the version, same spec), so a million-row target is
        not parsed again; else parsed (raises :class:`KblError` as :meth:`DataSet.from_object`)."""
        meta = {k: v for k, v in (updated.get("metadata") or {}).items() if k != "resourceVersion"}
        was = {k: v for k, v in (raw.get("metadata") or {}).items() if k != "resourceVersion"}
        if decision.placement is not None and meta == was and updated.get("spec") == raw.get("spec"):
            typed = DataSet(current.spec, decision.placement, decision.transfers, _index_of(updated.get("status") or {}))
            if typed.slices is not None:
                with self._lock:  # a later edit of the DataSet is typed without assembling its slices again
                    self.slices.remember(typed, decision.placement)

        else:
            typed = DataSet.from_object(updated)
            if typed.slices is not None:
                return self._with_target(key, updated, typed)
        with self._lock:
            if self.datasets.get(key) is updated:
                self._typed[("dataset", key)] = (updated, typed)
        return typed

    @staticmethod
    def _object_bytes(raw: Mapping[str, Any], body: Mapping[str, Any], placement: ShardPlacement | None) -> int:
        """Bytes of the DataSet object as stored with ``body`` as its status (compact JSON): an
        inline ``placement`` counted without rendering it, the rest (a slice index) serialised."""
        rest = {k: v for k, v in raw.items() if k != "status"}
        if placement is None:
            return len(orjson.dumps(rest)) + len(orjson.dumps({"status": body}))
        others = {k: v for k, v in body.items() if k != "placement"}
        return len(orjson.dumps(rest)) + len(orjson.dumps({"status": others})) + len(',"placement":') + placement_json_bytes(placement)

    # ------------------------------------------------------------------ slices
    def _sliced(self, key: str, placement: ShardPlacement) -> bool:
        """Whether a target is written as PlacementSlices (its inline JSON is over the limit;
        remembered per DataSet for the same target object)."""
        limit = self.settings.inline_placement_bytes
        found = self._form.get(key)
        if found is not None and found[0] is placement:
            return found[1]
        # Each present index takes a digit and a comma at least: a target that large is sliced
        # without counting it exactly (placement_json_bytes is O(pieces)).
        sliced = limit == 0 or 2 * int(np.count_nonzero(placement.pieces >= 0)) > limit or placement_json_bytes(placement) > limit
        self._form[key] = (placement, sliced)
        return sliced

    def _slices_for(
        self, key: str, current: DataSet, placement: ShardPlacement, changed_rows: npt.NDArray[np.int64] | None = None
    ) -> tuple[SliceIndex, list[PlacementSlice]]:
        """The slice index of ``placement`` and the slices to create for it: those whose content
        differs from the current target's (all when the current one is not sliced alike), less
        the ones held already. ``changed_rows``: the shards the decision moved off ``current``'s
        target (:attr:`Decision.changed_rows`), else they are found by comparing the targets."""
        namespace, name = key.split("/", 1)
        per = shards_per_slice(placement.width, placement.shards)
        count = slice_count(placement.shards, per)
        was = current.slices
        table = self._cluster.built_table() if self._cluster is not None else None
        order = self._name_order(placement.nodes, table)
        if was is not None and was.shards_per_slice == per and len(was.versions) == count and current.placement is not None:
            if changed_rows is not None and current.placement.pieces.shape == placement.pieces.shape:
                changed = np.unique(changed_rows // per)
            else:
                positions = table.known if table is not None else None  # the planner matched these lists through it already
                changed = changed_slices(current.placement, placement, per=per, lookups=self._lookups, positions=positions)
            rendered = split(namespace, name, placement, only=changed.tolist(), per=per, order=order)
            versions = list(was.versions)
            for piece_slice in rendered:
                versions[piece_slice.index] = piece_slice.version
            index = SliceIndex(per, tuple(versions))
        else:
            index, rendered = sliced_form(namespace, name, placement, order=order)
        with self._lock:
            held = self.slices.slices(key)
            fresh = [s for s in rendered if (s.index, s.version) not in held]
        return index, fresh

    def _name_order(self, nodes: tuple[str, ...], table: NodeTable | None) -> NameOrder:
        """The name order of a target's node list: through the node table's (sorted once per
        pass) when the table names every node of it, else its own (remembered for the pass)."""
        if table is not None:
            positions = table.known(nodes)
            if len(positions) and int(positions.min()) >= 0:
                return NameOrder.within(NameOrder.of(table.names, self._orders), positions, nodes)
        return NameOrder.of(nodes, self._orders)

    def _create_slices(self, key: str, raw: Mapping[str, Any], fresh: list[PlacementSlice]) -> bool:

        """Create the new slices before the index that names them (``False``: the DataSet is gone)."""
        namespace = key.split("/", 1)[0]
        uid = str((raw.get("metadata") or {}).get("uid") or "")
        for piece_slice in fresh:
            obj = piece_slice.to_object(uid)
            self._step("before-slice")
            try:
                self.api.create(PLACEMENT_SLICES, obj, namespace=namespace)
            except ApiError as exc:
                if exc.status == 404:
                    return False
                if exc.status != 409:  # 409: created before (a slice's name is its content)
                    raise
            with self._lock:
                self.slices.add(piece_slice)
        return True

    def _prune(self, key: str, status: Mapping[str, Any]) -> None:
        """Delete the slices of ``key`` that the stored ``status`` does not name (after the index
        moved on, or left over by a writer that stopped between its steps)."""
        index = _index_of(status)
        named = set() if index is None else set(enumerate(index.versions))
        with self._lock:
            stale = [s for k, s in self.slices.slices(key).items() if k not in named]
        self._delete_slices(stale)

    def _delete_slices(self, stale: Iterable[PlacementSlice]) -> None:
        api = self.api
        if self.dry_run or not isinstance(api, DeletesObjects):
            return
        for piece_slice in stale:
            self._step("before-slice")
            try:
                api.delete(PLACEMENT_SLICES, piece_slice.name, namespace=piece_slice.namespace)
            except ApiError as exc:
                if exc.status != 404:
                    raise
            with self._lock:
                self.slices.discard(piece_slice)

    def _write_invalid(self, key: str, problem: str, report: PassReport, *, reason: str = "InvalidSpec") -> None:
        raw = self.datasets.get(key) or {}
        old = raw.get("status") or {}
        cond = {"type": "Placed", "status": "False", "reason": reason, "message": problem}
        conditions = conditions_with_times([cond], old.get("conditions") or [], format_time(self.clock()))
        others = [c for c in old.get("conditions") or [] if isinstance(c, Mapping) and c.get("type") != "Placed"]
        if self.dry_run:
            report.planned[key] = {"conditions": conditions}
            return
        if _condition(old, "Placed") == "False" and previous_message(old, "Placed") == problem:
            return
        self._step("before-status")
        namespace, name = key.split("/", 1)
        try:
            self.api.patch_status(DATASETS, name, {"status": {"conditions": [*others, *conditions]}}, namespace=namespace)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return
        report.written.append(key)
        self._event(raw, Event("Warning", reason, problem))

    def _write_nodes(self, datasets: list[DataSet], cluster: ClusterView, report: PassReport) -> None:
        patches = node_annotations(datasets, cluster, format_time(self.clock()))
        for name, patch in patches.items():
            if self.dry_run:
                continue
            self._step("before-node")
            try:
                self.api.patch(NODES, name, {"metadata": {"annotations": patch}})
            except ApiError as exc:
                if exc.status == 404:
                    continue
                raise
            report.nodes_patched.append(name)
            self._step("after-node")
            if patch.get(labels.DATA_DRAINED):
                involved = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
                why = f"no DataSet's target or transfer references {name}: its data is safe elsewhere"
                self._safe_event(involved, Event("Normal", "DataDrained", why))

    def _event(self, raw: Mapping[str, Any], event: Event) -> None:
        meta = raw.get("metadata") or {}
        involved = {
            "apiVersion": DATASETS.api_version,
            "kind": DATASETS.kind,
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid") if meta.get(k)},
        }
        self._safe_event(involved, event)

    def _safe_event(self, involved: Mapping[str, Any], event: Event) -> None:
        try:
            self.api.create_event(involved, reason=event.reason, message=event.message[:1024], type=event.type)
        except ApiError as exc:  # an Event is an explanation, never a reason to stop
            log.warning("event %s not recorded: %s", event.reason, exc)

    # ------------------------------------------------------------------- loop
    def run(self, stop: threading.Event, *, batch_s: float = 0.05) -> None:
        """Informers on DataSets, Nodes and NodeHoldings; reconcile what their events touch and
        everything each ``resync_s``; until ``stop`` is set. Errors are logged and retried; a
        :class:`~kube.leading.NotLeaderError` from ``guard`` ends the loop (raised)."""
        informers = [
            Informer(self.api, DATASETS, on_event=self._on_dataset, on_relist=self._relist_datasets),
            Informer(self.api, NODES, on_event=self._on_node, on_relist=self._relist_nodes),
            Informer(self.api, NODE_HOLDINGS, on_event=self._on_holdings, on_relist=self._relist_holdings),
            Informer(self.api, PLACEMENT_SLICES, on_event=self._on_slice, on_relist=self._relist_slices),
        ]

        for informer in informers:
            informer.start()
        try:
            while not all(i.synced.is_set() for i in informers):
                if stop.wait(0.05):
                    return
            next_resync = time.monotonic()
            failures = 0
            while not stop.is_set():
                # Wake for the resync, when an agent's heartbeat expires (no re-plan per heartbeat),
                # or when a deferred progress write is due.
                due = min(self._deferred.values(), default=math.inf)
                timeout = max(0.0, min(next_resync - time.monotonic(), self.next_expiry - self.clock(), due - self.clock()))
                woken = self._wake.wait(min(timeout, 0.5))  # in slices: ``stop`` is seen within 0.5 s
                if stop.is_set():
                    return
                if not woken and timeout > 0.5:
                    continue
                stop.wait(batch_s)  # let a burst of events coalesce into one pass
                self._wake.clear()
                with self._lock:
                    expired = self.clock() >= self.next_expiry
                    everything = self._all_dirty or expired or time.monotonic() >= next_resync
                    keys = None if everything else set(self._dirty) | {k for k, t in self._deferred.items() if t <= self.clock()}
                    self._dirty.clear()
                    self._all_dirty = False
                if everything:
                    next_resync = time.monotonic() + self.settings.resync_s
                try:
                    self.reconcile(keys)
                    failures = 0
                except ApiError as exc:
                    failures += 1
                    self.metrics.errors.inc()
                    log.warning("reconcile failed (%s); retrying", exc)
                    self._mark(everything=True)
                    stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
        finally:
            for informer in informers:
                informer.stop(2.0)


def _age_allocations() -> None:
    """Move what a pass allocated (millions of objects at 100,000 nodes: statuses, typed nodes)
    into the oldest generation without walking it: otherwise the first collection after the
    pass, a young one, walks every object allocated while collection was paused (1-2 s at
    100,000 nodes). They are still collected by full collections (``gc.freeze`` then
    ``gc.unfreeze``: the permanent generation is merged back into the oldest)."""
    gc.freeze()
    gc.unfreeze()


def _risk(decision: Decision, dataset: DataSet) -> tuple[float, int]:
    """How close a DataSet is to losing a shard: its riskiest shard's ready pieces beyond the
    ``needed`` ones, then minus that shard's bytes (sorts most at risk first)."""
    ready = decision.shard_ready
    if not ready.size:
        return (math.inf, 0)
    fewest = int(ready.min())
    sizes = dataset.spec.shard_sizes[: ready.size]
    biggest = int(sizes[0]) if (sizes == sizes[0]).all() else int(sizes[ready == fewest].max())
    return (float(fewest - dataset.spec.redundancy.needed), -biggest)


def _heartbeat(obj: Mapping[str, Any] | None) -> float | None:
    """A raw NodeHoldings' ``status.heartbeatTime`` in epoch seconds (``None``: absent or unreadable)."""
    text = ((obj or {}).get("status") or {}).get("heartbeatTime")
    return parse_time(text) if isinstance(text, str) and text else None


def _typed_holdings(obj: Mapping[str, Any]) -> tuple[NodeHoldings, float | None]:
    """A NodeHoldings typed, with its heartbeat in epoch seconds."""
    return NodeHoldings.from_object(obj), _heartbeat(obj)


def _index_of(status: Mapping[str, Any]) -> SliceIndex | None:
    """The slice index a stored ``status`` holds (``None``: its target is inline, or none)."""
    sliced = (status.get("placement") or {}).get("slices") if isinstance(status.get("placement"), Mapping) else None
    if not isinstance(sliced, Mapping):
        return None
    versions, per = sliced.get("versions"), sliced.get("shardsPerSlice")
    if not isinstance(versions, list) or not isinstance(per, int):
        return None
    return SliceIndex(per, tuple(str(v) for v in versions))


def _condition(status: Mapping[str, Any], kind: str) -> str:

    for cond in status.get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return str(cond.get("status"))
    return ""


def previous_message(status: Mapping[str, Any], kind: str) -> str:
    for cond in status.get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return str(cond.get("message"))
    return ""


#: Status fields that only report progress (see ``ReconcilerSettings.progress_write_s``).
PROGRESS_FIELDS = frozenset({"pieces", "bytes", "progress", "estimatedReadyTime"})


def _progress_only(old: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Every difference between the stored status and ``body`` is progress: the progress fields,
    or a condition's message (same types, statuses and reasons)."""
    for k, v in body.items():
        if k in PROGRESS_FIELDS or _same(old.get(k), v):
            continue
        if k != "conditions":
            return False
        was = {c.get("type"): (c.get("status"), c.get("reason")) for c in old.get(k) or () if isinstance(c, Mapping)}
        if was != {c.get("type"): (c.get("status"), c.get("reason")) for c in v if isinstance(c, Mapping)}:
            return False
    return True


def _same(old: Any, new: Any) -> bool:
    """Equal as status JSON (an absent list or string equals an empty one)."""
    if old is None:
        return new in ([], "", {}, None)
    return bool(old == new)


__all__ = ["WATCHED", "PassReport", "Reconciler"]
