"""Benchmark: cold start, memory and incremental updates from 5,000 to 100,000 nodes (issue 16).

For each size a snapshot is written (copies of the real EKS node object, image list included;
3x-replicated shards on random distinct nodes), then two fresh child processes read it, so each
peak RSS is that of one run:

- ``model``: read the snapshot (streamed, typed), build the :class:`~topology.clusters.Cluster`
  graph and its hot-path index, then the incremental updates: a node joins, a placement changes
  (one piece moves), each followed by what the hot path reads again (domain arrays, the dataset's
  piece -> node-id array, a 64-shard byte table);
- ``serve``: what ``kbl serve --snapshot`` does before it listens: read the snapshot and build the
  extender's :class:`~extender.state.ClusterState` (the Cluster, per-node load and reply
  fragments, pods, KBLs);
- ``api``: ``kbl serve`` from the API server: every resource listed page by page (``limit`` /
  ``continue``) through :class:`~kube.client.KubeClient`'s own response parsing (the pages are
  the snapshot's objects, image lists included, served from memory: no socket), then the first
  list written into the ``ClusterState``, as each informer does.

Targets (issue 16): 100,000 nodes and 10,000,000 replicas ready in under 20 s and under 3 GiB.
``--quick`` runs small sizes for CI.

``--loops 5000,20000,100000`` (and ``--quick``, at one tiny size): the control loops' table of
:mod:`benchmarks.scale_loops` (issue 24 item 5); the command exits 1 when one misses a target.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import gc
import itertools
import json
import mmap
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson

from benchmarks.driving import PodArrival, SchedulerSettings, num_feasible_nodes_to_find
from benchmarks.measuring import peak_rss_mib, run_child, write_json
from benchmarks.model import make_snapshot
from benchmarks.policies import PolicySettings, run_policy
from benchmarks.traces import Trace, TraceSettings, make_trace
from extender.settings import DEFAULT_SCHEDULER_NAME
from kube.api import DATASETS, KBLS, NODES, PODS, Resource
from kube.client import KubeClient
from topology import labels
from topology.pods import Pod
from topology.snapshots import _RawList

#: (nodes, replicas) per size of the issue's table.
SIZES = ((5_000, 1_000_000), (20_000, 5_000_000), (100_000, 10_000_000))
QUICK_SIZES = ((300, 30_000), (1_000, 100_000))
TARGET_S = 20.0
TARGET_MIB = 3 * 1024


def child_model(path: str) -> dict[str, Any]:
    """Load, graph, index, then the incremental updates, timed; peak RSS of this process."""
    from topology.datasets import DataSet, ShardPlacement
    from topology.nodes import Node
    from topology.snapshots import load_snapshot

    t0 = time.perf_counter()
    snap = load_snapshot(path)
    t1 = time.perf_counter()
    cluster = snap.cluster()
    t2 = time.perf_counter()
    for key in cluster.datasets:
        cluster.global_pieces(key)
    cluster.domain_arrays()
    t3 = time.perf_counter()
    replicas = sum(int((d.placement.pieces >= 0).sum()) for d in snap.datasets if d.placement is not None)
    nodes = len(snap.nodes)
    del snap
    gc.collect()
    # a node joins: the graph and index change by one node; the hot path reads the index again
    base = next(iter(cluster.nodes.values()))
    joined = Node("joined-node", base.region, base.zone, base.rack, base.labels, base.allocatable)
    key = next(iter(cluster.datasets))
    u0 = time.perf_counter()
    cluster.set_node(joined)
    cluster.domain_arrays()
    u1 = time.perf_counter()
    cluster.global_pieces(key)
    cluster.level_bytes(key, range(64))
    u2 = time.perf_counter()
    # a placement changes: one piece moves to another node
    dataset = cluster.datasets[key]
    assert dataset.placement is not None
    pieces = dataset.placement.pieces.copy()
    pieces[0, 0] = (pieces[0, 0] + 1) % len(dataset.placement.nodes)
    while pieces[0, 0] in pieces[0, 1:]:
        pieces[0, 0] = (pieces[0, 0] + 1) % len(dataset.placement.nodes)
    moved = DataSet(dataset.spec, ShardPlacement(dataset.placement.nodes, pieces))
    u3 = time.perf_counter()
    cluster.set_dataset(moved)
    u4 = time.perf_counter()
    cluster.global_pieces(key)
    cluster.level_bytes(key, range(64))
    u5 = time.perf_counter()
    return {
        "nodes": nodes,
        "replicas": replicas,
        "graph_vertices": cluster.graph.number_of_nodes(),
        "graph_edges": cluster.graph.number_of_edges(),
        "load_s": t1 - t0,
        "graph_s": t2 - t1,
        "index_s": t3 - t2,
        "total_s": t3 - t0,
        "node_join_ms": (u1 - u0) * 1e3,
        "node_join_reread_ms": (u2 - u1) * 1e3,
        "placement_change_ms": (u4 - u3) * 1e3,
        "placement_change_reread_ms": (u5 - u4) * 1e3,
        "peak_rss_mib": peak_rss_mib(),
    }


def child_serve(path: str) -> dict[str, Any]:
    """What ``kbl serve --snapshot`` does before it listens: read, build the extender's state."""
    from extender.state import ClusterState
    from topology.snapshots import load_snapshot

    t0 = time.perf_counter()
    snap = load_snapshot(path)
    t1 = time.perf_counter()
    state = ClusterState.from_snapshot(snap)
    del snap
    t2 = time.perf_counter()
    return {
        "load_s": t1 - t0,
        "state_s": t2 - t1,
        "ready_s": t2 - t0,
        "nodes": len(state.cluster.nodes),
        "peak_rss_mib": peak_rss_mib(),
    }


