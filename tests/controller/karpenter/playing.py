"""Karpenter v1, kube-scheduler and the Deployment controller, played on the in-memory API.

What is played, as the real systems behave:

- **Karpenter's provisioner** acts on *every* pending pod, whatever its ``schedulerName``, that
  fits a NodePool: the pool's template labels and requirements (zone, instance types, capacity
  type, ``karpenter.sh/nodepool``) must satisfy the pod's ``nodeSelector``, and the pod must
  tolerate the pool's taints. Pools are tried by ``weight`` (then name). Before it launches, it
  packs the pending pods onto the NodeClaims still launching (in-flight capacity, with each pod's
  required pod anti-affinity), so a pod it already launched for never gets a second node; what is
  left opens new NodeClaims, first-fit decreasing, each of the smallest offered type that fits
  its first pod (a stand-in for "cheapest"), within the pool's ``limits.nodes``. Batches every
  ``batch_s``; a NodeClaim's node joins Ready ``launch_s`` after it is created.
- **Disruption**: ``WhenEmpty`` consolidation deletes a node's NodeClaim once the node has had no
  pod but DaemonSet pods for ``consolidateAfter``, never a node (or with a pod) annotated
  ``karpenter.sh/do-not-disrupt: "true"``, at most the pool's node budget (a percentage, rounded
  up) at a time. A deleted NodeClaim (by consolidation or by kbl) has its node tainted, its pods
  evicted, and the node and claim gone ``terminate_s`` later.
- **kube-scheduler** binds pending pods (higher priority first) to Ready, schedulable nodes where
  requests fit allocatable, taints are tolerated, the ``nodeSelector`` matches and required pod
  anti-affinity (``matchLabels`` on the hostname) holds; a pod that fits nowhere may preempt
  lower-priority pods of one node; one that cannot gets ``PodScheduled=False/Unschedulable``.
- **The Deployment controller** keeps ``replicas`` pods of every Deployment in the placeholder
  namespace, scaling down pending pods first, then the newest.

Left out (and why it does not flatter kbl): node affinity other than ``nodeSelector``, topology
spread, PodDisruptionBudgets in Karpenter's drain, spot interruptions, drift and expiry
(``expireAfter: Never`` on kbl pools), the ``WhenEmptyOrUnderutilized`` policy (kbl pools use
``WhenEmpty``), instance prices (the smallest fitting type stands in for the cheapest).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.providers.karpenter import NODEPOOL_LABEL
from kube.api import DEPLOYMENTS, NODECLAIMS, NODEPOOLS, NODES, PODS
from kube.memory import MemoryApi
from placement.capacity import InstanceShape
from topology import labels
from topology.examples import make_node
from topology.nodes import Node, Resources, Taint
from topology.pods import Pod
from topology.times import format_time, parse_time

DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
DISRUPTED_TAINT = {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}


def duration_s(text: str) -> float:
    """A Karpenter duration (``30s``, ``5m``, ``1h``) in seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    return float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text or 0)


@dataclass(slots=True)
class Claim:
    name: str
    pool: str
    shape: InstanceShape
    zone: str
    created_s: float
    deleting_since: float | None = None


@dataclass(slots=True)
class Played:
    """What happened: launches ``(time, pool, type)``, consolidations, real pods evicted."""

    launches: list[tuple[float, str, str]] = field(default_factory=list)
    consolidated: list[tuple[float, str]] = field(default_factory=list)
    evicted: list[tuple[float, str]] = field(default_factory=list)


