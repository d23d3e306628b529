"""The reconcile loop: observe, plan, act; fed by informers, batched, restart-safe.

:meth:`Controller.reconcile_once` reads Nodes, Pods, DataSets (and the PlacementSlices of large
targets), KBLs and NodeHoldings, asks the provider for its groups and instance types, plans with
:func:`placement.capacity.plan_capacity` and executes the plan (or, in dry run, only returns
it). :meth:`Controller.run` keeps those objects in step through one
:class:`~kube.watching.Informer` per resource (a list, then a watch; never a relist per event) and
reads the caches at every reconcile. The first unschedulable pod of a KBL (``PodScheduled=False``,
reason ``Unschedulable``) or any change of a node, KBL, DataSet, PlacementSlice or NodeHoldings
triggers a reconcile after ``batch_window_s`` (default 0.2 s) so pods created
together are planned together; otherwise it resyncs every ``resync_s``. Without ``run`` (a single
``reconcile_once``, dry runs, tests) each reconcile lists once. Nothing is remembered between
reconciles except caches: intents are written to the KBL's status before the cloud call, and the
cloud call is idempotent with a deterministic token, so a restart at any step converges.

A DataSet whose target is written as PlacementSlices (:mod:`topology.slices`) is read with the
target its index names *now*, assembled from the slices (never an older one: it may not name the
node a piece moved to). While a slice it names has not been read, its target is *unknown*
(:attr:`~topology.datasets.DataSet.awaits_slices`), not "nothing placed": scale-down then removes
no node and says why (:func:`placement.capacity.unknown_targets`).
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.acting import Actor
from controller.baking import Rebaker
from controller.bluegreen import blue_green_pairs, hidden_blue_groups
from controller.measuring import ControllerMetrics
from controller.patching import Patcher, Rebooter
from controller.providers import NodeGroupProvider, ProviderError, RollStrategy
from controller.providers.pricing import PriceTable, price_table, shipped_prices
from controller.rolling import Roller, held_groups, hold_for_rolls, rolling_groups
from kube.api import DATASETS, JOBS, KBLS, NODE_HOLDINGS, NODES, PLACEMENT_SLICES, PODS, KubeApi, Resource, WatchEvent
from kube.watching import Informer, InformerSettings
from placement import capacity as cap
from topology.clusters import Cluster
from topology.datasets import DataSet
from topology.errors import ObjectError
from topology.holdings import NodeHoldings
from topology.kbls import KBL
from topology.nodes import Node
from topology.pods import Pod
from topology.slices import PlacementSlice, SliceStore
from topology.snapshots import paused_gc
from topology.times import parse_time

log = logging.getLogger(__name__)

StepHook = Callable[[str], None]

#: The resources the controller reads, with the typed form each is read into.
WATCHED: tuple[tuple[Resource, Callable[[Any], Any]], ...] = (
    (NODES, Node.from_object),
    (PODS, Pod.from_object),
    (DATASETS, DataSet.from_object),
    (PLACEMENT_SLICES, PlacementSlice.from_object),
    (KBLS, KBL.from_object),
    (NODE_HOLDINGS, NodeHoldings.from_object),
    (JOBS, cap.JobProgress.from_object),
)
#: Resources read when served (a reconcile goes on without them, the loop does not wait for them).
#: PlacementSlices: until they are read, every sliced DataSet's target is unknown, which keeps
#: every node from leaving (an API without the kind has no sliced DataSet to read).
OPTIONAL: tuple[Resource, ...] = (NODE_HOLDINGS, JOBS, PLACEMENT_SLICES)
#: How many recent hydration-rate samples the per-node throughput is taken over, per group.
RECENT_RATES = 20
#: How many recent joins the node-ready p90 is taken over, per group.
RECENT_JOINS = 20


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """Knobs of the loop; times in seconds."""

    capacity: cap.CapacitySettings = field(default_factory=cap.CapacitySettings)
    cluster_name: str = "kbl"
    batch_window_s: float = 0.2
    resync_s: float = 10.0
    dry_run: bool = False
    informer: InformerSettings = field(default_factory=lambda: InformerSettings(watch_timeout_s=60))
    #: Prototype images from the loop (:class:`~controller.baking.Rebaker`): a group is re-baked
    #: when its image is older than this and a node runs newer software; 0 turns it off.
    rebake_after_s: float = 0.0
    #: How a re-baked group rolls: ``next-nodes`` (Auto Scaling groups) or ``rolling``.
    rebake_strategy: RollStrategy = "next-nodes"


def p90(values: Iterable[float]) -> float:
    """The nearest-rank 90th percentile (the largest value for fewer than ten)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def node_join(node: Node) -> tuple[str, float, float] | None:
    """``(group, ready time, ready - creation)`` of a ready node of a group, else ``None``."""
    group = cap.names.group_of_labels(node.labels) if node.ready and node.ready_transition else None
    born = parse_time(node.creation_timestamp) if group else None
    ready = parse_time(node.ready_transition) if born is not None else None
    if not group or born is None or ready is None or ready < born:
        return None
    return group, ready, ready - born


