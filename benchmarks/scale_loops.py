"""Benchmark: the control loops at 5,000 / 20,000 / 100,000 nodes (issue 24 item 5).

``kbl bench scale --loops 5000,20000,100000`` (``--quick``: one tiny size). Each size runs in
fresh child processes (a process group killed at ``--loops-timeout``: a size that blows up is a
MISS row, not a hang), each driving the real component:

- **fresh placement**: ``kbl place`` in a fresh process (read the Node List, place a new 3x
  DataSet, write the JSON), through :func:`benchmarks.placement_scale.kbl_place_100k`: 300,000
  pieces at 5,000 nodes (target < 3 s over the process's start-up floor, ``kbl place`` of 3
  pieces on 4 nodes in the same run), 1,000,002 at 20,000 and 100,000 (target at 100,000, the
  whole process: < 30 s and < 2 GiB peak RSS; none stated at 20,000). Wall and CPU are the ``kbl place``
  process's; a target is met when the smaller of the two is under it (CPU is the wall time of
  an idle machine: the shared one's load average is printed).
- **the placement reconciler** (:class:`dataplane.reconciler.Reconciler`, writing, on
  :class:`kube.memory.MemoryApi`): ten DataSets, 100 3x pieces per node (10,000,000 at 100,000
  nodes) placed as kbl keeps them (:func:`benchmarks.coldstart.shard_counts`' balanced layout),
  and every node's ``NodeHoldings`` reporting its pieces ready with a fresh heartbeat; the
  fixture's targets are inline, the first pass (timed apart, after the load) writes them as
  PlacementSlices, as the reconciler's defaults write any target over 64 KiB. After that, each loop is one watch event (or a few) handed to
  the reconciler's own informer handlers, then one ``Reconciler.reconcile(keys)`` with the keys
  its run loop would pass (the dirty set, ``None`` when everything is dirty):

  - **DataSet event**: a label edit on one DataSet. Target: the pass decides that DataSet only,
    in under 2 s.
  - **join**: ``--joiners`` hosts (default 30) join as a new rack (Node ADDED, then their agents'
    empty ``NodeHoldings``). Targets: the pass under 2 s; the joiners get >= 90% of their
    capacity share (their targets in the placement engine's layout, as ``kbl bench placement
    --scale`` counts them) in the target the pass writes, moving at most 1.1x that ideal.
  - **leave**: one old node is deleted (Node DELETED, its ``NodeHoldings`` garbage-collected
    with it), on the cluster just after the join (the joiners' copies in flight). Targets: the
    pass under 2 s; every piece it held re-placed, moving at most 1.1x those pieces.
  - **join (1 node)**: the agents report what the join and the leave gave them, a pass (not
    timed) ends those transfers, then a host joins an existing rack of the settled cluster
    (issue 24 item 3: "a node joining ... costs a reconciler pass under 2 s"). Targets: the pass
    under 2 s; the joiner gets >= 90% of its capacity share, moving at most 1.1x it.

  Wall and CPU are the reconciler pass's (this child, numpy on one thread; a time target is
  checked against the smaller of the two, as for ``kbl place``); the in-memory API's
  share of it (copies of the written statuses, node patches and the PlacementSlices created and
  deleted) is counted apart and printed. Peak RSS is the child's so far (fixture
  included).
- **agents' watch volume**: :func:`benchmarks.watch_volume.main` at the size (a 3x DataSet of
  ``10 * nodes`` shards: 30 pieces per node): the real placement engine re-places a lost node's
  pieces and the agent's own candidate logic says whose holdings each receiver reads. Targets:
  steady state 0 reads per agent per minute; after one node loss, no agent reads more than the
  2 other holders of each piece it copies (O(own pieces), not O(nodes)).

The command exits 1 when a target is missed (``--pass-target`` changes the 2 s of the
reconciler rows).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measuring import peak_rss_mib

#: Node counts of issue 24 item 5 and the CI size (``--quick``).
SIZES = (5_000, 20_000, 100_000)
QUICK_SIZES = (200,)
DATASETS = 10
PIECES_PER_NODE = 100
JOINERS = 30
#: A reconciler pass after one event (issue 24: a node joining or leaving 100,000 nodes).
PASS_TARGET_S = 2.0
SHARE_TARGET = 0.9
MOVEMENT_TARGET = 1.1
#: Fresh placement targets by node count: (seconds, MiB or None, whole process). At 100,000 nodes
#: the issue counts the whole ``kbl place`` (process and JSON); at 5,000 the placement, so there
#: the process's start-up floor (``kbl place`` of 3 pieces on 4 nodes, same run) is taken off.
FRESH_TARGETS: dict[int, tuple[float, float | None, bool]] = {5_000: (3.0, None, False), 100_000: (30.0, 2048.0, True)}
GIB = 2**30


def fresh_pieces(nodes: int) -> int:
    """Pieces of the fresh DataSet at a size: the issue's 300,000 at 5,000 nodes and 1,000,000
    from 20,000 on; 60 a node below 5,000 (CI)."""
    if nodes >= 20_000:
        return 1_000_000
    return 300_000 if nodes >= 5_000 else 60 * nodes


# ----------------------------------------------------------------------- children
def run_group(args: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """``python -m benchmarks.scale_loops ARGS`` in its own process group; the JSON object it
    prints last, ``cpu_s`` (user + system of the whole group that exited) and ``wall_s`` added.
    On timeout the whole group (``kbl place`` grandchildren too) is killed and
    :class:`TimeoutError` raised; a failure raises :class:`RuntimeError`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.scale_loops", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"{' '.join(args)}: no answer within {timeout_s:.0f} s (killed)") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {err[-1500:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["group_wall_s"] = time.perf_counter() - started
    result["group_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def child_place(nodes: int, pieces: int) -> dict[str, Any]:
    """``kbl place`` through :func:`benchmarks.placement_scale.kbl_place_100k` (its process's
    wall, CPU and peak RSS; the Node List written first, not timed), and under ``floor`` the
    same command on 4 nodes and 3 pieces (start-up, imports, tiny JSON)."""
    from benchmarks.placement_scale import kbl_place_100k

    with tempfile.TemporaryDirectory(prefix="kbl-loops-") as tmp:
        floor = kbl_place_100k(Path(tmp), 4, 3)
    with tempfile.TemporaryDirectory(prefix="kbl-loops-") as tmp:
        return {**kbl_place_100k(Path(tmp), nodes, pieces), "floor": floor}


def child_watch(nodes: int, shards: int) -> dict[str, Any]:
    """:func:`benchmarks.watch_volume.main` at ``nodes``: its figures, CPU seconds, peak RSS."""
    from benchmarks.watch_volume import main

    t0, c0 = time.perf_counter(), time.process_time()
    out = main(nodes, shards)
    out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0, peak_rss_mib=peak_rss_mib())
    return out