class _Pages:
    """List pages as the API server sends them (``limit``/``continue``), served from memory.

    Stands in for the generated client's list call (no socket): :meth:`KubeClient.list_page`
    parses each body itself, as it does with a real API server's.
    """

    def __init__(self, raws: list[bytes], kind: str, page_size: int) -> None:
        self.raws, self.kind, self.page_size = raws, kind, page_size

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = int(kwargs.get("_continue") or 0)
        end = min(len(self.raws), start + int(kwargs.get("limit") or len(self.raws)))
        token = str(end) if end < len(self.raws) else ""
        head = json.dumps({"resourceVersion": "1", "continue": token}).encode()
        body = b'{"kind":"' + self.kind.encode() + b'List","metadata":' + head + b',"items":[' + b",".join(self.raws[start:end]) + b"]}"
        return type("Response", (), {"data": body})()


class _Kind(msgspec.Struct):
    kind: str | None = None


def api_pages(path: str) -> tuple[dict[Resource, _Pages], Any]:
    """A snapshot's Nodes and DataSets as the API server's list pages (500 Nodes, 50 DataSets a
    page), the bodies being views into the mapped file (no copy); every other resource an empty
    list. Returns the pages and the mapping (kept open while they are served)."""
    with open(path, "rb") as handle:
        store = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    by_kind: dict[str, list[Any]] = {"Node": [], "DataSet": []}
    for raw in msgspec.json.decode(store, type=_RawList).items:
        kind = msgspec.json.decode(raw, type=_Kind).kind
        if kind in by_kind:
            by_kind[kind].append(raw)
    pages = {NODES: _Pages(by_kind["Node"], "Node", KubeClient.page_size), DATASETS: _Pages(by_kind["DataSet"], "DataSet", 50)}
    return pages, store


def paged_client(pages: dict[Resource, _Pages]) -> KubeClient:
    """A :class:`KubeClient` whose list calls get ``pages`` (parsed by its own code, no socket)."""
    client = KubeClient.__new__(KubeClient)
    client._list_fn = lambda resource, namespace: (pages.get(resource, _Pages([], resource.kind, 500)), ())  # type: ignore[method-assign]
    return client