def node_ready_seconds(joins: Iterable[tuple[str, float, float]], recent: int = RECENT_JOINS) -> dict[str, float]:
    """Measured node-ready time per group: the p90 of Ready - creation over its ``recent`` latest
    joins (:func:`node_join` of each node)."""
    seen: dict[str, list[tuple[float, float]]] = {}
    for group, ready, took in joins:
        seen.setdefault(group, []).append((ready, took))
    return {group: p90(d for _, d in sorted(found)[-recent:]) for group, found in seen.items()}


class HydrationMeter:
    """Measured hydration throughput per node, per group, from NodeHoldings ``readyBytes`` growth.

    At every observation each node's ready bytes (summed over its DataSets) are compared with the
    previous observation; a growth while the node had pieces hydrating (then or now) is one sample (bytes/s).
    The group's figure is the median of its ``recent`` latest samples (a cache between reconciles,
    like the informers': a restart measures again and uses the settings' default meanwhile).
    """

    def __init__(self, recent: int = RECENT_RATES) -> None:
        self.recent = recent
        self.last: dict[str, tuple[float, int, bool]] = {}
        self.samples: dict[str, list[float]] = {}

    def observe(self, now_s: float, nodes: Mapping[str, Node], holdings: Iterable[NodeHoldings]) -> dict[str, float]:
        """Record one observation (``nodes`` by name); returns group -> median bytes/s per node
        over recent samples."""
        for held in holdings:
            ready = sum(d.ready_bytes for d in held.datasets.values())
            hydrating = any(any(d.hydrating.values()) for d in held.datasets.values())
            before = self.last.get(held.node)
            self.last[held.node] = (now_s, ready, hydrating)
            node = nodes.get(held.node)
            group = cap.node_group_of(node) if node is not None else None
            if before is None or group is None or now_s <= before[0] or ready <= before[1]:
                continue
            if hydrating or before[2]:  # busy hydrating during the interval
                seen = self.samples.setdefault(group, [])
                seen.append((ready - before[1]) / (now_s - before[0]))
                del seen[: -self.recent]
        return {g: statistics.median(s) for g, s in self.samples.items() if s}


class ObjectCache:
    """One resource's objects as its informer last saw them, raw and typed (thread-safe)."""

    def __init__(self, build: Callable[[Any], Any]) -> None:
        self.build = build
        self.lock = threading.Lock()
        self.raw: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.typed: dict[tuple[str, str], Any] = {}
        self.rejected: dict[tuple[str, str], ObjectError] = {}

    @staticmethod
    def _key(obj: Any) -> tuple[str, str]:
        if isinstance(obj, Node):  # listed typed (a snapshot read with typed=True)
            return ("", obj.name)
        meta = obj.get("metadata") or {}
        return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def _put(self, obj: Any) -> None:
        key = self._key(obj)
        self.raw[key] = obj
        self.rejected.pop(key, None)
        if isinstance(obj, Node):  # typed as it was decoded: nothing left to build
            self.typed[key] = obj
            return
        try:
            self.typed[key] = self.build(obj)
        except ObjectError as exc:
            self.typed.pop(key, None)
            self.rejected[key] = exc

    def relist(self, items: Iterable[Mapping[str, Any]]) -> None:
        with self.lock:
            self.raw.clear()
            self.typed.clear()
            self.rejected.clear()
            for obj in items:
                self._put(obj)

    def event(self, event: WatchEvent) -> None:
        with self.lock:
            if event.type == "DELETED":
                key = self._key(event.object)
                self.raw.pop(key, None)
                self.typed.pop(key, None)
                self.rejected.pop(key, None)
            else:
                self._put(event.object)

    def snapshot(self) -> tuple[list[Mapping[str, Any]], list[Any], list[ObjectError]]:
        with self.lock:
            return list(self.raw.values()), list(self.typed.values()), list(self.rejected.values())


