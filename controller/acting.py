"""Carrying out a capacity plan: Kubernetes actions and cloud calls, each idempotent.

Cordon (``spec.unschedulable`` plus the ``kbl.io/scale-down-since`` and ``kbl.io/drain=<reason>``
annotations: the placement reconciler then moves the node's data off), an Event while a leaving
node waits for its data, eviction through the Eviction API (a PodDisruptionBudget refusal leaves
the pod and the node waits), removal of one named instance, node annotations for Cluster
Autoscaler, and the KBL status where the controller keeps its state. A group creation is written
ahead into ``status.nodeGroups`` (phase ``Creating`` with its token) before the cloud call, and
confirmed after it, so a crash at any step leaves a state a new controller completes. A
``guard`` (the leader election's check) runs before every action and between the steps of one,
and stops the execution by raising when this controller may no longer act.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller.locking import entry_of, update_node_groups
from controller.providers import DetachesFromClusterAutoscaler, NodeGroupProvider, NodeGroupSpec, ProtectsInstances, ProviderError
from kube.api import KBLS, NODES, ApiError, KubeApi
from placement import capacity as cap
from placement.capacity.utilization import LAST_SCALE_KEY
from topology import labels
from topology.times import format_time

if TYPE_CHECKING:
    from controller.measuring import ControllerMetrics

def creation_token(cluster_name: str, group: str) -> str:
    """The deterministic idempotency token of a group's creation (64 hex characters)."""
    return hashlib.sha256(f"{cluster_name}/{group}".encode()).hexdigest()[:64]


@dataclass(slots=True)
class ActionLog:
    """What the last execution did (for tests, events and the benchmark)."""

    done: list[cap.Action] = field(default_factory=list)
    refused: list[tuple[cap.Action, str]] = field(default_factory=list)
    first_cloud_request_s: float | None = None