# ------------------------------------------------------------------ the reconciler
@dataclass
class Fixture:
    """The cluster the reconciler child starts from."""

    api: Any  # a _TimedApi
    names: list[str]
    shards: list[int]
    build_s: float
    now: float


def _timed_api_class() -> type:
    from kube.memory import MemoryApi

    class TimedApi(MemoryApi):
        """:class:`MemoryApi` counting the seconds spent in the writes a pass makes (status and
        node patches, PlacementSlices created and deleted)."""

        api_s = 0.0
        api_cpu_s = 0.0

        def patch_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return super().patch_status(*args, **kwargs)
            finally:
                self.api_s += time.perf_counter() - t0
                self.api_cpu_s += time.process_time() - c0

        def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return super().patch(*args, **kwargs)
            finally:
                self.api_s += time.perf_counter() - t0
                self.api_cpu_s += time.process_time() - c0

        def create(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return super().create(*args, **kwargs)
            finally:
                self.api_s += time.perf_counter() - t0
                self.api_cpu_s += time.process_time() - c0

        def delete(self, *args: Any, **kwargs: Any) -> None:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                super().delete(*args, **kwargs)
            finally:
                self.api_s += time.perf_counter() - t0
                self.api_cpu_s += time.process_time() - c0

    return TimedApi


def node_object(name: str, zone: int, rack: str, template: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the real EKS node object, slim as the reconciler's lists receive it
    (``template``: :func:`slim_template`)."""
    from topology.examples import make_node

    return make_node(name, region="us-east-1", zone=f"us-east-1{'abcd'[zone]}", rack=rack, storage_b=2 * 10**12, template=template)


def slim_template() -> dict[str, Any]:
    """The real EKS node object with only what kbl reads (``make_node`` then copies that)."""
    from topology.examples import node_template
    from topology.nodes import slim_node_object

    return slim_node_object(node_template())


def ranges_text(rows: np.ndarray) -> list[str]:
    """:func:`topology.shards.format_shards` of each row (ascending shard indexes): rows with
    no two consecutive indexes are plain comma lists, written without the per-row encoder."""
    from topology.shards import format_shards

    if rows.shape[1] < 2 or int(np.diff(rows, axis=1).min()) > 1:
        return [",".join(map(str, row)) for row in rows.tolist()]
    return [format_shards(row) for row in rows.tolist()]


def holdings_object(name: str, now_text: str, ready: Mapping[str, tuple[str, int]]) -> dict[str, Any]:
    """A node agent's ``NodeHoldings``: for each DataSet name (namespace ``bench``, uid
    ``uid-NAME``) its ready shards as range text and their count; heartbeat ``now_text``.
    The object is :meth:`NodeHoldings.to_object`'s, each DataSet entry
    :meth:`DataSetHoldings.to_json`'s shape with the range text given (no frozenset per entry)."""
    from topology.holdings import REPLICA, DataSetHoldings, NodeHoldings

    held = NodeHoldings(
        name,
        endpoint=f"https://{name}:8443",
        heartbeat=now_text,
        capacity_bytes=2 * 10**12,
        free_bytes=2 * 10**12 - GIB * sum(n for _, n in ready.values()),
    )
    obj = held.to_object()
    empty = DataSetHoldings("bench", "-").to_json()
    obj["status"]["datasets"] = [
        {**empty, "name": ds, "uid": f"uid-{ds}", "ready": {REPLICA: text} if text else {}, "readyBytes": n * GIB}
        for ds, (text, n) in sorted(ready.items())
    ]
    return obj


def store(api: Any, resource: Any, objects: Sequence[dict[str, Any]]) -> None:
    """Objects written into the in-memory API's store in bulk, each with its resourceVersion
    (what :meth:`MemoryApi.put` does without its two deep copies and watch-log entry: fixture
    set-up before any watcher)."""
    for obj in objects:
        meta = obj["metadata"]
        if resource.namespaced:
            meta.setdefault("namespace", "default")
        api.version += 1
        meta["resourceVersion"] = str(api.version)
        api.objects[api._key(resource, meta["name"], meta.get("namespace"))] = obj


def build_fixture(nodes: int, datasets: int, pieces_per_node: int) -> Fixture:
    """Nodes, DataSets placed as kbl keeps them, and every agent's holdings, in the in-memory
    API. Placement: nodes numbered zone-interleaved (4 zones of racks of 50 hosts), piece ``j``
    of a DataSet on node ``j mod nodes`` (a shard's 3 replicas in 3 zones; every node holds its
    exact target), as :func:`benchmarks.coldstart.make_balanced_snapshot`. The placements are
    numpy rows (what the API's list parsing gives the reconciler)."""
    from benchmarks.coldstart import HOSTS_PER_RACK, ZONES, shard_counts
    from kube.api import DATASETS, NODE_HOLDINGS, NODES
    from topology.datasets import Replicas, dataset_object
    from topology.times import format_time

    t0 = time.perf_counter()
    now = time.time()
    now_text = format_time(now)
    api = _timed_api_class()(history=1)  # no watcher here: the events are handed over directly
    template = slim_template()
    names = [""] * nodes
    node_objects: list[dict[str, Any]] = []
    with _paused_gc():
        for z in range(ZONES):
            for i in range(nodes // ZONES):
                r, h = divmod(i, HOSTS_PER_RACK)
                name = f"node-{z}-{r}-{h}"
                names[ZONES * i + z] = name
                node_objects.append(node_object(name, z, f"rack-{r}", template))
        store(api, NODES, node_objects)
        ordered = sorted(names)
        where = {name: i for i, name in enumerate(ordered)}
        sorted_of = np.array([where[n] for n in names], dtype=np.int32)
        counts = shard_counts(nodes, nodes * pieces_per_node, datasets)
        held: list[dict[str, tuple[str, int]]] = [{} for _ in range(nodes)]
        for d, shards in enumerate(counts):
            ds = dataset_object(f"ds-{d}", namespace="bench", shards=shards, shard_size="1Gi", redundancy=Replicas(3))
            ds["metadata"]["uid"] = f"uid-ds-{d}"
            pieces = np.arange(3 * shards, dtype=np.int64)
            ds["status"] = {"placement": {"nodes": ordered, "shards": sorted_of[(pieces % nodes).reshape(shards, 3)]}}
            store(api, DATASETS, [ds])
            by_node = (pieces // 3).reshape(-1, nodes).T  # row g: the shards of node g, ascending
            for g, text in enumerate(ranges_text(by_node)):
                held[g][f"ds-{d}"] = (text, by_node.shape[1])
        store(api, NODE_HOLDINGS, [holdings_object(name, now_text, held[g]) for g, name in enumerate(names)])
    return Fixture(api, names, counts, time.perf_counter() - t0, now)


def first_lists(api: Any, rec: Any) -> None:
    """Every resource's first list handed to the reconciler's informer handlers (its
    ``_relist_*``), the store's objects as they are (a real list is parsed afresh: no copy here)."""
    from kube.api import DATASETS, NODE_HOLDINGS, NODES

    with _paused_gc():
        for resource, relist in ((DATASETS, rec._relist_datasets), (NODES, rec._relist_nodes), (NODE_HOLDINGS, rec._relist_holdings)):
            kind = api._kind(resource)
            relist([obj for (plural, _, _), obj in api.objects.items() if plural == kind])


@contextlib.contextmanager
def _paused_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _dirty_keys(rec: Any) -> set[str] | None:
    """The keys :meth:`Reconciler.run` would pass after the events so far (and clears them)."""
    with rec._lock:
        keys = None if rec._all_dirty else set(rec._dirty)
        rec._dirty.clear()
        rec._all_dirty = False
    return keys


def _holders(rec: Any) -> dict[str, np.ndarray]:
    """Every DataSet's target as an array of node names (shards x pieces), from the reconciler's cache."""
    out: dict[str, np.ndarray] = {}
    for key in rec.datasets:
        placement = rec.dataset(key).placement
        assert placement is not None

        out[key] = np.asarray([*placement.nodes, ""], dtype=object)[placement.pieces]
    return out


def _ideal(rec: Any, names: Sequence[str]) -> float:
    """The pieces ``names`` should hold over every DataSet: their targets in the placement
    engine's layout (capacity share, failure-domain caps) on the reconciler's current nodes."""
    from placement.layouts import build_layout
    from topology.datasets import DataSet

    nodes = list(rec._cluster.nodes.values())
    total = 0.0
    for raw in rec.datasets.values():
        spec = DataSet.from_object(raw).spec
        layout = build_layout(nodes, spec)
        piece_b = float(spec.shard_sizes[0]) * spec.redundancy.piece_fraction()  # every shard 1 GiB here
        total += sum(float(layout.targets[layout.index[n]]) for n in names if n in layout.index) / piece_b
    return total


def _pass(rec: Any, api: Any, keys: set[str] | None) -> tuple[Any, dict[str, float]]:
    api.api_s = api.api_cpu_s = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    report = rec.reconcile(keys)
    figures = {
        "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "api_s": api.api_s, "api_cpu_s": api.api_cpu_s,
        "peak_rss_mib": peak_rss_mib(),
    }  # fmt: skip
    return report, figures


def child_reconciler(nodes: int, datasets: int, pieces_per_node: int, joiners: int, max_transfers: int = -1) -> dict[str, Any]:
    """The fixture, the reconciler's load and first pass, then the three loops (module docstring).
    ``max_transfers``: the reconciler's per-node transfer bound (< 0: its default)."""
    from benchmarks.coldstart import ZONES
    from dataplane.reconciler import Reconciler, ReconcilerSettings
    from kube.api import DATASETS, NODE_HOLDINGS, NODES, WatchEvent
    from topology import labels
    from topology.times import format_time

    fx = build_fixture(nodes, datasets, pieces_per_node)
    api = fx.api
    # The reconciler's defaults, a real API server's object limit included: these targets (up to
    # 1,000,000 pieces, about 20 MB inline) are written as PlacementSlices (topology/slices.py).
    settings = ReconcilerSettings()
    if max_transfers >= 0:
        settings = ReconcilerSettings(max_transfers_per_node=max_transfers)
    rec = Reconciler(api, settings, clock=lambda: fx.now)
    t0 = time.perf_counter()
    first_lists(api, rec)
    _dirty_keys(rec)
    t1 = time.perf_counter()
    first = rec.reconcile(None)
    t2 = time.perf_counter()
    out: dict[str, Any] = {
        "nodes": nodes,
        "datasets": datasets,
        "pieces": 3 * sum(fx.shards),
        "max_transfers_per_node": settings.max_transfers_per_node,
        "build_s": fx.build_s,
        "load_s": t1 - t0,
        "first_pass_s": t2 - t1,
        "first_ready": sum(d.ready for d in first.decisions.values()),
        "first_moves": sum(d.moves for d in first.decisions.values()),
    }

    # A DataSet event: a label edit on one DataSet.
    key = sorted(rec.datasets)[0]
    edited = api.get(DATASETS, key.split("/", 1)[1], namespace="bench")
    edited["metadata"].setdefault("labels", {})["team"] = "bench"
    rec._on_dataset(WatchEvent("MODIFIED", api.put(DATASETS, edited)))
    report, fig = _pass(rec, api, _dirty_keys(rec))
    out["dataset_event"] = {**fig, "decided": len(report.decisions), "moves": sum(d.moves for d in report.decisions.values())}

    template = slim_template()
    start = _holders(rec)

    # Hosts join as a new rack: their Nodes, then their agents' first (empty) holdings.
    before = _holders(rec)
    joined = [f"node-0-joined-{h}" for h in range(joiners)]
    for name in joined:
        rec._on_node(WatchEvent("ADDED", api.put(NODES, node_object(name, 0, "rack-joined", template))))
        rec._on_holdings(WatchEvent("ADDED", api.put(NODE_HOLDINGS, holdings_object(name, format_time(fx.now), {}))))
    report, fig = _pass(rec, api, _dirty_keys(rec))
    after = _holders(rec)
    ideal = _ideal(rec, joined)
    on_joiners = sum(int(np.isin(a, joined).sum()) for a in after.values())
    moved = sum(int((after[k] != before[k]).sum()) for k in after)
    out["join"] = {
        **fig,
        "joiners": joiners,
        "ideal": ideal,
        "share": on_joiners / ideal,
        "moved": moved,
        "movement": moved / ideal,
        "decided": len(report.decisions),
        "deferred_shards": sum(d.deferred_shards for d in report.decisions.values()),
        "transfers": sum(len(d.transfers) for d in report.decisions.values()),
    }

    # One old node leaves: its Node deleted, its NodeHoldings garbage-collected with it.
    victim = fx.names[ZONES * (nodes // ZONES // 2)]
    before = after
    held = sum(int((b == victim).sum()) for b in before.values())
    for kind, handler in ((NODES, rec._on_node), (NODE_HOLDINGS, rec._on_holdings)):
        last = api.get(kind, victim)  # a DELETED event carries the object's last state
        api.delete(kind, victim)
        handler(WatchEvent("DELETED", last))
    report, fig = _pass(rec, api, _dirty_keys(rec))
    after = _holders(rec)
    still = sum(int((a == victim).sum()) for a in after.values())
    moved = sum(int((after[k] != before[k]).sum()) for k in after)
    out["leave"] = {
        **fig,
        "held": held,
        "share": (held - still) / max(1, held),
        "moved": moved,
        "movement": moved / max(1, held),
        "decided": len(report.decisions),
    }

    # The agents copy what the join and the leave gave them (their holdings report every shard
    # of their targets ready) and a pass, not timed, ends those transfers: the cluster is settled
    # again (while copies are in flight, moves that only rebalance wait: repairs first).
    gained: set[str] = set()
    for k, a in after.items():
        gained.update(str(n) for n in np.unique(a[a != start[k]]).tolist())
    for name in sorted(gained - {""}):
        mine = {k.split("/", 1)[1]: np.flatnonzero((a == name).any(axis=1)) for k, a in after.items()}
        ready = {ds: (",".join(map(str, rows.tolist())), len(rows)) for ds, rows in mine.items() if len(rows)}
        rec._on_holdings(WatchEvent("MODIFIED", api.put(NODE_HOLDINGS, holdings_object(name, format_time(fx.now), ready))))
    settled = rec.reconcile(_dirty_keys(rec))
    out["settled_transfers"] = sum(len(d.transfers) for d in settled.decisions.values())

    # Then one node joins an existing rack (issue 24 item 3 as stated: "a node joining").
    before = _holders(rec)
    host = "node-0-joined-single"
    neighbour = (api.get(NODES, fx.names[0]) or {})["metadata"]["labels"]
    zone = "abcd".index(neighbour[labels.ZONE][-1])
    rec._on_node(WatchEvent("ADDED", api.put(NODES, node_object(host, zone, neighbour[labels.DEFAULT_RACK], template))))
    rec._on_holdings(WatchEvent("ADDED", api.put(NODE_HOLDINGS, holdings_object(host, format_time(fx.now), {}))))
    report, fig = _pass(rec, api, _dirty_keys(rec))
    after = _holders(rec)
    ideal = _ideal(rec, [host])
    moved = sum(int((after[k] != before[k]).sum()) for k in after)
    out["join_one"] = {
        **fig,
        "ideal": ideal,
        "share": sum(int((a == host).sum()) for a in after.values()) / ideal,
        "moved": moved,
        "movement": moved / ideal,
        "decided": len(report.decisions),
    }
    out["peak_rss_mib"] = peak_rss_mib()
    return out


# ------------------------------------------------------------------------- rows
@dataclass
class Row:
    nodes: int
    loop: str
    wall_s: float | None = None
    cpu_s: float | None = None
    rss_mib: float | None = None
    moved: str = "-"
    share: str = "-"
    target: str = "-"
    ok: bool | None = None  # None: no target
    detail: str = ""

    def verdict(self) -> str:
        return "-" if self.ok is None else ("PASS" if self.ok else "MISS")


def _failed(nodes: int, loops: Sequence[str], target: str, exc: Exception) -> list[Row]:
    return [Row(nodes, loop, target=target, ok=False, detail=str(exc).splitlines()[0][:200]) for loop in loops]


def fresh_row(nodes: int, timeout_s: float) -> Row:
    pieces = fresh_pieces(nodes)
    seconds, mib, whole = FRESH_TARGETS.get(nodes, (None, None, True))
    target = "-" if seconds is None else f"< {seconds:g} s" + ("" if whole else " over the start-up floor")
    target += f", < {mib / 1024:g} GiB" if mib else ""
    loop = f"fresh placement ({pieces:,} pieces, `kbl place`)"
    try:
        r = run_group(["place", str(nodes), str(pieces)], timeout_s)
    except (TimeoutError, RuntimeError) as exc:
        return _failed(nodes, [loop], target, exc)[0]
    f = r["floor"]
    ok = None
    if seconds is not None:
        spent = _seconds(r) - (0.0 if whole else min(f["wall_s"], f["cpu_s"]))
        ok = spent < seconds and (mib is None or r["peak_rss_mib"] < mib) and bool(r["distinct_hosts"])
    return Row(
        nodes,
        loop,
        r["wall_s"],
        r["cpu_s"],
        r["peak_rss_mib"],
        target=target,
        ok=ok,
        detail=f"{r['pieces']:,} pieces, {r['min_pieces_per_node']}-{r['max_pieces_per_node']} per node,"
        f" distinct hosts {r['distinct_hosts']}; start-up floor (4 nodes, 3 pieces) {f['wall_s']:.2f} s wall, {f['cpu_s']:.2f} s CPU",
    )


def _seconds(figures: Mapping[str, Any]) -> float:
    """What a time target is checked against: the smaller of wall and CPU seconds (a pass runs on
    one core: its CPU time is the wall time of an idle machine; the shared one's load is printed)."""
    return min(float(figures["wall_s"]), float(figures["cpu_s"]))


def _moving(nodes: int, loop: str, figures: Mapping[str, Any], target: str, *, ok: bool, detail: str) -> Row:
    """The row of a loop that moves pieces: its times, the pieces moved against the ideal, the share reached."""
    return Row(
        nodes, loop, figures["wall_s"], figures["cpu_s"], figures["peak_rss_mib"],
        moved=f"{figures['movement']:.3f}x", share=f"{figures['share']:.1%}", target=target, ok=ok, detail=detail,
    )  # fmt: skip


def reconciler_rows(
    nodes: int, joiners: int, pass_target_s: float, timeout_s: float, max_transfers: int = -1
) -> tuple[list[Row], dict[str, Any]]:
    t = f"< {pass_target_s:g} s"
    loops = ("DataSet event", f"join ({joiners} hosts, a new rack)", "leave (1 node)", "join (1 node, an existing rack)")
    try:
        r = run_group(["reconciler", str(nodes), str(DATASETS), str(PIECES_PER_NODE), str(joiners), str(max_transfers)], timeout_s)
    except (TimeoutError, RuntimeError) as exc:
        return _failed(nodes, loops, t, exc), {"error": str(exc)}
    e, j, lv, one = r["dataset_event"], r["join"], r["leave"], r["join_one"]
    def api(f: Mapping[str, Any]) -> str:
        """The API's share (``kube.memory.MemoryApi``: a JSON round trip per write, as a client and
        server make) and the pass without it (the reconciler's own), in CPU seconds."""
        own = f["cpu_s"] - f["api_cpu_s"]
        return f"; of which in-memory API writes {f['api_cpu_s']:.2f} s CPU ({f['api_s']:.2f} s wall), without them {own:.2f} s CPU"

    rows = [
        Row(
            nodes,
            loops[0],
            e["wall_s"],
            e["cpu_s"],
            e["peak_rss_mib"],
            target=f"{t}, that DataSet only",
            ok=e["decided"] == 1 and _seconds(e) < pass_target_s,
            detail=f"{e['decided']} decided; the first (full) pass {r['first_pass_s']:.1f} s wall" + api(e),
        ),
        _moving(
            nodes, loops[1], j, f"{t}, >= {SHARE_TARGET:.0%}, <= {MOVEMENT_TARGET:g}x",
            ok=_seconds(j) < pass_target_s and j["share"] >= SHARE_TARGET and j["movement"] <= MOVEMENT_TARGET,
            detail=f"ideal {j['ideal']:,.0f} pieces, {j['moved']:,} moved, {j['transfers']:,} transfers,"
            f" {j['deferred_shards']:,} shards deferred (transfer bound)" + api(j),
        ),
        _moving(
            nodes, loops[2], lv, f"{t}, 100% re-placed, <= {MOVEMENT_TARGET:g}x",
            ok=_seconds(lv) < pass_target_s and lv["share"] >= 1.0 and lv["movement"] <= MOVEMENT_TARGET,
            detail=f"{lv['held']:,} pieces held, {lv['moved']:,} moved" + api(lv),
        ),
        _moving(
            nodes, loops[3], one, f"{t}, >= {SHARE_TARGET:.0%}, <= {MOVEMENT_TARGET:g}x",
            ok=_seconds(one) < pass_target_s and one["share"] >= SHARE_TARGET and one["movement"] <= MOVEMENT_TARGET,
            detail=f"ideal {one['ideal']:,.0f} pieces, {one['moved']:,} moved; on the cluster settled after the leave"
            f" ({r['settled_transfers']:,} transfers left)" + api(one),
        ),
    ]
    rows.sort(key=lambda row: loops.index(row.loop))
    return rows, r


def watch_rows(nodes: int, timeout_s: float) -> tuple[list[Row], dict[str, Any]]:
    loops = ("watch volume, steady", "watch volume, after one node loss")
    try:
        r = run_group(["watch", str(nodes), str(10 * nodes)], timeout_s)
    except (TimeoutError, RuntimeError) as exc:
        return _failed(nodes, loops, "O(own pieces)", exc), {"error": str(exc)}
    od, w = r["on_demand"], r["watching"]
    bound = 2 * r["pieces_received_max"]  # the other holders of each piece an agent copies (3x)
    rows = [
        Row(
            nodes,
            loops[0],
            r["wall_s"],
            r["cpu_s"],
            r["peak_rss_mib"],
            target="0 reads",
            ok=od["steady_per_agent_per_min"] == 0,
            detail=f"{od['steady_per_agent_per_min']:.0f} reads/agent/min"
            f" (watching every NodeHoldings: {w['steady_per_agent_per_min']:,.0f})",
        ),
        Row(
            nodes,
            loops[1],
            r["wall_s"],
            r["cpu_s"],
            r["peak_rss_mib"],
            target=f"<= {bound} (2 x pieces copied)",
            ok=od["after_loss_max_per_agent"] <= bound,
            detail=f"max {od['after_loss_max_per_agent']} reads/agent ({r['receivers']} receivers, mean over all agents "
            f"{od['after_loss_mean_over_all_agents']:.4f}; watching: {w['after_loss_per_agent_per_min']:,.0f})",
        ),
    ]
    return rows, r


def render(rows: Sequence[Row]) -> str:
    lines = [
        "| nodes | loop | wall s | CPU s | peak RSS MiB | pieces moved vs ideal | share reached | target | result | detail |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:

        def num(v: float | None, fmt: str = "{:.2f}") -> str:
            return "-" if v is None else fmt.format(v)

        lines.append(
            f"| {r.nodes:,} | {r.loop} | {num(r.wall_s)} | {num(r.cpu_s)} | {num(r.rss_mib, '{:,.0f}')} | {r.moved} | {r.share}"
            f" | {r.target} | {r.verdict()} | {r.detail} |"
        )
    return "\n".join(lines)


def run_loops(
    sizes: Sequence[int],
    *,
    joiners: int = JOINERS,
    pass_target_s: float = PASS_TARGET_S,
    timeout_s: float = 900.0,
    max_transfers: int = -1,
    echo: Callable[[str], None] = print,
) -> tuple[list[Row], dict[str, Any]]:
    """Every loop at every size (each in child processes); the rows and the children's figures."""
    rows: list[Row] = []
    figures: dict[str, Any] = {"load_average_at_start": os.getloadavg()[0], "sizes": {}}
    echo(f"loops: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for nodes in sizes:
        size_rows = [fresh_row(nodes, timeout_s)]
        rec_rows, rec = reconciler_rows(nodes, joiners, pass_target_s, timeout_s, max_transfers)
        watch, watched = watch_rows(nodes, timeout_s)
        size_rows += rec_rows + watch
        figures["sizes"][str(nodes)] = {"reconciler": rec, "watch": watched}
        if "build_s" in rec:
            echo(
                f"{nodes:,} nodes: fixture {rec['pieces']:,} pieces in {rec['datasets']} DataSets built in {rec['build_s']:.1f} s "
                f"(not measured), reconciler load {rec['load_s']:.1f} s, first pass {rec['first_pass_s']:.1f} s "
                f"({rec['first_ready']:,} pieces ready, {rec['first_moves']} moves); "
                f"transfer bound {rec['max_transfers_per_node']} per node"
            )
        for row in size_rows:
            echo(render([row]).splitlines()[-1])
        rows += size_rows
    figures["load_average_at_end"] = os.getloadavg()[0]
    return rows, figures


def parse_sizes(text: str | None, quick: bool) -> tuple[int, ...]:
    if text:
        return tuple(int(n) for n in text.split(","))
    return QUICK_SIZES if quick else SIZES


if __name__ == "__main__":
    mode, numbers = sys.argv[1], [int(a) for a in sys.argv[2:]]
    children: dict[str, Callable[..., dict[str, Any]]] = {"place": child_place, "watch": child_watch, "reconciler": child_reconciler}
    print(json.dumps(children[mode](*numbers), default=str))