class Karpenter:
    """The systems above, stepped by the test's clock (see the module docstring)."""

    def __init__(
        self,
        api: MemoryApi,
        clock: Callable[[], float],
        catalog: Mapping[str, InstanceShape],
        *,
        launch_s: float = 90.0,
        terminate_s: float = 30.0,
        batch_s: float = 10.0,
        deployments_namespace: str = "kbl-system",
        on_evicted: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.api = api
        self.clock = clock
        self.catalog = dict(catalog)
        self.launch_s = launch_s
        self.terminate_s = terminate_s
        self.batch_s = batch_s
        self.namespace = deployments_namespace
        self.on_evicted = on_evicted or (lambda _pod: None)
        self.claims: dict[str, Claim] = {}
        self.empty_since: dict[str, float] = {}
        self.played = Played()
        self.counter = 0
        self.last_batch = -math.inf
        self._pods: dict[tuple[str, str, str | None], Pod] = {}

    def _list(self, resource: Any, namespace: str | None = None) -> list[dict[str, Any]]:
        """The stored objects, uncopied (read only: copy before changing one)."""
        kind = self.api._kind(resource)
        with self.api.lock:
            found = sorted(self.api.objects.items())
        return [o for (plural, ns, _), o in found if plural == kind and (namespace is None or ns == namespace)]

    def _pod(self, obj: Mapping[str, Any]) -> Pod:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"], obj["metadata"].get("resourceVersion"))
        found = self._pods.get(key)
        if found is None:
            found = self._pods[key] = Pod.from_object(obj)
        return found

    # ------------------------------------------------------------------ the whole round
    def step(self) -> None:
        now = self.clock()
        self.deployments()
        self.lifecycle(now)
        self.schedule()
        if now - self.last_batch >= self.batch_s:
            self.last_batch = now
            self.provision(now)
            self.consolidate(now)

    def live_claims(self, pool: str | None = None) -> list[Claim]:
        return [c for c in self.claims.values() if c.deleting_since is None and (pool is None or c.pool == pool)]

    # ------------------------------------------------------------------ Deployments
    def deployments(self) -> None:
        deployments = self._list(DEPLOYMENTS, self.namespace)
        pods = self._list(PODS, self.namespace)
        for dep in deployments:
            selector = dep["spec"]["selector"]["matchLabels"]
            mine = [p for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())]
            want = int(dep["spec"].get("replicas") or 0)
            if len(mine) > want:  # pending first, then the newest
                mine.sort(key=lambda p: (bool(p["spec"].get("nodeName")), -int(p["metadata"]["resourceVersion"])))
                for pod in mine[: len(mine) - want]:
                    self.api.delete(PODS, pod["metadata"]["name"], self.namespace)
            for _ in range(want - len(mine)):
                self.counter += 1
                template = dep["spec"]["template"]
                pod = {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {
                        "name": f"{dep['metadata']['name']}-{self.counter}", "namespace": self.namespace,
                        "labels": dict(template["metadata"]["labels"]), "creationTimestamp": format_time(self.clock()),
                        "ownerReferences": [{"kind": "ReplicaSet", "name": dep["metadata"]["name"]}],
                    },
                    "spec": {**template["spec"], "priority": -10},
                    "status": {"phase": "Pending"},
                }
                self.api.put(PODS, pod)

    # ------------------------------------------------------------------ NodeClaims
    def pools(self) -> list[dict[str, Any]]:
        pools = self._list(NODEPOOLS)
        return sorted(pools, key=lambda p: (-int(p["spec"].get("weight") or 0), p["metadata"]["name"]))

    def lifecycle(self, now: float) -> None:
        stored = {c["metadata"]["name"]: c for c in self._list(NODECLAIMS)}
        joined = {n["metadata"]["name"] for n in self._list(NODES)}
        for name, claim in list(self.claims.items()):
            obj = stored.get(name)
            if obj is None and claim.deleting_since is None:  # deleted by kbl: Karpenter's finalizer holds it
                claim.deleting_since = now
                self._drain(name, now)
            if claim.deleting_since is not None:
                if now - claim.deleting_since >= self.terminate_s:
                    self.api.delete(NODES, name)
                    self.api.delete(NODECLAIMS, name)
                    del self.claims[name]
                    self.empty_since.pop(name, None)
                continue
            if name not in joined and now - claim.created_s >= self.launch_s:
                self._join(claim, now)

    def _join(self, claim: Claim, now: float) -> None:
        pool = self.api.get(NODEPOOLS, claim.pool) or {}
        template = pool.get("spec", {}).get("template", {})
        extra = {
            **(template.get("metadata", {}).get("labels") or {}), NODEPOOL_LABEL: claim.pool,
            labels.INSTANCE_TYPE: claim.shape.name, "karpenter.sh/capacity-type": "on-demand",
        }
        taints = [dict(t) for t in template.get("spec", {}).get("taints") or []]
        node = make_node(claim.name, zone=claim.zone, cpu_m=claim.shape.cpu_m, memory_b=claim.shape.memory_b,
                         extra_labels=extra, taints=taints)
        node["metadata"]["labels"].pop(labels.EKS_NODE_GROUP_LABEL, None)  # Karpenter's nodes are in no managed group
        node["status"].pop("images", None)  # nobody here reads them; half the object's size
        node["metadata"]["creationTimestamp"] = format_time(claim.created_s)
        node["status"]["allocatable"]["pods"] = str(claim.shape.pods)
        node["spec"]["providerID"] = f"aws:///{claim.zone}/i-0{abs(hash(claim.name)) % 16**16:016x}"
        for cond in node["status"].get("conditions") or []:
            if cond.get("type") == "Ready":
                cond.update({"status": "True", "lastTransitionTime": format_time(now)})
        self.api.put(NODES, node)
        obj = self.api.get(NODECLAIMS, claim.name)
        if obj is not None:
            obj["status"] = {"providerID": node["spec"]["providerID"], "nodeName": claim.name}
            self.api.put(NODECLAIMS, obj)

    def _drain(self, name: str, now: float) -> None:
        node = self.api.get(NODES, name)
        if node is not None:
            node["spec"]["taints"] = [*(node["spec"].get("taints") or []), DISRUPTED_TAINT]
            node["spec"]["unschedulable"] = True
            self.api.put(NODES, node)
        for pod in self._list(PODS):
            if pod["spec"].get("nodeName") == name:
                self.api.delete(PODS, pod["metadata"]["name"], pod["metadata"]["namespace"])
                if not (pod["metadata"].get("labels") or {}).get(labels.PLACEHOLDER):
                    self.played.evicted.append((now, pod["metadata"]["name"]))
                    self.on_evicted(pod)

    # ------------------------------------------------------------------ kube-scheduler
    def schedule(self) -> None:
        nodes = [Node.from_object(n) for n in self._list(NODES)]
        raw = [copy.deepcopy(p) for p in self._list(PODS)]
        bound: dict[str, list[dict[str, Any]]] = {}
        for p in raw:
            if p["spec"].get("nodeName"):
                bound.setdefault(p["spec"]["nodeName"], []).append(p)
        pending = [p for p in raw if not p["spec"].get("nodeName")]
        pending.sort(key=lambda p: -int(p["spec"].get("priority") or 0))
        for obj in pending:
            target = next((n for n in nodes if self._fits(obj, n, bound.get(n.name, []))), None)
            if target is None:
                target = self._preempt(obj, nodes, bound)
            if target is None:
                unschedulable = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
                if obj["status"].get("conditions") != unschedulable:
                    obj["status"]["conditions"] = unschedulable
                    self.api.put(PODS, obj)
                continue
            obj["spec"]["nodeName"] = target.name
            obj["status"] = {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}
            self.api.put(PODS, obj)
            bound.setdefault(target.name, []).append(obj)

    def _preempt(self, obj: dict[str, Any], nodes: list[Node], bound: dict[str, list[dict[str, Any]]]) -> Node | None:
        priority = int(obj["spec"].get("priority") or 0)
        for node in nodes:
            keep = [p for p in bound.get(node.name, []) if int(p["spec"].get("priority") or 0) >= priority]
            if len(keep) < len(bound.get(node.name, [])) and self._fits(obj, node, keep):
                for victim in bound[node.name]:
                    if victim not in keep:
                        self.api.delete(PODS, victim["metadata"]["name"], victim["metadata"]["namespace"])
                bound[node.name] = keep
                return node
        return None

    def _fits(self, obj: Mapping[str, Any], node: Node, on_node: list[dict[str, Any]]) -> bool:
        if not node.ready or node.unschedulable:
            return False
        pod = self._pod(obj)
        if not pod.tolerates(node.taints) or any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
            return False
        used = Resources(0, 0, 0, 0)
        for other in on_node:
            r = self._pod(other).requests
            used = used + Resources(r.cpu_m, r.memory_b, 0, 1)
        need = Resources(pod.requests.cpu_m, pod.requests.memory_b, 0, 1)
        room = node.allocatable - used
        if need.cpu_m > room.cpu_m or need.memory_b > room.memory_b or room.pods < 1:
            return False
        return not _anti_affine(obj, on_node)

    # ------------------------------------------------------------------ provisioning
    def provision(self, now: float) -> None:
        pending = [(self._pod(p), p) for p in self._list(PODS) if not p["spec"].get("nodeName")]
        if not pending:
            return
        pending.sort(key=lambda pr: (-pr[0].requests.cpu_m, pr[0].key))
        # in-flight NodeClaims (no node yet): their capacity and the pods already packed onto them
        joined = {n["metadata"]["name"] for n in self._list(NODES)}
        bins: list[tuple[Claim, list[dict[str, Any]]]] = [(c, []) for c in self.live_claims() if c.name not in joined]
        pools = self.pools()
        for pod, obj in pending:
            fitting = [p for p in pools if _pool_fits(pod, p)]
            if not fitting:
                continue
            placed = False
            for claim, packed in bins:
                if claim.pool in {p["metadata"]["name"] for p in fitting} and _bin_fits(obj, pod, claim.shape, packed):
                    packed.append(obj)
                    placed = True
                    break
            if placed:
                continue
            for pool in fitting:
                name = pool["metadata"]["name"]
                limit = (pool["spec"].get("limits") or {}).get("nodes")
                if limit is not None and len(self.live_claims(name)) >= int(limit):
                    continue
                shape = self._smallest(pool, pod)
                if shape is None:
                    continue
                claim = self._launch(pool, shape, now)
                bins.append((claim, [obj]))
                break

    def _smallest(self, pool: Mapping[str, Any], pod: Pod) -> InstanceShape | None:
        offered = _requirement(pool, labels.INSTANCE_TYPE) or list(self.catalog)
        fits = [self.catalog[t] for t in offered if t in self.catalog and _shape_fits(pod, self.catalog[t])]
        return min(fits, key=lambda s: (s.cpu_m, s.memory_b, s.name)) if fits else None

    def _launch(self, pool: Mapping[str, Any], shape: InstanceShape, now: float) -> Claim:
        self.counter += 1
        name = f"{pool['metadata']['name'][:40]}-{self.counter:05d}"
        zone = (_requirement(pool, labels.ZONE) or ["us-east-1a"])[0]
        claim = Claim(name, pool["metadata"]["name"], shape, zone, now)
        self.claims[name] = claim
        self.api.put(NODECLAIMS, {
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": name, "labels": {NODEPOOL_LABEL: claim.pool}, "creationTimestamp": format_time(now)},
            "spec": {"requirements": [{"key": labels.INSTANCE_TYPE, "operator": "In", "values": [shape.name]}]},
            "status": {},
        })
        self.played.launches.append((now, claim.pool, shape.name))
        return claim

    # ------------------------------------------------------------------ consolidation
    def consolidate(self, now: float) -> None:
        pods = self._list(PODS)
        busy = {p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName") and not _daemon(p)}
        protected = {p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")
                     and (p["metadata"].get("annotations") or {}).get(DO_NOT_DISRUPT) == "true"}
        for pool in self.pools():
            name = pool["metadata"]["name"]
            disruption = pool["spec"].get("disruption") or {}
            if disruption.get("consolidationPolicy") != "WhenEmpty":
                continue
            after = duration_s(str(disruption.get("consolidateAfter", "0s")))
            live = self.live_claims(name)
            budget = _budget(disruption.get("budgets") or [{"nodes": "10%"}], len(live))
            for claim in sorted(live, key=lambda c: c.name):
                node = self.api.get(NODES, claim.name)
                if node is None:
                    continue
                annotated = (node["metadata"].get("annotations") or {}).get(DO_NOT_DISRUPT) == "true"
                if claim.name in busy or annotated or claim.name in protected:
                    self.empty_since.pop(claim.name, None)
                    continue
                since = self.empty_since.setdefault(claim.name, now)
                if now - since >= after and budget > 0:
                    budget -= 1
                    self.api.delete(NODECLAIMS, claim.name)
                    claim.deleting_since = now
                    self._drain(claim.name, now)
                    self.played.consolidated.append((now, claim.name))


def _daemon(obj: Mapping[str, Any]) -> bool:
    return any(o.get("kind") == "DaemonSet" for o in obj["metadata"].get("ownerReferences") or [])


def _anti_affine(obj: Mapping[str, Any], on_node: list[dict[str, Any]]) -> bool:
    terms = (((obj["spec"].get("affinity") or {}).get("podAntiAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    for term in terms:
        match = (term.get("labelSelector") or {}).get("matchLabels") or {}
        if any(all((p["metadata"].get("labels") or {}).get(k) == v for k, v in match.items()) for p in on_node):
            return True
    return False


def _requirement(pool: Mapping[str, Any], key: str) -> list[str]:
    for req in pool["spec"]["template"]["spec"].get("requirements") or []:
        if req.get("key") == key and req.get("operator") == "In":
            return list(req.get("values") or [])
    return []


def _pool_fits(pod: Pod, pool: Mapping[str, Any]) -> bool:
    template = pool["spec"]["template"]
    node_labels = {**(template.get("metadata", {}).get("labels") or {}), NODEPOOL_LABEL: pool["metadata"]["name"]}
    for key, value in pod.node_selector.items():
        allowed = _requirement(pool, key)
        if node_labels.get(key) != value and value not in allowed:
            return False
    taints = tuple(Taint(t["key"], t.get("value", ""), t["effect"]) for t in template["spec"].get("taints") or [])
    return pod.tolerates(taints)


def _shape_fits(pod: Pod, shape: InstanceShape) -> bool:
    return pod.requests.cpu_m <= shape.cpu_m and pod.requests.memory_b <= shape.memory_b


def _bin_fits(obj: Mapping[str, Any], pod: Pod, shape: InstanceShape, packed: list[dict[str, Any]]) -> bool:
    cpu = pod.requests.cpu_m + sum(Pod.from_object(p).requests.cpu_m for p in packed)
    memory = pod.requests.memory_b + sum(Pod.from_object(p).requests.memory_b for p in packed)
    return cpu <= shape.cpu_m and memory <= shape.memory_b and len(packed) + 1 <= shape.pods and not _anti_affine(obj, packed)


def _budget(budgets: list[Mapping[str, Any]], nodes: int) -> int:
    allowed = nodes
    for budget in budgets:
        if budget.get("schedule"):
            continue
        text = str(budget.get("nodes", "10%"))
        allowed = min(allowed, math.ceil(nodes * float(text[:-1]) / 100) if text.endswith("%") else int(text))
    return allowed


def ready_time(node: Mapping[str, Any]) -> float | None:
    for cond in node["status"].get("conditions") or []:
        if cond.get("type") == "Ready":
            return parse_time(cond.get("lastTransitionTime"))
    return None