class Controller:
    """The companion controller (see the module docstring).

    Parameters
    ----------
    kube:
        The Kubernetes API.
    provider:
        The cloud node groups.
    settings:
        Loop and planner knobs.
    clock:
        Epoch seconds (simulated in tests and benchmarks).
    step_hook:
        Called with a step name at every point where a crash could happen (tests kill there).
    removal_check:
        The scale-down durability check.
    utilization:
        Optional source of per-KBL utilization (metrics.k8s.io or Prometheus readers).
    guard:
        Called with a step name before every write; raises to stop acting (the leader
        election's :meth:`~kube.leading.LeaderElector.check`).
    metrics:
        The Prometheus metrics to record into (a private registry when ``None``).
    rebooter:
        Reboots nodes labelled ``kbl.io/reboot-required``, one at a time per group through the
        safe path (:mod:`controller.patching`); ``None``: no reboots.
    policy:
        How growth picks instance types and falls back (:class:`~placement.capacity.LaunchPolicy`).
    lists:
        Where the watched resources are listed and watched (``kube`` when ``None``): a reader
        that may serve Nodes typed as decoded and placements as numbers
        (:meth:`~kube.client.KubeClient.typed_reader`, a snapshot read ``typed``).
    """

    def __init__(
        self,
        kube: KubeApi,
        provider: NodeGroupProvider,
        settings: ControllerSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        step_hook: StepHook | None = None,
        removal_check: cap.RemovalCheck = cap.removal_verdict,
        utilization: Callable[[list[KBL], list[Node]], Mapping[str, cap.Utilization]] | None = None,
        guard: Callable[[str], None] | None = None,
        metrics: ControllerMetrics | None = None,
        lists: KubeApi | None = None,
        rebooter: Rebooter | None = None,
        policy: cap.LaunchPolicy = cap.CHEAPEST_FIRST,
    ) -> None:
        self.policy = policy
        self.kube = kube
        self.lists = lists if lists is not None else kube
        self.provider = provider
        self.settings = settings or ControllerSettings()
        self.clock = clock
        self.removal_check = removal_check
        self.utilization = utilization
        self.metrics = metrics or ControllerMetrics()
        self.actor = Actor(
            kube, provider, self.settings.cluster_name, clock, step_hook or (lambda _step: None),
            max_nodes_total=self.settings.capacity.max_nodes_total, guard=guard, metrics=self.metrics,
            capacity=self.settings.capacity,
        )
        self.rejected: list[ObjectError] = []
        self.reconciles = 0
        self.patcher = Patcher(kube, rebooter, clock, guard=guard or (lambda _step: None)) if rebooter is not None else None
        self.roller = Roller(kube, provider, clock, guard=guard or (lambda _step: None))
        self.rebaker: Rebaker | None = None
        if self.settings.rebake_after_s > 0:
            self.rebaker = Rebaker(kube, provider, clock, self.settings.rebake_after_s, self.settings.rebake_strategy,
                                   guard=guard or (lambda _step: None))  # fmt: skip
        self.caches: dict[str, ObjectCache] | None = None
        self.informers: list[Informer] = []
        self._catalog: list[cap.InstanceShape] | None = None
        self._price_table: PriceTable | None = None
        self.price_source = ""
        self.hydration = HydrationMeter()
        #: Every group the cloud listed in the last pass (the planner's may hide a blue/green roll's blue one).
        self.listed: list[cap.GroupState] = []
        # Kept between passes (see _cluster_of): the cluster and the typed objects written into it.
        self._cluster: Cluster | None = None
        self._in_cluster: tuple[dict[str, Node], dict[str, DataSet]] = ({}, {})
        self._joins: dict[str, tuple[Node, tuple[str, float, float] | None]] = {}
        # The PlacementSlices of the last pass and each sliced DataSet as read and as resolved.
        self.slices = SliceStore()
        self._resolved: dict[str, tuple[DataSet, DataSet]] = {}
        #: Keys of the DataSets whose target was unknown in the last pass (PlacementSlices not all read).
        self.unknown: list[str] = []

    # -------------------------------------------------------------------- observe
    def _read(self) -> dict[str, tuple[list[Mapping[str, Any]], list[Any]]]:
        """Every watched resource, raw and typed: from the informers' caches when they run, else
        one list each."""
        out: dict[str, tuple[list[Mapping[str, Any]], list[Any]]] = {}
        self.rejected = []
        for resource, build in WATCHED:
            if self.caches is not None:
                raw, typed, rejected = self.caches[resource.plural].snapshot()
                self.rejected.extend(rejected)
            else:
                cache = ObjectCache(build)
                try:
                    items, _ = self.lists.list(resource)
                except Exception:  # an optional resource (NodeHoldings, Jobs) the API does not serve
                    if resource in OPTIONAL:
                        items = []
                    else:
                        raise
                cache.relist(items)
                raw, typed, rejected = cache.snapshot()
                self.rejected.extend(rejected)
            out[resource.plural] = (raw, typed)
        return out

    def observe(self) -> cap.CapacityState:
        """Read the cluster and the cloud into a :class:`~placement.capacity.CapacityState`."""
        read = self._read()
        nodes = read[NODES.plural][1]
        pods, kbls = read[PODS.plural][1], read[KBLS.plural][1]
        datasets = self.targets(read[DATASETS.plural][1], read[PLACEMENT_SLICES.plural][1])
        affinity = {}
        for raw in read[PODS.plural][0]:
            terms = cap.required_affinity(raw)
            if terms:
                meta = raw.get("metadata") or {}
                affinity[f"{meta.get('namespace', 'default')}/{meta.get('name')}"] = terms
        return self.state_of(
            nodes, pods, datasets, kbls, holdings=read[NODE_HOLDINGS.plural][1], affinity=affinity, jobs=read[JOBS.plural][1]
        )

    def targets(self, datasets: Sequence[DataSet], slices: Iterable[PlacementSlice]) -> list[DataSet]:
        """Every DataSet with its target: inline ones as read; sliced ones assembled from the
        PlacementSlices their index names now (``SliceStore.resolve(latest=True)``, never an older
        target). One whose slices are not all there stays as read
        (:attr:`~topology.datasets.DataSet.awaits_slices`: its target is unknown) and is listed in
        :attr:`unknown`. A sliced DataSet and its target unchanged since the last pass give the
        same object, so :meth:`_cluster_of` writes nothing for it."""
        store = self.slices
        store.replace(slices)
        memo, kept, out = self._resolved, {}, []
        for dataset in datasets:
            if not dataset.awaits_slices:
                out.append(dataset)
                continue
            resolved = store.resolve(dataset, latest=True) or dataset
            last = memo.get(dataset.key)
            if last is not None and last[0] is dataset and last[1].placement is resolved.placement:
                resolved = last[1]
            kept[dataset.key] = (dataset, resolved)
            out.append(resolved)
        for gone in memo.keys() - kept.keys():
            store.forget(gone)
        self._resolved = kept
        unknown = sorted(d.key for d in out if d.awaits_slices)
        if set(unknown) - set(self.unknown):
            log.warning("DataSets %s: target not known yet (PlacementSlices not all read): no node leaves until it is", ", ".join(unknown))
        self.unknown = unknown
        return out

    def instance_types(self) -> list[cap.InstanceShape]:
        """The provider's catalog (the providers cache it); the last good one if the cloud fails."""
        try:
            self._catalog = list(self.provider.instance_types())
        except ProviderError as exc:
            self.metrics.cloud_error(exc.code)
            log.warning("instance types: %s", exc)
        return self._catalog or []

    def state_of(
        self,
        nodes: list[Node],
        pods: list[Pod],
        datasets: list[DataSet],
        kbls: list[KBL],
        *,
        holdings: Iterable[NodeHoldings] = (),
        affinity: Mapping[str, cap.Affinity] | None = None,
        jobs: Iterable[cap.JobProgress] = (),
    ) -> cap.CapacityState:
        """The planner's input. ``cluster`` is the controller's own, kept between passes
        (:meth:`_cluster_of`): valid until the next ``state_of``."""
        cluster = self._cluster_of(nodes, datasets)
        # Every group the cloud lists (the rolls step them all), and the groups the planner sees: a
        # blue/green roll's blue group is hidden once its green one exists, so the KBL's group in
        # that zone is the green one and no third is ever created (controller/bluegreen.py).
        self.listed = list(self.provider.list_groups())
        hidden = hidden_blue_groups(kbls, (g.name for g in self.listed))
        groups = [g for g in self.listed if g.name not in hidden]
        ready = {}
        for kbl in kbls:
            for entry in kbl.status.get("nodeGroups") or ():
                if isinstance(entry, Mapping) and isinstance(entry.get("nodeReadySeconds"), int | float):
                    ready[str(entry.get("name"))] = float(entry["nodeReadySeconds"])
        ready.update(self._node_ready_seconds(nodes))
        util = dict(self.utilization(kbls, nodes)) if self.utilization else {}
        now = self.clock()
        holdings = tuple(holdings)
        return cap.CapacityState(
            now, nodes, pods, kbls, datasets, cluster, groups, ready, util, self.instance_types(), holdings,
            dict(affinity or {}), {j.key: j for j in jobs}, self.hydration.observe(now, cluster.nodes, holdings),
            self.prices(kbls, groups), self.price_source,
        )

    def prices(self, kbls: Iterable[KBL], groups: Iterable[cap.GroupState] = ()) -> dict[tuple[str, str], float]:
        """USD per hour of every type the KBLs wish or the groups run (:func:`price_table`: the
        provider's prices when it can price, else the shipped table); :attr:`price_source` says which."""
        if self._price_table is None:
            self._price_table = shipped_prices()
        wanted = {self.settings.capacity.default_instance_type}
        for kbl in kbls:
            wanted.update(kbl.node_group.instance_types)
        for group in groups:
            wanted.update(group.types)
        found, self.price_source = price_table(self.provider, wanted, self._price_table)
        return found

    def _cluster_of(self, nodes: Sequence[Node], datasets: Sequence[DataSet]) -> Cluster:
        """The cluster of these nodes and DataSets: built in bulk the first time, then kept, and
        only what changed since the last pass written into it.

        A node or DataSet changed when its typed object is not the one written last time: the
        informers' caches keep an object until an event replaces it, so a pass after one event
        writes one node or one DataSet (a rebuild at 100,000 nodes and 10 million pieces takes
        seconds). ``tests/controller/test_kept_cluster.py`` compares the kept cluster with a fresh one.
        """
        cluster = self._cluster
        by_name = {n.name: n for n in nodes}
        by_key = {d.key: d for d in datasets}
        with paused_gc():  # 100,000 nodes and million-piece placements: a first build, in bulk
            if cluster is None:
                cluster = self._cluster = Cluster()
                cluster.add_nodes(by_name.values())
                for dataset in by_key.values():
                    cluster.set_dataset(dataset)
            else:
                old_nodes, old_datasets = self._in_cluster
                for name in old_nodes.keys() - by_name.keys():
                    cluster.remove_node(name)
                cluster.add_nodes(n for name, n in by_name.items() if old_nodes.get(name) is not n)
                for key in old_datasets.keys() - by_key.keys():
                    cluster.remove_dataset(key)
                for key, dataset in by_key.items():
                    if old_datasets.get(key) is not dataset:
                        cluster.set_dataset(dataset)
        self._in_cluster = (by_name, by_key)
        return cluster

    def _node_ready_seconds(self, nodes: Iterable[Node]) -> dict[str, float]:
        """:func:`node_ready_seconds` of the nodes, each node's join read once per typed object."""
        memo, kept = self._joins, {}
        for node in nodes:
            found = memo.get(node.name)
            kept[node.name] = found if found is not None and found[0] is node else (node, node_join(node))
        self._joins = kept
        return node_ready_seconds(join for _, join in kept.values() if join is not None)

    # ----------------------------------------------------------------------- act
    def plan(self, state: cap.CapacityState | None = None) -> cap.Plan:
        return cap.plan_capacity(state or self.observe(), self.settings.capacity, removal_check=self.removal_check, policy=self.policy)

    def reconcile_once(self) -> cap.Plan:
        """Observe, plan and (unless dry run) execute; returns the plan.

        No cyclic GC while it observes and plans: typing a 100,000-node cluster allocates
        millions of objects and no cycles, and each collection would walk them all again.
        """
        started = time.perf_counter()
        with paused_gc():
            state = self.observe()
            plan = hold_for_rolls(self.plan(state), rolling_groups(state.kbls))
        self.reconciles += 1
        self.metrics.saw_pending(plan, state.now_s)
        if not self.settings.dry_run:
            self.actor.execute(plan, state)
            greens = set(blue_green_pairs(state.kbls).values())  # no reboot nor bake beside a blue/green roll
            if self.patcher is not None:
                quiet = [g for g in state.groups if g.kbl and g.name not in greens]
                self.patcher.run_once(sorted({g.name for g in quiet}), {g.name: g.kbl for g in quiet})
                for node, why in self.patcher.failures:
                    log.warning("reboot of %s: %s", node, why)
                self.patcher.failures.clear()
            rolled = {(k.key, blue) for k in state.kbls for blue in blue_green_pairs([k])}  # a deleted blue group's last step
            kbl_groups = sorted({(g.kbl, g.name) for g in self.listed if g.kbl} | rolled)
            versions = {g.name: g.launch_template_version for g in self.listed}
            free = {g for _, g in kbl_groups} - held_groups(state.kbls)
            for group, step in self.roller.run_once(kbl_groups, versions, free).items():
                log.info("roll of %s: %s", group, step)
            for group, why in self.roller.failures:
                log.warning("roll of %s: %s", group, why)
            self.roller.failures.clear()
            if self.rebaker is not None:
                self.rebaker.run_once(sorted({(g.kbl, g.name) for g in state.groups if g.kbl and g.name not in greens}))
                for group, why in self.rebaker.failures:
                    log.warning("rebake of %s: %s", group, why)
                self.rebaker.failures.clear()
        self.metrics.reconciled(state, plan, time.perf_counter() - started)
        return plan

    # ---------------------------------------------------------------------- loop
    def start_informers(self, trigger: threading.Event) -> None:
        """One informer per watched resource, feeding :attr:`caches` and setting ``trigger``."""
        self.caches = {}
        for resource, build in WATCHED:
            cache = ObjectCache(build)
            self.caches[resource.plural] = cache

            def on_event(event: WatchEvent, cache: ObjectCache = cache, resource: Resource = resource) -> None:
                cache.event(event)
                if resource is not PODS or _is_unschedulable(event.object):
                    trigger.set()

            def on_relist(items: Iterable[Mapping[str, Any]], cache: ObjectCache = cache) -> None:
                cache.relist(items)
                trigger.set()

            informer = Informer(self.lists, resource, on_event=on_event, on_relist=on_relist, settings=self.settings.informer)
            self.informers.append(informer.start())

    def stop_informers(self) -> None:
        for informer in self.informers:
            informer.stop(timeout_s=2.0)
        self.informers = []
        self.caches = None

    def run(self, stop: threading.Event, *, max_reconciles: int | None = None) -> None:
        """Reconcile until ``stop`` is set: on informer triggers (batched) and every ``resync_s``."""
        trigger = threading.Event()
        self.start_informers(trigger)
        # A stop (shutdown, or leadership ending) wakes the loop at once instead of after a resync.
        finished = threading.Event()
        threading.Thread(target=_wake_on_stop, args=(stop, trigger, finished), daemon=True, name="stop-wakes-loop").start()
        try:
            core = [i for i in self.informers if i.resource not in OPTIONAL]
            while not stop.is_set() and not all(i.synced.is_set() for i in core):
                stop.wait(0.02)
            while not stop.is_set():
                trigger.clear()
                try:
                    self.reconcile_once()
                except ProviderError as exc:  # the cloud failed to answer: count it, try again on the next round
                    self.metrics.cloud_error(exc.code)
                    log.warning("reconcile: %s", exc)
                if max_reconciles is not None and self.reconciles >= max_reconciles:
                    break
                if trigger.wait(self.settings.resync_s) and not stop.is_set():
                    stop.wait(self.settings.batch_window_s)  # let pods created together arrive
        finally:
            finished.set()
            self.stop_informers()


def _wake_on_stop(stop: threading.Event, trigger: threading.Event, finished: threading.Event) -> None:
    while not finished.is_set():
        if stop.wait(0.2):
            trigger.set()
            return


def _is_unschedulable(obj: Mapping[str, Any]) -> bool:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            return True
    return False
