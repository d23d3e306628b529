"""``kbl bench controller``: reaction time, pending pod-seconds reactive versus pre-warmed, and
growth under capacity errors and by price, today's choice against kbl's (:func:`capacity_errors`).

Reaction: the real loop (:meth:`Controller.run`, watches and batching, default settings) on the
in-memory Kubernetes API with the fake cloud; for each trial a new KBL's first unschedulable pod
is created and the time until the cloud receives the node-group request is measured.

Pending pod-seconds: a simulated clock (5 s steps) runs several KBLs, each a multi-stage
blueprint (every stage a batch of one-node pods), on the fake cloud whose nodes become Ready
60-180 s after launch (seeded, per group). A stand-in scheduler binds pending pods to free nodes
of their KBL. The same workload runs twice: *reactive* (KBLs without a blueprint: capacity is
asked for when pods turn unschedulable) and *pre-warmed* (the blueprint is given: capacity is
asked for one measured node-ready time ahead). Pending pod-seconds = sum over pods of
(bound - created); idle stages are scaled to zero in both.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.measuring import percentile, write_json
from controller import Controller, ControllerSettings
from controller.providers.fake import FakeProvider
from kube.api import DATASETS, JOBS, KBLS, NODES, PODS
from kube.memory import MemoryApi
from placement import capacity as cap
from topology import labels
from topology.datasets import Replicas, dataset_object
from topology.examples import make_kbl, make_node, make_pod
from topology.kbls import KBL
from topology.nodes import Node, Resources
from topology.pods import Pod
from topology.times import format_time

T0 = 1_795_000_000.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    parser.add_argument("--trials", type=int, default=20, help="reaction-time trials (default %(default)s)")
    parser.add_argument("--kbls", type=int, default=3, help="KBLs in the pending-time simulation (default %(default)s)")
    parser.add_argument("--stages", type=int, default=4, help="blueprint stages per KBL (default %(default)s)")
    parser.add_argument("--pods", type=int, default=6, help="one-node pods per stage (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the node-ready delays")


def _kbl(name: str, stages: list[dict[str, Any]] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return make_kbl(name, max_size=50, min_size=None, stages=stages or (), status=status)


def _pod(name: str, kbl: str, cpu: str = "3", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    toleration = {"key": labels.DEDICATED_TAINT, "operator": "Equal", "value": kbl, "effect": "NoSchedule"}
    obj = make_pod(
        name, kbl=kbl, cpu=cpu, memory="4Gi", container="c", tolerations=[toleration], scheduler=None, created=None, unschedulable=True
    )
    obj["metadata"]["annotations"] = {labels.POD_KBL: kbl, **(annotations or {})}
    return obj


def _base(kube: MemoryApi) -> None:
    for z in "abc":
        kube.put(NODES, make_node(f"gen-{z}", zone=f"us-east-1{z}", rack="r0"))


# ------------------------------------------------------------------------------ reaction time
def reaction_times(trials: int) -> list[float]:
    """Seconds from creating a KBL's first unschedulable pod to the cloud's create request."""
    kube = MemoryApi()
    _base(kube)
    cloud = FakeProvider(time.time)
    controller = Controller(kube, cloud, ControllerSettings(cluster_name="bench", resync_s=60.0))
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    thread.start()
    out = []
    try:
        while not controller.reconciles:
            time.sleep(0.01)
        time.sleep(0.3)
        for i in range(trials):
            kube.put(KBLS, _kbl(f"r{i}"))
            time.sleep(0.3)  # the KBL's own event is absorbed first
            before = len(cloud.calls_of("create_group"))
            start = time.time()
            kube.put(PODS, _pod(f"r{i}-0", f"r{i}", cpu="1"))
            deadline = start + 10
            while len(cloud.calls_of("create_group")) == before and time.time() < deadline:
                time.sleep(0.001)
            calls = cloud.calls_of("create_group")
            if len(calls) > before:
                out.append(calls[-1].at_s - start)
    finally:
        stop.set()
        thread.join(10)
    return out


# ----------------------------------------------------------------------------- pending time
@dataclass
class Simulation:
    prewarm: bool
    kbls: int
    stages: int
    pods: int
    seed: int
    step_s: float = 5.0
    stage_s: float = 600.0
    gap_s: float = 300.0
    now: float = T0
    pending_pod_s: float = 0.0
    max_nodes: int = 0
    created: int = 0
    requests: int = 0
    delays: dict[str, float] = field(default_factory=dict)

    def run(self) -> Simulation:
        rng = random.Random(self.seed)
        kube = MemoryApi()
        _base(kube)
        self.delays = {cap.group_name(f"default/k{j}", "us-east-1a"): rng.uniform(60, 180) for j in range(self.kbls)}
        cloud = FakeProvider(lambda: self.now, ready_delay_s=self.delays)
        start_iso = format_time(T0)
        offset = 400.0  # the first stages start 400 s in: room to pre-warm
        period = self.stage_s + self.gap_s
        starts: list[tuple[float, str, int]] = []
        for j in range(self.kbls):
            lag = j * 120.0
            stages = [
                {
                    "name": f"s{k}",
                    "startAfterSeconds": (offset + lag) if k == 0 else period,
                    "durationSeconds": self.stage_s,
                    "needs": {"nodes": self.pods},
                }
                for k in range(self.stages)
            ]
            if self.prewarm:
                kube.put(KBLS, _kbl(f"k{j}", stages, {"blueprintStart": start_iso}))
            else:
                kube.put(KBLS, _kbl(f"k{j}"))
            for k in range(self.stages):
                starts.append((T0 + offset + lag + k * period, f"k{j}", k))
        controller = Controller(kube, cloud, ControllerSettings(cluster_name="sim"), clock=lambda: self.now)
        end = T0 + offset + (self.kbls - 1) * 120.0 + self.stages * period + 600
        bound_at: dict[str, float] = {}
        created: set[tuple[str, int]] = set()
        while self.now < end:
            for begin, kbl, k in starts:
                if begin <= self.now and (kbl, k) not in created:
                    created.add((kbl, k))
                    for p in range(self.pods):
                        kube.put(PODS, _pod(f"{kbl}-s{k}-{p}", kbl))
                        self.created += 1
            for name, at in list(bound_at.items()):
                if self.now - at >= self.stage_s:  # the pod's work is done
                    kube.delete(PODS, name, "default")
                    del bound_at[name]
            kube.sync_nodes(cloud.node_objects())
            self._schedule(kube, bound_at)
            controller.reconcile_once()
            self.requests += len([a for a in controller.actor.log.done if isinstance(a, cap.CreateNodeGroup | cap.ResizeNodeGroup)])
            pods, _ = kube.list(PODS)
            self.pending_pod_s += self.step_s * sum(1 for p in pods if not p["spec"].get("nodeName"))
            self.max_nodes = max(self.max_nodes, sum(g.desired for g in cloud.list_groups()))
            self.now += self.step_s
        return self

    def _schedule(self, kube: MemoryApi, bound_at: dict[str, float]) -> None:
        """Bind pending pods to Ready, uncordoned, free nodes of their KBL (one pod per node)."""
        pods, _ = kube.list(PODS)
        nodes, _ = kube.list(NODES)
        used = {p["spec"].get("nodeName") for p in pods}
        for pod in pods:
            if pod["spec"].get("nodeName"):
                continue
            kbl = pod["metadata"]["annotations"][labels.POD_KBL]
            for node in nodes:
                name = node["metadata"]["name"]
                if node["metadata"]["labels"].get(labels.KBL_LABEL) == kbl and not node["spec"].get("unschedulable") and name not in used:
                    kube.create_binding("default", pod["metadata"]["name"], pod["metadata"]["uid"], name)
                    bound_at[pod["metadata"]["name"]] = self.now
                    used.add(name)
                    break


def runaway(reconciles: int = 5, pods: int = 2) -> dict[str, dict[str, Any]]:
    """Issue 14's runaway: ``pods`` required-locality pods (3 CPU, one m6i.xlarge each) that stay
    pending after their nodes join, reconciled ``reconciles`` times, 120 s apart (nodes Ready
    after 60 s). Nodes requested (the group's desired size after each reconcile) versus the nodes
    that help: none when the DataSet's nodeSelector does not select the group (its data never
    comes), ``pods`` when it does (the data follows the group)."""
    out: dict[str, dict[str, Any]] = {}
    for case, selector, helpful in (("data elsewhere", {}, 0), ("data follows the group", {labels.KBL_LABEL: "k"}, pods)):
        now = [T0]
        clock = lambda now=now: now[0]  # noqa: E731
        kube = MemoryApi()
        _base(kube)
        cloud = FakeProvider(clock, ready_delay_s=60.0)
        kube.put(KBLS, _kbl("k"))
        dataset = dataset_object("reads", shards=2, shard_size="10Gi", redundancy=Replicas(1))
        dataset["spec"]["nodeSelector"] = selector
        dataset["status"] = {"placement": {"nodes": ["gen-a"], "shards": [[0], [0]]}}
        kube.put(DATASETS, dataset)
        for i in range(pods):
            kube.put(PODS, _pod(f"p{i}", "k", annotations={labels.POD_DATASET: "reads", labels.POD_LOCALITY: "required"}))
        sizes = []
        for _ in range(reconciles):
            Controller(kube, cloud, ControllerSettings(cluster_name="runaway"), clock=clock).reconcile_once()
            now[0] += 120.0
            kube.sync_nodes(cloud.node_objects())  # the requested nodes join; the pods stay pending
            sizes.append(sum(g.desired for g in cloud.list_groups()))
        out[case] = {"sizes": sizes, "nodes_requested": sizes[-1], "nodes_that_help": helpful}
    return out


RELAY_STAGES = [
    {"name": "align", "startAfterSeconds": 0, "durationSeconds": 86400, "job": "align"},
    {"name": "train", "after": {"stage": "align", "fraction": 0.8}, "durationSeconds": 1800, "needs": {"nodes": 4}},
]


def relay_baton(mode: str, *, pods: int = 4, shards: int = 8, ready_s: float = 120.0, bps: float = 200e6) -> dict[str, Any]:
    """The relay baton with data, a simulation on the real controller (MemoryApi, fake cloud).

    Stage ``align``'s Job runs 100 completions over 1000 s (linear); stage ``train`` (``pods``
    one-node pods reading a DataSet of ``shards`` x 10Gi bound to the group, so the placement
    reconciler spreads it over the group's nodes) starts when the Job is 80 % done (t = 800 s).
    Nodes become Ready ``ready_s`` after the request; each node's agent hydrates its share
    (bytes / nodes) at ``bps`` from the moment it joins: *simulated*, no agent or reconciler runs.
    ``mode``: ``reactive`` (no blueprint: capacity when the pods turn unschedulable),
    ``prewarm-nodes`` (blueprint, lead = node-ready time only: hydration throughput infinite) or
    ``prewarm-data`` (blueprint, lead = node-ready time + hydration at the settings' 200 MB/s).
    Pending pod-seconds = sum of (bound - created); first-read locality = the mean fraction of
    its node's share already hydrated when a pod is bound (its first reads).
    """
    now = [T0]
    kube = MemoryApi()
    _base(kube)
    cloud = FakeProvider(lambda: now[0], ready_delay_s=ready_s)
    start_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0))
    blueprint = RELAY_STAGES if mode != "reactive" else None
    obj = _kbl("relay", blueprint, {"blueprintStart": start_iso} if blueprint else None)
    obj["metadata"]["annotations"] = {labels.KBL_DATASET: "reads"}
    kube.put(KBLS, obj)
    dataset = dataset_object("reads", shards=shards, shard_size="10Gi", redundancy=Replicas(1), node_selector={labels.KBL_LABEL: "relay"})
    dataset["status"] = {"placement": {"nodes": ["gen-a"], "shards": [[0]] * shards}}
    kube.put(DATASETS, dataset)
    share = shards * 10 * 2**30 / pods  # bytes each of the stage's nodes hydrates
    capacity = cap.CapacitySettings(default_hydration_bps=float("inf") if mode == "prewarm-nodes" else bps)
    controller = Controller(kube, cloud, ControllerSettings(capacity=capacity, cluster_name="relay"), clock=lambda: now[0])
    joined: dict[str, float] = {}
    created_at: dict[str, float] = {}
    pending_s, requested_at = 0.0, None
    localities: list[float] = []
    step = 5.0
    while now[0] < T0 + 1800 and len(localities) < pods:
        t = now[0] - T0
        succeeded = min(100, int(t // 10))
        kube.put(JOBS, {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "align", "namespace": "default"},
            "spec": {"completions": 100}, "status": {"startTime": start_iso, "succeeded": succeeded},
        })  # fmt: skip
        if succeeded >= 80 and not created_at:
            for p in range(pods):
                kube.put(PODS, _pod(f"train-{p}", "relay"))
                created_at[f"train-{p}"] = now[0]
        kube.sync_nodes(cloud.node_objects())
        for node in kube.list(NODES)[0]:
            if node["metadata"]["labels"].get(labels.KBL_LABEL) == "relay":
                joined.setdefault(node["metadata"]["name"], now[0])
        used = {p["spec"].get("nodeName") for p in kube.list(PODS)[0]}
        free = sorted(n for n in joined if n not in used)
        for pod in kube.list(PODS)[0]:
            if not pod["spec"].get("nodeName") and free:
                target = free.pop(0)
                kube.create_binding("default", pod["metadata"]["name"], pod["metadata"]["uid"], target)
                localities.append(min(1.0, (now[0] - joined[target]) * bps / share))
                pending_s += now[0] - created_at[pod["metadata"]["name"]]
        controller.reconcile_once()
        if requested_at is None and cloud.list_groups() and sum(g.desired for g in cloud.list_groups()):
            requested_at = now[0] - T0
        now[0] += step
    return {
        "pending_pod_s": pending_s, "first_read_locality": sum(localities) / max(len(localities), 1), "bound": len(localities),
        "requested_at_s": requested_at, "stage_start_s": 800.0, "hydrate_s": share / bps, "node_ready_s": ready_s,
    }  # fmt: skip


# ------------------------------------------------------------------ capacity errors and price
def first_wished_fit(
    kbl: KBL, pending: Sequence[Pod], state: cap.CapacityState, settings: cap.CapacitySettings, _ctype: str
) -> list[cap.InstanceShape]:
    """Yesterday's choice, kept here as a policy (not in the product): the first wished type on
    which every pending pod that fits some wished type fits; one type per group, no price."""
    shapes = []
    for itype in kbl.node_group.instance_types or (settings.default_instance_type,):
        with contextlib.suppress(cap.CapacityError):
            shapes.append(cap.instance_shape(itype, state.nodes, state.instance_types))

    def fits(shape: cap.InstanceShape, pod: Pod) -> bool:
        return shape.resources().fits(Resources(pod.requests.cpu_m, pod.requests.memory_b, 0, 1))

    fitting = [p for p in pending if any(fits(s, p) for s in shapes)]
    for shape in shapes:
        if all(fits(shape, p) for p in fitting):
            return [shape]
    raise cap.CapacityError(f"KBL {kbl.key}: no wished instance type fits")


#: Today's behaviour: the first wished type, waiting for its group whatever the cloud says.
YESTERDAY = cap.LaunchPolicy(rank=first_wished_fit, fallback=False)

#: The scenarios: (name, what the fake cloud does, in words).
CAPACITY_SCENARIOS: dict[str, dict[str, Any]] = {
    "no errors": {"capacity": {}, "never_join": False},
    "capacity errors": {
        # zone a: no m6i.2xlarge, 3 c6i.xlarge and 2 m6i.xlarge left (InsufficientInstanceCapacity beyond).
        "capacity": {("us-east-1a", "m6i.2xlarge"): 0, ("us-east-1a", "c6i.xlarge"): 3, ("us-east-1a", "m6i.xlarge"): 2},
        "never_join": False,
    },
    "never joins": {"capacity": {}, "never_join": True},  # zone a's instances launch (and bill) but never join
}


def capacity_errors(policy: str, scenario: str, *, pods: int = 8, horizon_s: float = 7200.0, step_s: float = 30.0) -> dict[str, Any]:
    """``pods`` pods (3 CPU, 4 GiB) of a KBL reading a DataSet in us-east-1a, wishing
    ``[m6i.2xlarge, m6i.xlarge, c6i.xlarge]`` on demand, on the real controller (MemoryApi, the
    fake cloud: nodes Ready 60 s after launch) for ``horizon_s`` simulated seconds. ``policy``
    ``yesterday`` (:data:`YESTERDAY`, max provision time infinite) or ``kbl`` (cheapest first,
    give-up after 15 min, backoff, fallback). Prices: the shipped table. A stand-in scheduler
    binds a pending pod to a Ready node of the KBL with room (by CPU and memory)."""
    now = [T0]
    setup = CAPACITY_SCENARIOS[scenario]
    group_a = cap.group_name("default/cap", "us-east-1a")
    delays = {group_a: float("inf"), "*": 60.0} if setup["never_join"] else 60.0
    cloud = FakeProvider(lambda: now[0], ready_delay_s=delays, capacity=setup["capacity"])
    kube = MemoryApi()
    _base(kube)
    kube.put(NODES, make_node("gen-a2", zone="us-east-1a", rack="r1"))
    obj = make_kbl("cap", max_size=20, min_size=None, instance_types=("m6i.2xlarge", "m6i.xlarge", "c6i.xlarge"))
    kube.put(KBLS, obj)
    dataset = dataset_object("reads", shards=2, shard_size="10Gi", redundancy=Replicas(2))
    dataset["status"] = {"placement": {"nodes": ["gen-a", "gen-a2"], "shards": [[0, 1], [1, 0]]}}
    kube.put(DATASETS, dataset)
    for i in range(pods):
        kube.put(PODS, _pod(f"c{i}", "cap", annotations={labels.POD_DATASET: "reads"}))
    if policy == "yesterday":
        settings = ControllerSettings(capacity=cap.CapacitySettings(max_node_provision_s=math.inf), cluster_name="cap")
        controller = Controller(kube, cloud, settings, clock=lambda: now[0], policy=YESTERDAY)
    else:
        controller = Controller(kube, cloud, ControllerSettings(cluster_name="cap"), clock=lambda: now[0])
    prices = controller.prices([KBL.from_object(obj)])
    pending_s = idle_usd = cross = 0.0
    all_running_s: float | None = None
    while now[0] < T0 + horizon_s:
        controller.reconcile_once()
        cross += sum(a.cross_zone_bytes for a in controller.actor.log.done if isinstance(a, cap.CreateNodeGroup))
        now[0] += step_s
        kube.sync_nodes(cloud.node_objects())
        _bind_by_room(kube, "cap")
        waiting = sum(1 for p in kube.list(PODS)[0] if not p["spec"].get("nodeName"))
        pending_s += step_s * waiting
        joined = {n["metadata"]["name"] for n in kube.list(NODES)[0]}
        for group in cloud.groups.values():  # billed while launched and not (yet) a node
            for inst in group.instances:
                if f"ip-{inst.id}" not in joined:
                    idle_usd += step_s / 3600 * prices.get((inst.instance_type, group.spec.capacity_type), 0.0)
        if not waiting and all_running_s is None:
            all_running_s = now[0] - T0
    nodes = {n["metadata"]["name"]: n for n in kube.list(NODES)[0]}
    groups = {g.name: g for g in cloud.list_groups()}
    serving = {p["spec"]["nodeName"] for p in kube.list(PODS)[0] if p["spec"].get("nodeName")}
    per_hour = 0.0
    types: dict[str, int] = {}
    for name in serving:
        node_labels = nodes[name]["metadata"]["labels"]
        itype = node_labels[labels.INSTANCE_TYPE]
        per_hour += prices.get((itype, groups[node_labels[labels.NODE_GROUP_LABEL]].capacity_type), 0.0)
        types[itype] = types.get(itype, 0) + 1
    running = sum(1 for p in kube.list(PODS)[0] if p["spec"].get("nodeName"))
    return {
        "all_running_s": all_running_s, "running": running, "pods": pods, "pending_pod_s": pending_s,
        "idle_usd": idle_usd, "usd_per_hour": per_hour, "types": types,
        "groups": sorted(f"{g.zone}/{g.capacity_type}" for g in groups.values() if g.desired), "cross_zone_gib": cross / 2**30,
        "backoffs": sum(1 for c in kube.events if c["reason"] == "NodeGroupBackedOff"),
    }  # fmt: skip


def _bind_by_room(kube: MemoryApi, kbl: str) -> None:
    """Bind pending pods of ``kbl`` to Ready, untainted group nodes with room (CPU, memory, pods)."""
    pods = kube.list(PODS)[0]
    nodes = [
        Node.from_object(n) for n in kube.list(NODES)[0] if n["metadata"]["labels"].get(labels.KBL_LABEL) == kbl
    ]
    used: dict[str, Resources] = {}
    for obj in pods:
        name = obj["spec"].get("nodeName")
        if name:
            req = Pod.from_object(obj).requests
            one = Resources(req.cpu_m, req.memory_b, 0, 1)
            used[name] = used[name] + one if name in used else one
    for raw in pods:
        if raw["spec"].get("nodeName"):
            continue
        typed = Pod.from_object(raw)
        need = Resources(typed.requests.cpu_m, typed.requests.memory_b, 0, 1)
        for node in nodes:
            if cap.broken(node) or node.unschedulable:
                continue
            room = node.allocatable - used[node.name] if node.name in used else node.allocatable
            if room.fits(need):
                kube.create_binding("default", typed.name, typed.uid, node.name)
                used[node.name] = used[node.name] + need if node.name in used else need
                break


def compare_capacity(pods: int = 8) -> tuple[dict[str, dict[str, dict[str, Any]]], list[str]]:
    """Every scenario under both policies, and what kbl does worse than yesterday (empty: none)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    worse: list[str] = []
    for scenario in CAPACITY_SCENARIOS:
        rows = {policy: capacity_errors(policy, scenario, pods=pods) for policy in ("yesterday", "kbl")}
        out[scenario] = rows
        old, new = rows["yesterday"], rows["kbl"]
        inf = math.inf
        if (new["all_running_s"] or inf) > (old["all_running_s"] or inf):
            worse.append(f"{scenario}: pods run later")
        if new["running"] < old["running"]:
            worse.append(f"{scenario}: fewer pods run")
        if new["running"] <= old["running"] and new["idle_usd"] > old["idle_usd"] + 1e-9:
            worse.append(f"{scenario}: more spent on instances launched but not joined")
        if new["running"] == old["running"] and new["usd_per_hour"] > old["usd_per_hour"] + 1e-9:
            worse.append(f"{scenario}: the nodes running the pods cost more")
    return out, worse


def run(args: argparse.Namespace) -> int:
    started = time.time()
    reactions = reaction_times(args.trials)
    reactive = Simulation(False, args.kbls, args.stages, args.pods, args.seed).run()
    warmed = Simulation(True, args.kbls, args.stages, args.pods, args.seed).run()
    runaways = runaway()
    relay = {mode: relay_baton(mode) for mode in ("reactive", "prewarm-nodes", "prewarm-data")}
    fallback, worse = compare_capacity()
    saved = 1.0 - warmed.pending_pod_s / reactive.pending_pod_s if reactive.pending_pod_s else 0.0
    figures: dict[str, Any] = {
        "reaction_s": {
            "trials": len(reactions),
            "p50": percentile(reactions, 50),
            "p95": percentile(reactions, 95),
            "max": max(reactions) if reactions else None,
        },
        "simulation": {
            "kbls": args.kbls, "stages": args.stages, "pods_per_stage": args.pods,
            "node_ready_s": {k: round(v, 1) for k, v in reactive.delays.items()},
        },
        "reactive": {"pending_pod_s": reactive.pending_pod_s, "pods": reactive.created, "peak_nodes": reactive.max_nodes},
        "prewarmed": {"pending_pod_s": warmed.pending_pod_s, "pods": warmed.created, "peak_nodes": warmed.max_nodes},
        "pending_time_saved": saved,
        "runaway": runaways,
        "relay_baton": relay,
        "capacity_errors_and_price": fallback,
        "worse_than_yesterday": worse,
        "wall_s": time.time() - started,
    }
    r = figures["reaction_s"]
    print(f"reaction (first unschedulable pod -> cloud request), {r['trials']} trials: p50 {r['p50'] * 1000:.0f} ms, "
          f"p95 {r['p95'] * 1000:.0f} ms, max {(r['max'] or 0) * 1000:.0f} ms")
    print(f"pending pod-seconds, {args.kbls} KBLs x {args.stages} stages x {args.pods} pods, node-ready 60-180 s:")
    print(f"  reactive   {reactive.pending_pod_s:10.0f} pod-s  ({reactive.pending_pod_s / max(reactive.created, 1):.0f} s per pod)")
    print(f"  pre-warmed {warmed.pending_pod_s:10.0f} pod-s  ({warmed.pending_pod_s / max(warmed.created, 1):.0f} s per pod)")
    print(f"  pre-warming saves {saved * 100:.1f}% of pending time; wall {figures['wall_s']:.1f} s")
    print("runaway (2 required pods pending after their nodes joined, 5 reconciles 120 s apart):")
    for case, row in runaways.items():
        sizes = " -> ".join(str(n) for n in row["sizes"])
        print(f"  {case:24s} nodes requested {row['nodes_requested']:3d}, nodes that help {row['nodes_that_help']:3d} (sizes {sizes})")
    first = relay["reactive"]
    print(f"relay baton with data (simulation; train starts at 80% of align's Job = {first['stage_start_s']:.0f} s, "
          f"nodes Ready in {first['node_ready_s']:.0f} s, data hydrates in {first['hydrate_s']:.0f} s per node):")
    for mode, row in relay.items():
        print(f"  {mode:14s} nodes asked at {row['requested_at_s'] or 0:5.0f} s, pending {row['pending_pod_s']:6.0f} pod-s, "
              f"first-read locality {row['first_read_locality'] * 100:5.1f}%")
    print("growth under capacity errors and by price (8 pods of 3 CPU / 4 GiB, data in us-east-1a, 2 h simulated;")
    print("  yesterday = first wished type, one type per group, waits for it; kbl = cheapest first, give up, back off, fall back):")
    print(f"  {'scenario':16s} {'policy':9s} {'all running':>12s} {'pending pod-s':>13s} {'$ not joined':>12s} "
          f"{'$/h':>7s} {'x-zone GiB':>10s}  nodes running the pods (x-zone: at most, from the plans)")
    for scenario, rows in fallback.items():
        for policy, row in rows.items():
            when = f"{row['all_running_s']:.0f} s" if row["all_running_s"] is not None else f"never ({row['running']}/{row['pods']})"
            kinds = ", ".join(f"{n} x {t}" for t, n in sorted(row["types"].items())) or "-"
            print(f"  {scenario:16s} {policy:9s} {when:>12s} {row['pending_pod_s']:13.0f} {row['idle_usd']:12.2f} "
                  f"{row['usd_per_hour']:7.3f} {row['cross_zone_gib']:10.1f}  {kinds} in {', '.join(row['groups']) or '-'}")
    if worse:
        print(f"kbl is worse than yesterday: {'; '.join(worse)}")
    write_json(args.json, figures)
    return 1 if worse else 0
