"""Benchmark: cold start of the placement reconciler and the companion controller on a big snapshot.

Issue 16 asks that the reconciler and the controller, like ``kbl serve``, be ready in under 20 s
from the first list at 100,000 nodes and 10,000,000 replicas, with a peak RSS under 3 GiB.

:func:`make_balanced_snapshot` writes a snapshot whose placements kbl itself would keep (every
node holds the same number of pieces of every DataSet, each shard's 3 replicas on 3 distinct
hosts, racks and zones), unlike :func:`benchmarks.model.make_snapshot`'s random placements (which
the reconciler must rebalance: a real plan, not a cold start). Each measurement runs in a fresh
child process:

- ``reconciler``: the snapshot read (:class:`~kube.replaying.SnapshotApi`, streaming), every
  resource listed into the reconciler's caches (what its informers hold once synced), the first
  full pass (``--once --dry-run``), a second pass with nothing changed, a pass after one
  DataSet's event and a pass after one node joined (every DataSet rebalances a share onto it);
  peak RSS; how many DataSets called ``placement.place``.
- ``controller``: the companion controller's cold start (:func:`child_controller`), from the
  snapshot and from API list pages: ready after the first pass; peak RSS.
- ``command``: a whole CLI command (``kbl reconciler --once --dry-run --snapshot FILE``,
  ``kbl controller --once --dry-run --snapshot FILE``): wall time and the child's peak RSS.
- ``place``: one fresh :func:`placement.place` of a new DataSet on the snapshot's nodes.

``kbl bench coldstart --nodes 5000 20000 100000`` prints the table; BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.measuring import current_rss_mib, peak_rss_mib, run_child, write_json
from topology.datasets import Replicas, dataset_object
from topology.examples import make_node, node_template

ZONES = 4
HOSTS_PER_RACK = 50


def shard_counts(nodes: int, replicas_total: int, datasets: int) -> list[int]:
    """Shards per DataSet: multiples of ``nodes / gcd(nodes, 3)`` (so each DataSet's 3x pieces
    split evenly over the nodes), spread over ``datasets`` as evenly as the units allow; the
    total is ``replicas_total / 3`` rounded down to a whole unit.

    >>> shard_counts(100_000, 10_000_000, 10)
    [400000, 400000, 400000, 300000, 300000, 300000, 300000, 300000, 300000, 300000]
    """
    unit = nodes // math.gcd(nodes, 3)
    units = (replicas_total // 3) // unit
    if units < datasets:
        raise ValueError(f"{replicas_total} replicas cannot give {datasets} DataSets an even share of {nodes} nodes")
    return [unit * (units // datasets + (1 if d < units % datasets else 0)) for d in range(datasets)]


def make_balanced_snapshot(path: Path, *, nodes: int, replicas_total: int, datasets: int) -> dict[str, Any]:
    """Write a snapshot of ``nodes`` nodes (``nodes % 4 == 0``: 4 equal zones of racks of 50
    hosts, copies of the real EKS node object, equal storage) and about ``replicas_total`` 3x
    replicas in ``datasets`` DataSets (:func:`shard_counts`) placed as kbl would keep them.

    Nodes are numbered zone-interleaved (``g = 4 * i + zone``); piece ``j`` of a DataSet (shard
    ``j // 3``, replica ``j % 3``) is on node ``j mod nodes``, so a shard's replicas are on 3
    consecutive numbers: 3 zones, hence 3 racks and hosts; and every node holds exactly
    ``3 * shards / nodes`` pieces of each DataSet, its target. ``status.placement`` lists the
    nodes sorted by name, as the reconciler writes it. Returns the counts written.
    """
    if nodes % ZONES:
        raise ValueError(f"nodes must be a multiple of {ZONES}")
    per_zone = nodes // ZONES
    template = node_template()
    names: list[str] = [""] * nodes
    counts = shard_counts(nodes, replicas_total, datasets)
    with path.open("wb") as out:
        out.write(b'{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":[')
        for z, i in itertools.product(range(ZONES), range(per_zone)):
            r, h = divmod(i, HOSTS_PER_RACK)
            name = f"node-{z}-{r}-{h}"
            zone = f"us-east-1{'abcd'[z]}"
            obj = make_node(name, region="us-east-1", zone=zone, rack=f"rack-{r}", storage_b=2 * 10**12, template=template)
            out.write(b"," if z or i else b"")
            out.write(orjson.dumps(obj))
            names[ZONES * i + z] = name
        ordered = sorted(names)  # status.placement as the reconciler writes it: nodes sorted
        where = {name: i for i, name in enumerate(ordered)}
        sorted_of = np.array([where[name] for name in names], dtype=np.int32)
        for d, shards in enumerate(counts):
            ds = dataset_object(f"ds-{d}", namespace="bench", shards=shards, shard_size="1Gi", redundancy=Replicas(3))
            pieces = sorted_of[(np.arange(3 * shards, dtype=np.int64) % nodes).reshape(shards, 3)]
            ds["status"] = {"placement": {"nodes": ordered, "shards": pieces}}
            out.write(b",")
            out.write(orjson.dumps(ds, option=orjson.OPT_SERIALIZE_NUMPY))
        out.write(b"]}")
    return {"nodes": nodes, "datasets": datasets, "shards": counts, "replicas": 3 * sum(counts)}


def child_reconciler(path: str) -> None:
    """Measured in a fresh process: read, list (synced), first pass, steady pass, one-DataSet pass."""
    from dataplane.reconciler import Reconciler, ReconcilerSettings, planning
    from kube.api import WatchEvent
    from kube.replaying import SnapshotApi

    placed: list[str] = []
    real_place = planning.place  # type: ignore[attr-defined]

    def counted(nodes: Any, spec: Any, **kwargs: Any) -> Any:
        placed.append(spec.key)
        return real_place(nodes, spec, **kwargs)

    planning.place = counted  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    api = SnapshotApi.from_file(path)
    t1 = time.perf_counter()
    rec = Reconciler(api, ReconcilerSettings(max_object_bytes=0), dry_run=True)  # targets over one object's 1.5 MiB: planned, not refused
    rec.load()
    t2 = time.perf_counter()
    first = rec.reconcile(None)
    t3 = time.perf_counter()
    first_placed = len(placed)
    second = rec.reconcile(None)
    t4 = time.perf_counter()
    one = sorted(rec.datasets)[0]
    rec.datasets[one] = dict(rec.datasets[one])  # an event on one DataSet: a new raw object
    rec.reconcile([one])
    t5 = time.perf_counter()
    before = len(placed)
    rec._on_node(WatchEvent("ADDED", make_node("joined-0", zone="us-east-1a", rack="rack-joined", storage_b=2 * 10**12)))
    joined = rec.reconcile(None)  # a node joins: every DataSet rebalances a share onto it
    t6 = time.perf_counter()
    print(
        json.dumps(
            {
                "nodes": len(rec.nodes),
                "datasets": len(rec.datasets),
                "replicas": sum(d.total for d in first.decisions.values()),
                "moves": sum(d.moves for d in first.decisions.values()),
                "place_calls_first": first_placed,
                "place_calls_later": len(placed) - first_placed,
                "read_s": t1 - t0,
                "synced_s": t2 - t0,
                "first_pass_s": t3 - t2,
                "ready_s": t3 - t0,
                "second_pass_s": t4 - t3,
                "second_moves": sum(d.moves for d in second.decisions.values()),
                "one_dataset_pass_s": t5 - t4,
                "node_join_pass_s": t6 - t5,
                "node_join_moves": sum(d.moves for d in joined.decisions.values()),
                "node_join_place_calls": len(placed) - before,
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


def child_controller(path: str, source: str) -> None:
    """Measured in a fresh process: the companion controller's cold start, as ``kbl controller``
    reads (``source``): ``snapshot`` (:meth:`SnapshotApi.from_file` ``typed``, the
    ``--snapshot`` path) or ``api`` (every watched resource listed page by page through
    :meth:`KubeClient.typed_reader`, as its informers do: the page bodies are the snapshot's
    objects, image lists included, served from memory). Ready = the file read (snapshot), every
    resource listed into the caches its informers keep (synced), and the first pass: typed, the
    Cluster built, planned (``reconcile_once``, dry run). Then a pass with nothing changed and a
    pass after one node joined (a watch event)."""
    from controller import Controller, ControllerSettings
    from controller.providers.fake import FakeProvider
    from controller.reconciling import OPTIONAL, WATCHED, ObjectCache
    from controller.replaying import RecordedGroups
    from kube.api import DATASETS, NODES, ApiError, WatchEvent
    from kube.replaying import SnapshotApi

    settings = ControllerSettings(dry_run=True)
    store_mib = 0.0
    t0 = time.perf_counter()
    if source == "snapshot":
        api = SnapshotApi.from_file(path, typed=True)
        controller = Controller(api, RecordedGroups(api), settings)
    else:
        from benchmarks.scale import api_pages, paged_client

        pages, _store = api_pages(path)
        client = paged_client(pages)
        controller = Controller(client, FakeProvider(time.time), settings, lists=client.typed_reader())
        store_mib = current_rss_mib()  # before the controller starts: the interpreter and the page bodies it is served
        t0 = time.perf_counter()  # from here on, what the controller does
    t1 = time.perf_counter()
    controller.caches = {}  # what its informers hold once synced: one list per resource
    for resource, build in WATCHED:
        cache = controller.caches[resource.plural] = ObjectCache(build)
        try:
            items, _ = controller.lists.list(resource)
        except ApiError:
            if resource not in OPTIONAL:
                raise
            items = []
        cache.relist(items)
    t2 = time.perf_counter()
    plan = controller.reconcile_once()
    t3 = time.perf_counter()
    controller.reconcile_once()
    t4 = time.perf_counter()
    joined = make_node("joined-0", zone="us-east-1a", rack="rack-joined")
    controller.caches[NODES.plural].event(WatchEvent("ADDED", joined))  # a node joins
    controller.reconcile_once()
    t5 = time.perf_counter()
    print(
        json.dumps(
            {
                "source": source,
                "nodes": len(controller.caches[NODES.plural].typed),
                "datasets": len(controller.caches[DATASETS.plural].typed),
                "actions": len(plan.actions),
                "rejected": len(controller.rejected),
                "read_s": t1 - t0,
                "synced_s": t2 - t0,
                "first_pass_s": t3 - t2,
                "ready_s": t3 - t0,
                "second_pass_s": t4 - t3,
                "one_node_pass_s": t5 - t4,
                "peak_rss_mib": peak_rss_mib(),
                "page_store_mib": store_mib,
            }
        )
    )


def child_place(path: str, pieces: str, chunk_rows: str = "") -> None:
    """Measured in a fresh process: one fresh ``place`` of a new 3x DataSet of ``pieces`` pieces
    (1 GiB shards, host failure domain) on the snapshot's nodes (``chunk_rows``: the placement
    setting, default 4,096 shards hashed at once against every node)."""
    from placement import PlacementSettings, place
    from topology.datasets import DataSet
    from topology.nodes import Node
    from topology.snapshots import iter_file_objects

    nodes = [Node.from_object(obj) for obj in iter_file_objects(path) if obj.get("kind") == "Node"]
    shards = -(-int(pieces) // 3)
    spec = DataSet.from_object(dataset_object("new", namespace="bench", shards=shards, shard_size="1Gi", redundancy=Replicas(3))).spec
    t0 = time.perf_counter()
    result = place(nodes, spec, settings=PlacementSettings(chunk_rows=int(chunk_rows)) if chunk_rows else None)
    elapsed = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "nodes": len(nodes),
                "pieces": 3 * shards,
                "chunk_rows": int(chunk_rows) if chunk_rows else 4096,
                "place_s": elapsed,
                "violations": result.report.violations,
                "balance": str(result.report.balance),
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    )


def run_command(argv: list[str], *, timeout_s: float = 1800) -> dict[str, Any]:
    """Run a command in a fresh process (output discarded): wall time, exit code and peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = started + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            raise RuntimeError(f"{argv} took more than {timeout_s} s")
        time.sleep(0.05)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr is not None else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{argv} failed ({code}): {err[-2000:]}")
    rss = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20
    return {"wall_s": time.perf_counter() - started, "peak_rss_mib": rss}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, nargs="+", default=[5000], help="cluster sizes (multiples of 4)")
    parser.add_argument("--replicas-per-node", type=int, default=100, help="3x replicas per node (default %(default)s)")
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--place", type=int, default=0, metavar="PIECES", help="also time a fresh place() of PIECES pieces")
    parser.add_argument("--keep", metavar="DIR", help="write the snapshots here and keep them (default: a temporary folder)")
    parser.add_argument("--json", dest="json_out", metavar="OUT", help="write the figures as JSON")