class Actor:
    """Executes :class:`~placement.capacity.Action` values."""

    def __init__(
        self,
        kube: KubeApi,
        provider: NodeGroupProvider,
        cluster_name: str,
        clock: Callable[[], float],
        hook: Callable[[str], None],
        *,
        max_nodes_total: int | None = None,
        guard: Callable[[str], None] | None = None,
        metrics: ControllerMetrics | None = None,
        capacity: cap.CapacitySettings | None = None,
    ) -> None:
        self.capacity = capacity or cap.CapacitySettings()
        self.metrics = metrics
        self.max_nodes_total = max_nodes_total
        self.kube = kube
        self.provider = provider
        self.cluster_name = cluster_name
        self.clock = clock
        self.guard = guard or (lambda _step: None)
        self.step_hook = hook
        self.log = ActionLog()
        self._plan = cap.Plan(())
        self._state: cap.CapacityState | None = None

    def hook(self, step: str) -> None:
        """A step between two writes: the guard may stop us here (leadership lost), then the
        test hook (a simulated crash)."""
        self.guard(step)
        self.step_hook(step)

    def execute(self, plan: cap.Plan, state: cap.CapacityState) -> ActionLog:
        """Run every action; a failed action is logged as refused and the rest go on."""
        self.log = ActionLog()
        self._plan = plan
        self._state = state
        try:  # first: a resize below may then take only an instance that never joined
            self._protect_joined(state)
        except (ProviderError, ApiError) as exc:  # retried on the next reconcile
            self.log.refused.append((cap.Note("", "scale-in protection"), str(exc)))
        for action in plan.actions:
            if isinstance(action, cap.Note):
                continue
            self.guard(action.kind)
            try:
                self._one(action, state)
            except (ProviderError, ApiError) as exc:
                self.log.refused.append((action, str(exc)))
                self._count(action.kind, "refused")
                if isinstance(exc, ProviderError) and self.metrics is not None:
                    self.metrics.cloud_error(exc.code)
                self._event(action.kbl, "CapacityActionFailed", f"{action.kind}: {exc}", "Warning")
                continue
            self.log.done.append(action)
            self._count(action.kind, "done")
        for verdict in plan.verdicts:
            if verdict.reason != cap.HELPS:
                pods = ", ".join(verdict.pods)
                self._event(verdict.kbl, "NoNodeHelps", f"no new node can run {pods} ({verdict.reason}): {verdict.message}", "Warning")
        self.guard("status-sync")
        try:
            self._sync_group_status(state)
        except (ProviderError, ApiError) as exc:  # retried on the next reconcile
            self.log.refused.append((cap.Note("", "status sync"), str(exc)))
        return self.log

    # ------------------------------------------------------------------ dispatch
    def _one(self, action: cap.Action, state: cap.CapacityState) -> None:
        if isinstance(action, cap.CreateNodeGroup):
            self._create(action)
        elif isinstance(action, cap.ResizeNodeGroup):
            desired = action.desired
            if desired > action.previous:
                desired = min(desired, max(action.previous, action.previous + self._room(action.group, action.previous)))
                if desired <= action.previous:
                    raise ProviderError("BudgetExhausted", f"{action.group}: the global node budget was spent since planning")
            self._cloud_request(action.kbl if desired > action.previous else "")
            self.provider.set_size(action.group, desired)
            self.hook("after-resize")
            key = "lastScaleUp" if action.desired > action.previous else "lastScaleDown"
            extra: dict[str, Any] = {key: self.clock(), "desired": desired}
            if "utilization" in action.reason:
                extra[LAST_SCALE_KEY] = self.clock()
            self.group_status(action.kbl, action.group, extra)
        elif isinstance(action, cap.BackOffNodeGroup):
            self._back_off(action)
        elif isinstance(action, cap.DeleteNodeGroup):
            self.provider.delete_group(action.group)
        elif isinstance(action, cap.CordonNode):
            mark = {cap.SCALE_DOWN_ANNOTATION: str(self.clock()), labels.DRAIN: action.reason}
            self.kube.patch(NODES, action.node, {"spec": {"unschedulable": True}, "metadata": {"annotations": mark}})
            self._event(action.kbl, "NodeCordoned", f"{action.node}: {action.reason}")
        elif isinstance(action, cap.UncordonNode):
            unmark = {cap.SCALE_DOWN_ANNOTATION: None, labels.DRAIN: None}
            self.kube.patch(NODES, action.node, {"spec": {"unschedulable": False}, "metadata": {"annotations": unmark}})
        elif isinstance(action, cap.EvictPods):
            refused = []
            for key in action.pods:
                namespace, _, name = key.partition("/")
                if not self.kube.evict(namespace, name):
                    refused.append(key)
            if refused:
                raise ApiError(429, f"eviction refused by a PodDisruptionBudget for {', '.join(refused)}; {action.node} waits")
        elif isinstance(action, cap.RemoveNode):
            self.provider.remove_instance(action.group, action.provider_id)
            self._event(action.kbl, "NodeRemoved", f"{action.node} left {action.group}: {action.reason}")
        elif isinstance(action, cap.WaitForData):
            self._event(action.kbl, "ScaleDownWaitsForData", f"{action.node}: {action.reason}")
        elif isinstance(action, cap.AnnotateNode):
            self.kube.patch(NODES, action.node, {"metadata": {"annotations": dict(action.annotations)}})
        elif isinstance(action, cap.RecordBlueprintStart):
            namespace, _, name = action.kbl.partition("/")
            self.kube.patch_status(KBLS, name, {"status": {"blueprintStart": format_time(action.start_s)}}, namespace=namespace)

    def _room(self, group: str, current: int) -> int:
        """Nodes the global budget still allows, from a fresh read of the cloud (narrows races
        between controllers to the two calls instead of a whole reconcile)."""
        if self.max_nodes_total is None:
            return 1 << 30
        used = sum(g.desired for g in self.provider.list_groups() if g.name != group)
        return self.max_nodes_total - used - current

    def _count(self, kind: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.action(kind, outcome)

    def _cloud_request(self, kbl: str = "") -> None:
        if self.log.first_cloud_request_s is None:
            self.log.first_cloud_request_s = self.clock()
        if self.metrics is not None and kbl and self._state is not None:
            helped = {p for v in self._plan.verdicts if v.kbl == kbl and v.reason == "helps" for p in v.pods}
            pods = [(p.key, p.creation_timestamp) for p in self._state.pods if p.key in helped]
            self.metrics.requested_for(pods, self.clock())

    # ------------------------------------------------------------------ group creation
    def _create(self, action: cap.CreateNodeGroup) -> None:
        token = creation_token(self.cluster_name, action.group)
        self.hook("before-intent")
        self.group_status(action.kbl, action.group, {
            "zone": action.zone, "instanceType": action.instance_type, "phase": "Creating", "token": token, "desired": action.desired,
            "instanceTypes": list(action.instance_types or (action.instance_type,)), "capacityType": action.capacity_type,
        })
        self.hook("after-intent")
        desired = min(action.desired, max(0, self._room(action.group, 0)))
        spec = NodeGroupSpec(
            action.group, action.kbl, action.zone, action.instance_type, desired, action.max_size,
            action.capacity_type, dict(action.labels), action.taints, tuple(action.instance_types),
        )
        self._cloud_request(action.kbl)
        try:
            info = self.provider.create_group(spec, token)
        except ProviderError as exc:
            if not exc.retryable:  # this option cannot be had (capacity, a type the zone lacks): back it off
                self._refused_create(action, exc)
            raise
        self.hook("after-create")
        phase = "Active" if info.status == "ACTIVE" else info.status.title()
        self.group_status(action.kbl, action.group, {"phase": phase, "lastScaleUp": self.clock()})
        self.hook("after-status")
        types = ", ".join(action.instance_types or (action.instance_type,))
        what = f"{action.group}: {action.desired} x {types} ({action.capacity_type}) in {action.zone}: {action.reason}"
        self._event(action.kbl, "NodeGroupCreated", what)

    def _refused_create(self, action: cap.CreateNodeGroup, exc: ProviderError) -> None:
        """A creation the cloud refused for good backs the group off like a failed launch, so the
        next plan tries the next option instead of the same request every reconcile."""
        kbl = next((k for k in (self._state.kbls if self._state else ()) if k.key == action.kbl), None)
        failures = (cap.group_backoff(kbl, action.group).failures if kbl is not None else 0) + 1
        until = self.clock() + cap.backoff_seconds(failures, self.capacity)
        self._back_off(cap.BackOffNodeGroup(action.kbl, action.group, failures, until, action.desired, f"create refused: {exc}"))

    def _back_off(self, action: cap.BackOffNodeGroup) -> None:
        """Record a given-up request and the group's backoff (or its reset) in the KBL's status;
        the desired size falls back in the same plan (a :class:`ResizeNodeGroup`)."""
        if action.failures:
            values: dict[str, Any] = {
                "launchFailures": action.failures, "backoffUntil": action.until_s, "lastLaunchFailure": self.clock(),
                "lastLaunchFailureReason": action.reason[:256],
            }
            if self.metrics is not None:
                self.metrics.cloud_error("LaunchGivenUp")
            message = f"{action.group}: gave up {action.given_up} nodes ({action.reason}); backed off {action.until_s - self.clock():.0f}s"
            self._event(action.kbl, "NodeGroupBackedOff", message, "Warning")
        else:
            values = {"launchFailures": 0, "backoffUntil": 0}
        self.group_status(action.kbl, action.group, values)

    # ------------------------------------------------------------------ status
    def group_status(self, kbl_key: str, group: str, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into the group's entry of the KBL's ``status.nodeGroups``, through
        :func:`~controller.locking.update_node_groups`: a lock record ``kbl bake`` wrote in
        between is read again, never overwritten."""

        def change(entries: list[dict[str, Any]]) -> bool:
            entry_of(entries, group).update(values)
            return True

        update_node_groups(self.kube, kbl_key, change, lambda: self.guard("status"))

    def _protect_joined(self, state: cap.CapacityState) -> None:
        """Scale-in protection on every joined, Ready node of a kbl group that is not leaving
        (any of them may hold data), then ``kbl.io/scale-in-protected`` on the node so it is done
        once. Lowering a group's desired size can then take only an instance that never joined;
        the protection is lifted by ``remove_instance`` on the drained node alone."""
        if not isinstance(self.provider, ProtectsInstances):
            return
        groups = {g.name for g in state.groups if g.status in ("ACTIVE", "UPDATING")}
        todo: dict[str, list[tuple[str, str]]] = {}
        for node in state.nodes:
            group = cap.node_group_of(node)
            if group not in groups or not node.provider_id or not node.ready:
                continue
            if labels.SCALE_IN_PROTECTED in node.annotations or cap.SCALE_DOWN_ANNOTATION in node.annotations:
                continue
            todo.setdefault(group, []).append((node.name, node.provider_id))
        for group, found in sorted(todo.items()):
            self.guard("protect-instances")
            self.provider.protect_instances(group, [pid for _, pid in found])
            for name, _ in found:
                self.kube.patch(NODES, name, {"metadata": {"annotations": {labels.SCALE_IN_PROTECTED: "true"}}})

    def _sync_group_status(self, state: cap.CapacityState) -> None:
        """Make ``status.nodeGroups`` agree with the cloud: adopt groups created by a controller
        that died before confirming them, and record measured node-ready times."""
        groups = {g.name: g for g in state.groups}
        for kbl in state.kbls:
            recorded = {str(e.get("name")): e for e in kbl.status.get("nodeGroups") or () if isinstance(e, Mapping)}
            for group in (g for g in state.groups if g.kbl == kbl.key):
                entry = recorded.get(group.name, {})
                phase = {"ACTIVE": "Active", "CREATING": "Creating", "DELETING": "Deleting"}.get(group.status, group.status.title())
                wanted: dict[str, Any] = {}
                if entry.get("phase") != phase:
                    wanted["phase"] = phase
                if "zone" not in entry:
                    wanted["zone"] = group.zone
                measured = state.node_ready_s.get(group.name)
                if measured is not None and entry.get("nodeReadySeconds") != measured:
                    wanted["nodeReadySeconds"] = measured
                if group.status == "ACTIVE" and not entry.get("clusterAutoscalerDetached"):
                    if isinstance(self.provider, DetachesFromClusterAutoscaler):
                        self.provider.detach_from_cluster_autoscaler(group.name)
                    wanted["clusterAutoscalerDetached"] = True
                if wanted:
                    self.group_status(kbl.key, group.name, wanted)
            for name, entry in recorded.items():
                if name not in groups and entry.get("phase") == "Active" and not entry.get("disruption"):  # a blue group being emptied
                    self.group_status(kbl.key, name, {"phase": "Gone"})

    def _event(self, kbl_key: str, reason: str, message: str, kind: str = "Normal") -> None:
        namespace, _, name = kbl_key.partition("/")
        involved = {"apiVersion": KBLS.api_version, "kind": "KBL", "metadata": {"name": name, "namespace": namespace}}
        with contextlib.suppress(ApiError):  # events are best effort
            self.kube.create_event(involved, reason=reason, message=message, type="Warning" if kind == "Warning" else "Normal")
