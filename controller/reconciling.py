"""The reconcile loop: observe, plan, act; triggered by watches, batched, restart-safe.

:meth:`Controller.reconcile_once` lists Nodes, Pods, DataSets and KBLs, asks the provider for
its groups, plans with :func:`placement.capacity.plan_capacity` and executes the plan (or, in dry
run, only returns it). :meth:`Controller.run` watches pods, KBLs, nodes and DataSets; the first
unschedulable pod of a KBL (``PodScheduled=False``, reason ``Unschedulable``) triggers a
reconcile after ``batch_window_s`` (default 0.2 s) so pods created together are planned
together; otherwise it resyncs every ``resync_s``. Nothing is remembered between reconciles
except caches: intents are written to the KBL's status before the cloud call, and the cloud
call is idempotent with a deterministic token, so a restart at any step converges.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.acting import Actor
from controller.providers import NodeGroupProvider
from kube.api import DATASETS, KBLS, NODES, PODS, GoneError, KubeApi, Resource
from placement import capacity as cap
from topology.clusters import Cluster
from topology.datasets import DataSet
from topology.errors import ObjectError
from topology.kbls import KBL
from topology.nodes import Node
from topology.pods import Pod

StepHook = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """Knobs of the loop; times in seconds."""

    capacity: cap.CapacitySettings = field(default_factory=cap.CapacitySettings)
    cluster_name: str = "kbl"
    batch_window_s: float = 0.2
    resync_s: float = 10.0
    dry_run: bool = False


def _epoch(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def node_ready_seconds(raw_nodes: list[dict[str, Any]]) -> dict[str, float]:
    """Measured node-ready time per group: the slowest of its nodes' Ready - creation times."""
    out: dict[str, float] = {}
    for obj in raw_nodes:
        meta = obj.get("metadata") or {}
        group = (meta.get("labels") or {}).get("eks.amazonaws.com/nodegroup") or (meta.get("labels") or {}).get("kbl.io/node-group")
        born = _epoch(str(meta.get("creationTimestamp", "")))
        if not group or born is None:
            continue
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                ready = _epoch(str(cond.get("lastTransitionTime", "")))
                if ready is not None and ready >= born:
                    out[group] = max(out.get(group, 0.0), ready - born)
    return out


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
    utilisation:
        Optional source of per-KBL utilisation (metrics.k8s.io or Prometheus readers).
    guard:
        Called with a step name before every write; raises to stop acting (the leader
        election's :meth:`~kube.leading.LeaderElector.check`).
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
        utilisation: Callable[[list[KBL], list[Node]], Mapping[str, cap.Utilisation]] | None = None,
        guard: Callable[[str], None] | None = None,
    ) -> None:
        self.kube = kube
        self.provider = provider
        self.settings = settings or ControllerSettings()
        self.clock = clock
        self.removal_check = removal_check
        self.utilisation = utilisation
        self.actor = Actor(
            kube, provider, self.settings.cluster_name, clock, step_hook or (lambda _step: None),
            max_nodes_total=self.settings.capacity.max_nodes_total, guard=guard,
        )
        self.rejected: list[ObjectError] = []
        self.reconciles = 0

    # -------------------------------------------------------------------- observe
    def observe(self) -> cap.CapacityState:
        """Read the cluster and the cloud into a :class:`~placement.capacity.CapacityState`."""
        raw_nodes, _ = self.kube.list(NODES)
        raw_pods, _ = self.kube.list(PODS)
        raw_datasets, _ = self.kube.list(DATASETS)
        raw_kbls, _ = self.kube.list(KBLS)
        nodes = self._typed(raw_nodes, Node.from_object)
        pods = self._typed(raw_pods, Pod.from_object)
        datasets = self._typed(raw_datasets, DataSet.from_object)
        kbls = self._typed(raw_kbls, KBL.from_object)
        return self.state_of(nodes, pods, datasets, kbls, raw_nodes)

    def state_of(
        self, nodes: list[Node], pods: list[Pod], datasets: list[DataSet], kbls: list[KBL], raw_nodes: list[dict[str, Any]]
    ) -> cap.CapacityState:
        cluster = Cluster()
        for node in nodes:
            cluster.set_node(node)
        for dataset in datasets:
            cluster.set_dataset(dataset)
        groups = [
            cap.GroupState(g.name, g.kbl, g.zone, g.instance_type, g.desired, g.min_size, g.max_size, g.status)
            for g in self.provider.list_groups()
        ]
        ready = {}
        for kbl in kbls:
            for entry in kbl.status.get("nodeGroups") or ():
                if isinstance(entry, Mapping) and isinstance(entry.get("nodeReadySeconds"), int | float):
                    ready[str(entry.get("name"))] = float(entry["nodeReadySeconds"])
        ready.update(node_ready_seconds(raw_nodes))
        util = dict(self.utilisation(kbls, nodes)) if self.utilisation else {}
        return cap.CapacityState(self.clock(), nodes, pods, kbls, datasets, cluster, groups, ready, util)

    def _typed(self, raws: list[dict[str, Any]], build: Callable[[Any], Any]) -> list[Any]:
        out = []
        for raw in raws:
            try:
                out.append(build(raw))
            except ObjectError as exc:
                self.rejected.append(exc)
        return out

    # ----------------------------------------------------------------------- act
    def plan(self, state: cap.CapacityState | None = None) -> cap.Plan:
        return cap.plan_capacity(state or self.observe(), self.settings.capacity, removal_check=self.removal_check)

    def reconcile_once(self) -> cap.Plan:
        """Observe, plan and (unless dry run) execute; returns the plan."""
        state = self.observe()
        plan = self.plan(state)
        self.reconciles += 1
        if not self.settings.dry_run:
            self.actor.execute(plan, state)
        return plan

    # ---------------------------------------------------------------------- loop
    def run(self, stop: threading.Event, *, max_reconciles: int | None = None) -> None:
        """Reconcile until ``stop`` is set: on watch triggers (batched) and every ``resync_s``."""
        trigger = threading.Event()
        threads = [
            threading.Thread(target=self._watch, args=(res, trigger, stop), daemon=True, name=f"watch-{res.plural}")
            for res in (PODS, KBLS, NODES, DATASETS)
        ]
        for t in threads:
            t.start()
        # A stop (shutdown, or leadership ending) wakes the loop at once instead of after a resync.
        finished = threading.Event()
        threading.Thread(target=_wake_on_stop, args=(stop, trigger, finished), daemon=True, name="stop-wakes-loop").start()
        try:
            while not stop.is_set():
                self.reconcile_once()
                if max_reconciles is not None and self.reconciles >= max_reconciles:
                    break
                if trigger.wait(self.settings.resync_s) and not stop.is_set():
                    stop.wait(self.settings.batch_window_s)  # let pods created together arrive
                trigger.clear()
        finally:
            finished.set()

    def _watch(self, resource: Resource, trigger: threading.Event, stop: threading.Event) -> None:
        version = ""
        while not stop.is_set():
            try:
                if not version:
                    _, version = self.kube.list(resource)
                for event in self.kube.watch(resource, resource_version=version, timeout_s=5):
                    if stop.is_set():
                        return
                    meta = event.object.get("metadata") or {}
                    version = str(meta.get("resourceVersion", version))
                    if resource is not PODS or _is_unschedulable(event.object):
                        trigger.set()
            except GoneError:
                version = ""
            except Exception:  # the API server went away: retry after a pause, never die
                stop.wait(1.0)


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