def run(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for n in args.nodes:
            path = folder / f"balanced-{n}.json"
            t0 = time.perf_counter()
            made = make_balanced_snapshot(path, nodes=n, replicas_total=n * args.replicas_per_node, datasets=args.datasets)
            row: dict[str, Any] = {**made, "snapshot_mib": path.stat().st_size / 2**20, "write_s": time.perf_counter() - t0}
            row["reconciler"] = run_child("benchmarks.coldstart", "reconciler", str(path), timeout_s=3600)
            row["controller"] = run_child("benchmarks.coldstart", "controller", str(path), "snapshot", timeout_s=3600)
            row["controller_api"] = run_child("benchmarks.coldstart", "controller", str(path), "api", timeout_s=3600)
            row["reconciler_cli"] = run_command([sys.executable, "-m", "kbl", "reconciler", "--once", "--dry-run", "--snapshot", str(path)])
            row["controller_cli"] = run_command([sys.executable, "-m", "kbl", "controller", "--once", "--dry-run", "--snapshot", str(path)])
            if args.place:
                row["place"] = run_child("benchmarks.coldstart", "place", str(path), str(args.place), timeout_s=3600)
            row["load_average"] = os.getloadavg()
            rows.append(row)
            rec = row["reconciler"]
            print(
                f"{n:,} nodes, {made['replicas']:,} replicas in {made['datasets']} DataSets ({row['snapshot_mib']:,.0f} MiB):\n"
                f"  reconciler: read {rec['read_s']:.1f} s, synced {rec['synced_s']:.1f} s, first pass {rec['first_pass_s']:.1f} s"
                f" = ready {rec['ready_s']:.1f} s; second pass {rec['second_pass_s']:.2f} s; one DataSet {rec['one_dataset_pass_s']:.2f} s;"
                f" a node joins {rec['node_join_pass_s']:.1f} s ({rec['node_join_moves']:,} moves);"
                f" place() calls {rec['place_calls_first']}+{rec['place_calls_later']}; peak RSS {rec['peak_rss_mib']:,.0f} MiB\n"
                + "".join(
                    f"  controller from {c['source']}: read {c['read_s']:.1f} s, synced {c['synced_s']:.1f} s,"
                    f" first pass {c['first_pass_s']:.1f} s = ready {c['ready_s']:.1f} s; second pass {c['second_pass_s']:.2f} s;"
                    f" a node joins {c['one_node_pass_s']:.2f} s; peak RSS {c['peak_rss_mib']:,.0f} MiB"
                    + (f" ({c['page_store_mib']:,.0f} MiB before it started: the page bodies served)" if c["page_store_mib"] else "")
                    + "\n"
                    for c in (row["controller"], row["controller_api"])
                )
                + f"  kbl reconciler --once --dry-run --snapshot: {row['reconciler_cli']['wall_s']:.1f} s,"
                f" {row['reconciler_cli']['peak_rss_mib']:,.0f} MiB\n"
                f"  kbl controller --once --dry-run --snapshot: {row['controller_cli']['wall_s']:.1f} s,"
                f" {row['controller_cli']['peak_rss_mib']:,.0f} MiB\n"
                + (f"  fresh place() of {row['place']['pieces']:,} pieces: {row['place']['place_s']:.1f} s\n" if args.place else "")
                + f"  load average {' '.join(f'{x:.2f}' for x in row['load_average'])}",
                flush=True,
            )
    write_json(args.json_out, rows)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "place":
        child_place(*sys.argv[2:5])
    elif sys.argv[1] == "controller":
        child_controller(sys.argv[2], sys.argv[3])
    else:
        child_reconciler(sys.argv[2])