def child_api(path: str) -> dict[str, Any]:
    """``kbl serve`` from the API: each resource listed page by page through :class:`KubeClient`'s
    own parsing (the page bodies are the snapshot's objects, image lists included, served from
    memory), then the first-list write into the extender's :class:`ClusterState`."""
    from extender.state import ClusterState

    pages, _store = api_pages(path)
    lists = paged_client(pages).typed_reader()  # as kbl serve lists
    gc.collect()
    t0 = time.perf_counter()
    state = ClusterState(expect=(NODES, PODS, DATASETS, KBLS))
    for resource in (NODES, PODS, DATASETS, KBLS):  # what each informer does with its first list
        items, _ = lists.list(resource)
        state.replace(resource, items)
    t1 = time.perf_counter()
    assert state.ready
    return {"ready_s": t1 - t0, "nodes": len(state.cluster.nodes), "datasets": len(state.cluster.datasets), "peak_rss_mib": peak_rss_mib()}


def measure_size(nodes: int, replicas: int, datasets: int, *, serve: bool, timeout_s: float) -> dict[str, Any]:
    """Write one snapshot and run the children on it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.json"
        w0 = time.perf_counter()
        make_snapshot(path, nodes=nodes, replicas_total=replicas, datasets=datasets)
        row: dict[str, Any] = {"write_s": time.perf_counter() - w0, "snapshot_mib": path.stat().st_size / 2**20}
        row["model"] = run_child("benchmarks.scale", "model", str(path), timeout_s=timeout_s)
        if serve:
            row["serve"] = run_child("benchmarks.scale", "serve", str(path), timeout_s=timeout_s)
            row["api"] = run_child("benchmarks.scale", "api", str(path), timeout_s=timeout_s)
    return row


# ------------------------------------------------------------------ sampling (issue 16 item 3)
#: Node counts of the sampling table and the racks that make them (3 zones x racks x 34 hosts).
SAMPLING_SIZES = {1_000: 10, 5_000: 49, 15_000: 147}
#: kbl's two profiles in one kube-scheduler: the default one and the exhaustive one (100%).
KBL_SCHEDULER = DEFAULT_SCHEDULER_NAME
EXHAUSTIVE_SCHEDULER = f"{DEFAULT_SCHEDULER_NAME}-exhaustive"
#: (label, global percentageOfNodesToScore, webhook with routing to the exhaustive profile,
#: narrowing: the webhook gates preferred data pods and the gate controller narrows them).
CONFIGURATIONS = (
    ("100%", 100, False, False),
    ("adaptive", 0, False, False),
    ("adaptive + webhook", 0, True, False),
    ("adaptive + webhook + narrowing", 0, True, True),
)
NARROWING = CONFIGURATIONS[3][0]
ROUTING = CONFIGURATIONS[2][0]
#: The pods' locality modes of the table; "mixed": every other pod reads nothing through kbl,
#: the others preferred.
LOCALITIES = ("preferred", "required", "mixed")


def with_locality(trace: Trace, locality: str, webhook: bool) -> Trace:
    """The trace's pods on kbl's scheduler with ``kbl.io/locality`` set, and (``webhook``) the
    webhook's patch applied, routing on (:data:`EXHAUSTIVE_SCHEDULER`).

    Required pods read only the first shard of their request: a node holding a piece of each of
    several shards is rare, and such pods would mostly wait rather than measure sampling.
    ``mixed``: every other pod has no data wish (its kbl annotations removed), the others are
    preferred.

    The webhook's reply depends only on where the data is (static in a trace), so it is asked
    in-process, as the API server asks it when each pod is created, before the run.
    """
    from extender.admission import AdmissionSettings, apply_patch, review

    admission = AdmissionSettings(scheduler_name=KBL_SCHEDULER, exhaustive_scheduler_name=EXHAUSTIVE_SCHEDULER)
    arrivals = []
    bursts: dict[float, int] = {}
    for i, a in enumerate(trace.arrivals):
        obj = json.loads(json.dumps(a.obj))
        obj["spec"]["schedulerName"] = KBL_SCHEDULER
        # each burst is one Job's pods (the Job controller recreates a deleted one)
        job = bursts.setdefault(a.arrival_s, len(bursts))
        obj["metadata"]["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": f"job-{job}", "uid": f"job-{job}-uid", "controller": True}
        ]
        annotations = obj["metadata"]["annotations"]
        annotations[labels.POD_LOCALITY] = "preferred" if locality == "mixed" else locality
        if locality == "required":  # one shard, so that some node can hold all a pod reads
            annotations[labels.POD_SHARDS] = annotations[labels.POD_SHARDS].split(",")[0].split("-")[0]
        if locality == "mixed" and i % 2:
            for key in (labels.POD_DATASET, labels.POD_SHARDS, labels.POD_LOCALITY):
                annotations.pop(key, None)
        if webhook:
            reply = review({"request": {"uid": a.pod.uid, "operation": "CREATE", "object": obj}}, trace.cluster, admission)
            patch = reply["response"].get("patch")
            if patch:
                obj = apply_patch(obj, json.loads(base64.b64decode(patch)))
        arrivals.append(PodArrival(obj, Pod.from_object(obj), a.arrival_s, a.duration_s))
    return dataclasses.replace(trace, arrivals=arrivals)


def api_side(
    narrowing: bool,
    *,
    candidates: int | None = None,
    timeout_s: float | None = None,
    leading: Any = None,
    webhook: bool = True,
) -> Any:
    """The ``setup`` hook of :func:`~benchmarks.policies.run_policy` installing the API server's
    side in the driver: the webhook at each pod's creation (routing on; with ``narrowing``, gating
    while the gate controller is alive), and with ``narrowing`` the gate controller of
    :mod:`extender.narrowing` over the extender's own state, watching pods and acting only
    through the driver's API (:meth:`~benchmarks.driving.Scheduler.patch_pod` /
    :meth:`~benchmarks.driving.Scheduler.delete_pod`), run before every scheduling cycle.

    With ``narrowing`` the scheduler's configuration is the chart's with narrowing on: the
    extender's ``managedResources`` is :data:`~extender.narrowing.EXTENDER_RESOURCE` with
    ``ignoredByScheduler: true``, and the webhook gives that resource to every pod it does not
    gate, so a narrowed pod never calls the extender.

    ``candidates`` / ``timeout_s`` override the controller's settings; ``leading`` (a callable)
    plays its leader election (``False``: down, not alive); ``webhook=False`` plays the webhook
    down (``failurePolicy: Ignore``: pods are created as submitted)."""
    from benchmarks.driving import ManagedResource
    from extender.admission import AdmissionSettings, review
    from extender.narrowing import EXTENDER_RESOURCE, GateController

    admission = AdmissionSettings(
        scheduler_name=KBL_SCHEDULER,
        exhaustive_scheduler_name=EXHAUSTIVE_SCHEDULER,
        extender_resource=EXTENDER_RESOURCE if narrowing else "",
    )

    def setup(scheduler: Any, state: Any) -> None:
        controller = None
        if narrowing:
            managed = (ManagedResource(EXTENDER_RESOURCE, ignored_by_scheduler=True),)
            for ext in scheduler.extenders:
                ext.config = dataclasses.replace(ext.config, managed_resources=managed)
            changes: dict[str, Any] = {"narrowing": True}
            if candidates is not None:
                changes["narrow_candidates"] = candidates
            if timeout_s is not None:
                changes["narrow_release_timeout_s"] = timeout_s
            settings = dataclasses.replace(state.settings, **changes)
            controller = GateController(state, scheduler, settings, clock=lambda: scheduler.now, leading=leading or (lambda: True))

        def mutate(body: bytes) -> bytes:  # what the extender's POST /mutate does with a request body
            with state.lock:
                reply = review(orjson.loads(body), state.cluster, admission, gate=controller.should_gate if controller else None)
            return orjson.dumps(reply)

        scheduler.webhook = mutate if webhook else None
        scheduler.narrowing = controller
        if controller is not None:
            scheduler.watchers.append(controller.observe)

            def control() -> bool:
                controller.step()
                return controller.waiting > 0

            scheduler.controllers.append(control)

    return setup


def cpu_parts(run: Any) -> dict[str, float]:
    """kbl's whole CPU seconds in a driven run, by part: the extender's HTTP server (this
    process's CPU in the loop outside the driver's thread), its informer (the watch events its
    cache applies, in the driver's thread here), the webhook and the gate controller (its
    steps and its pod watch; the API server's share of its calls left out)."""
    result = run.result
    admission, controller = result.admission_cpu_s, result.controller_cpu_s
    return {
        "server": max(0.0, run.extender_cpu_s - admission - controller),
        "informer": result.informer_cpu_s,
        "webhook": admission,
        "gate": controller,
    }


def sampling_rows(sizes: Sequence[int], pods: int, localities: Sequence[str] = LOCALITIES) -> list[dict[str, Any]]:
    """kbl through the faithful kube-scheduler driver per size, locality mode and configuration.

    One trace per size (the same pods in every configuration); the kube-scheduler has kbl's two
    profiles: the default one at the configuration's percentage and the exhaustive one at 100%.
    pods/s counts the scheduling loop only (extender start-up excluded); CPU ms/pod is this
    process's CPU time in the loop (driver and extender) per scheduled pod, steadier than wall
    time on a shared machine. A short throwaway run first pays the process's one-time costs, so
    that they do not land on the first configuration.
    """
    rows: list[dict[str, Any]] = []
    warmed = False
    for nodes in sizes:
        racks = SAMPLING_SIZES.get(nodes, max(1, round(nodes / 102)))
        hosts = 34 if nodes >= 102 else max(1, nodes // 3)
        trace = make_trace(TraceSettings(racks_per_zone=racks, hosts_per_rack=hosts, pods=pods, burst_pods=20))
        horizon = max(a.arrival_s + a.duration_s for a in trace.arrivals) + 3600.0
        if not warmed:
            warm = with_locality(dataclasses.replace(trace, arrivals=trace.arrivals[:10]), "preferred", True)
            run_policy("kbl", warm, PolicySettings(weight=5), SchedulerSettings(horizon_s=horizon, profiles={EXHAUSTIVE_SCHEDULER: 100}))
            warmed = True
        for locality in localities:
            base_cost = None
            variant = with_locality(trace, locality, False)
            for label, percentage, webhook, narrowing in CONFIGURATIONS:
                sched = SchedulerSettings(horizon_s=horizon, percentage_of_nodes_to_score=percentage, profiles={EXHAUSTIVE_SCHEDULER: 100})
                setup = api_side(narrowing) if webhook else None
                run = run_policy("kbl", variant, PolicySettings(weight=5), sched, setup=setup)
                parts = cpu_parts(run)
                routed = run.routed.get(EXHAUSTIVE_SCHEDULER, 0)
                base_cost = run.cost if base_cost is None else base_cost
                local = run.level_bytes[0] / max(1.0, sum(run.level_bytes))
                rows.append(
                    {
                        "nodes": len(trace.nodes),
                        "locality": locality,
                        "configuration": label,
                        "offered": num_feasible_nodes_to_find(percentage, len(trace.nodes)),
                        "routed": routed,
                        "pods_per_s": run.scheduled / run.schedule_s if run.schedule_s > 0 else 0.0,
                        "cpu_ms_per_pod": run.schedule_cpu_s * 1000 / max(1, run.scheduled),
                        "cost_vs_100": run.cost / base_cost if base_cost else 1.0,
                        "node_local": local,
                        "cross_zone_tib": run.cross_zone_bytes / 2**40,
                        "scheduled": run.scheduled,
                        "pending": run.pending,
                        "attempts": run.attempts,
                        "extender_ms_per_pod": run.extender_ms_per_pod,
                        "offered_per_data_pod": run.offered_per_data_pod,
                        "extender_cpu_ms_per_data_pod": sum(parts.values()) * 1000 / max(1, run.data_pods),
                        "cpu_parts_ms_per_data_pod": {k: v * 1000 / max(1, run.data_pods) for k, v in parts.items()},
                        "deleted": run.deleted,
                        "gated": run.gated,
                    }
                )
                print(render_sampling(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def _parts(row: dict[str, Any]) -> str:
    parts = row.get("cpu_parts_ms_per_data_pod") or {}
    return " / ".join(f"{parts.get(k, 0.0):.2f}" for k in ("server", "informer", "webhook", "gate"))


def render_sampling(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| nodes | pods' locality | configuration | default profile seeks | routed to 100% | pods/s | CPU ms/pod | network cost vs 100%"
        " | node-local bytes | cross-zone TiB | scheduled | pending | attempts | extender ms/pod | names offered / data pod"
        " | extender CPU ms / data pod | of which server / informer / webhook / gate | recreated |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['nodes']:,} | {r['locality']} | {r['configuration']} | {r['offered']:,} | {r['routed']} | {r['pods_per_s']:.1f}"
            f" | {r['cpu_ms_per_pod']:.1f} | {r['cost_vs_100']:.3f}x | {r['node_local']:.1%} | {r['cross_zone_tib']:.2f}"
            f" | {r['scheduled']} | {r['pending']} | {r['attempts']} | {r['extender_ms_per_pod']:.2f}"
            f" | {r.get('offered_per_data_pod', 0.0):,.0f} | {r.get('extender_cpu_ms_per_data_pod', 0.0):.2f}"
            f" | {_parts(r)} | {r.get('deleted', 0)} |"
        )
    return "\n".join(lines)


#: Issue 25's targets for narrowing (checked by :func:`sampling_targets`).
TARGET_COST_VS_100 = 1.02
TARGET_OFFERED_SHARE_5000 = 0.10
TARGET_CPU_RATIO_5000 = 1 / 5


def sampling_targets(rows: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    """Issue 25's targets on the narrowing rows, each with PASS (True) or MISS: preferred and
    mixed pods within 2% of the 100% network cost; names offered per data pod at most 10% of the
    cluster near 5,000 nodes and falling with size; extender CPU per data pod near 5,000 nodes at
    most 1/5 of the routing row's; no pod pending that the 100% row schedules."""
    out: list[tuple[str, bool]] = []
    by = {(r["nodes"], r["locality"], r["configuration"]): r for r in rows}
    narrowed = [r for r in rows if r["configuration"] == NARROWING]
    for r in narrowed:
        where = f"{r['nodes']:,} nodes, {r['locality']}"
        if r["locality"] in ("preferred", "mixed"):
            cost = r["cost_vs_100"]
            out.append((f"{where}: network cost {cost:.3f}x <= {TARGET_COST_VS_100}x of 100%", cost <= TARGET_COST_VS_100))
        full = by.get((r["nodes"], r["locality"], "100%"))
        if full is not None:
            out.append((f"{where}: pending {r['pending']} <= the 100% row's {full['pending']}", r["pending"] <= full["pending"]))
        routing = by.get((r["nodes"], r["locality"], ROUTING))
        if r["locality"] == "preferred" and 4_000 <= r["nodes"] <= 6_000:
            share = r["offered_per_data_pod"] / r["nodes"]
            text = f"{where}: names offered per data pod {share:.1%} of the cluster <= {TARGET_OFFERED_SHARE_5000:.0%}"
            out.append((text, share <= TARGET_OFFERED_SHARE_5000))
            if routing is not None:
                ratio = r["extender_cpu_ms_per_data_pod"] / max(1e-9, routing["extender_cpu_ms_per_data_pod"])
                text = f"{where}: extender CPU per data pod {ratio:.2f}x of routing's <= {TARGET_CPU_RATIO_5000:.2f}x"
                out.append((text, ratio <= TARGET_CPU_RATIO_5000))
    preferred = sorted((r for r in narrowed if r["locality"] == "preferred"), key=lambda r: r["nodes"])
    for small, large in itertools.pairwise(preferred):
        a, b = small["offered_per_data_pod"] / small["nodes"], large["offered_per_data_pod"] / large["nodes"]
        text = f"preferred: share of names offered falls from {small['nodes']:,} ({a:.2%}) to {large['nodes']:,} nodes ({b:.2%})"
        out.append((text, b <= a))
    return out


# ------------------------------------------------------------- the extender (issue 16 item 2)
def extender_ratios(quick: bool) -> dict[str, Any]:
    """``kbl bench extender``'s rows that issue 16 names: HTTP at 5,000 ``NodeNames``, and the
    in-process calls with a 5,000- and a 100,000-node cache, side by side in one run."""
    from benchmarks import extender

    with tempfile.TemporaryDirectory(prefix="kbl-bench-scale-") as tmp:
        http = [r for r in extender.latency(quick, Path(tmp)) if r["mode"] == "names" and r["nodes"] == extender.NODES]
    inproc = extender.in_process(quick, 100_000)
    return {"http": http, "in_process": inproc}


def render_extender(result: dict[str, Any]) -> str:
    lines = [
        "| where | verb | shards | cached nodes | extender p50 / p99 (ms) | floor p50 / p99 (ms) | p50 ratio to the floor"
        " | p50 vs 5,000 cached |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for where, rows in (("HTTP", result.get("http", [])), ("in-process", result.get("in_process", []))):
        for r in rows:
            e, f = r["extender"], r["floor"]
            versus = f"{r['p50_vs_5000']:.2f}x" if "p50_vs_5000" in r else "-"
            lines.append(
                f"| {where} | {r['verb']} | {r['shards']} | {r.get('cached_nodes', r['nodes']):,} | {e['p50_ms']:.2f} / {e['p99_ms']:.2f}"
                f" | {f['p50_ms']:.2f} / {f['p99_ms']:.2f} | {r['p50_ratio']:.2f}x | {versus} |"
            )
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="CI-sized runs (300 and 1,000 nodes)")
    parser.add_argument("--sizes", help="comma-separated NODES:REPLICAS pairs instead of the issue's table")
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--no-serve", action="store_true", help="skip the extender-state child")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per child")
    parser.add_argument("--sampling", help="comma-separated node counts for the sampling table (1000, 5000, 15000)")
    parser.add_argument("--pods", type=int, default=600, help="pods per sampling run")
    parser.add_argument("--no-model", action="store_true", help="skip the cold-start table")
    parser.add_argument(
        "--extender",
        action="store_true",
        help="also the extender's own cost: p50 ratio to a no-op floor over HTTP at 5,000 names,"
        " and in-process at 5,000 vs 100,000 cached nodes",
    )
    parser.add_argument("--json", dest="json_out", metavar="OUT", help="write the figures as JSON")
    configure_loops(parser)


# ------------------------------------------------------- the control loops (issue 24 item 5)
def configure_loops(parser: argparse.ArgumentParser) -> None:
    """``--loops``: :mod:`benchmarks.scale_loops` (one tiny size under ``--quick``)."""
    parser.add_argument(
        "--loops",
        metavar="NODES",
        help="comma-separated node counts for the control loops' table (5000,20000,100000): fresh"
        " placement (kbl place), a DataSet event, join, leave (the reconciler), the agents' watch volume; exits 1 on a missed target",
    )
    parser.add_argument("--joiners", type=int, default=30, help="hosts that join in the loops' join row (default %(default)s)")
    parser.add_argument("--pass-target", type=float, default=2.0, help="seconds a reconciler pass may take in the loops' rows")
    parser.add_argument("--loops-timeout", type=float, default=900.0, help="seconds per loops child process (a MISS when over)")
    parser.add_argument(
        "--max-transfers", type=int, default=-1, help="the reconciler's per-node transfer bound in the loops (0: none; default: its own)"
    )


def run_loops_table(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
    """The loops' rows (as dicts), the children's figures, and whether every target was met."""
    from benchmarks import scale_loops

    sizes = scale_loops.parse_sizes(args.loops, args.quick) if (args.loops or args.quick) else ()
    if not sizes:
        return [], {}, True
    rows, figures = scale_loops.run_loops(
        sizes, joiners=args.joiners, pass_target_s=args.pass_target, timeout_s=args.loops_timeout, max_transfers=args.max_transfers
    )
    print(scale_loops.render(rows))
    missed = [f"{r.nodes:,}: {r.loop}" for r in rows if r.ok is False]
    print(f"loops: load average {figures['load_average_at_end']:.1f} at the end; targets missed: {missed or 'none'}")
    return [dataclasses.asdict(r) for r in rows], figures, not missed


def parse_sizes(text: str | None, quick: bool) -> tuple[tuple[int, int], ...]:
    if text:
        out = []
        for part in text.split(","):
            nodes, _, replicas = part.partition(":")
            out.append((int(nodes), int(replicas)))
        return tuple(out)
    return QUICK_SIZES if quick else SIZES


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| nodes | replicas | snapshot | load | graph | index | total | peak RSS | graph size | node join | placement change |"
        " serve ready (snapshot) | serve RSS | serve ready (API lists) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        m = row["model"]
        s = row.get("serve")
        a = row.get("api")
        serve = f"{s['ready_s']:.1f} s | {s['peak_rss_mib']:,.0f} MiB" if s else "- | -"
        serve += f" | {a['ready_s']:.1f} s" if a else " | -"
        lines.append(
            f"| {m['nodes']:,} | {m['replicas']:,} | {row['snapshot_mib']:,.0f} MiB | {m['load_s']:.1f} s | {m['graph_s']:.1f} s"
            f" | {m['index_s']:.2f} s | {m['total_s']:.1f} s | {m['peak_rss_mib']:,.0f} MiB"
            f" | {m['graph_vertices']:,} v / {m['graph_edges']:,} e"
            f" | {m['node_join_ms']:.1f} + {m['node_join_reread_ms']:.0f} ms"
            f" | {m['placement_change_ms']:.1f} + {m['placement_change_reread_ms']:.0f} ms | {serve} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = []
    for nodes, replicas in () if args.no_model else parse_sizes(args.sizes, args.quick):
        row = measure_size(nodes, replicas, args.datasets, serve=not args.no_serve, timeout_s=args.timeout)
        rows.append(row)
        print(render([row]).splitlines()[-1], flush=True)
    if rows:
        print(render(rows))
        print(
            f"targets at 100,000 nodes: ready < {TARGET_S:.0f} s, peak RSS < {TARGET_MIB:,} MiB;"
            " node join / placement change: update + what the hot path reads again"
        )
    sampling: list[dict[str, Any]] = []
    missed = 0
    sizes = [int(n) for n in args.sampling.split(",")] if args.sampling else ([60] if args.quick else [])
    if sizes:
        sampling = sampling_rows(sizes, 40 if args.quick else args.pods)
        print(render_sampling(sampling))
        checks = sampling_targets(sampling)
        for text, ok in checks:
            print(f"{'PASS' if ok else 'MISS'} {text}")
        missed = sum(1 for _, ok in checks if not ok)
    extender: dict[str, Any] = {}
    if args.extender:
        extender = extender_ratios(args.quick)
        print(render_extender(extender))
    loops, loop_figures, loops_met = run_loops_table(args)
    write_json(
        args.json_out,
        {"sizes": rows, "sampling": sampling, "extender": extender, "loops": loops, "loop_figures": loop_figures, "numpy": np.__version__},
    )
    return 1 if missed or not loops_met else 0


if __name__ == "__main__":
    mode, snapshot = sys.argv[1], sys.argv[2]
    children = {"model": child_model, "serve": child_serve, "api": child_api}
    print(json.dumps(children[mode](snapshot)))
