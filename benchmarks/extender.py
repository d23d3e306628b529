"""Benchmark: extender latency over real HTTP next to a no-op floor, and cache memory.

Latency: one uvicorn child process serves, on 127.0.0.1, the extender (``/ext/filter``,
``/ext/prioritize``) over a 5,000-node snapshot (copies of the real EKS node object, a
4,096-shard 3x-replicated DataSet) and, in the same app, the *floor*: ``/floor/filter`` and
``/floor/prioritize``, no-op endpoints that receive the same payload, decode it with orjson and
give the minimal valid answer (all offered nodes pass; every score 0). The parent sends
sequential requests over one keep-alive connection for 100, 1,000 and 5,000 candidate nodes,
1 and 64 shards per pod, in ``NodeNames`` form and in full ``Nodes`` form (the real node
objects), alternating extender and floor so both see the same machine state. Reported: p50,
p99, throughput (sequential requests per second) and the ratio to the floor.

In-process: the extender app built in the parent over a synthetic cache
(:func:`synthetic_state`) and called as an ASGI application with prebuilt requests (no socket,
no HTTP parsing), 5,000 candidates in ``NodeNames`` form, many iterations: the Python work per
request, far less sensitive to the other jobs on a shared machine than the HTTP figures. With
``--cached-nodes 100000`` a second cache of 100,000 nodes (the same 5,000 offered) is measured
side by side, and each of its rows prints its ratio to the 5,000-node cache. Every row prints
its p50 ratio to the floor and the 1-minute load average when it ended; the load average is
also recorded at the start and the end of the run.

Memory: a fresh child loads a snapshot of 5,000 nodes and 1,000,000 shard replicas into a
:class:`~extender.state.ClusterState`, answers one prioritize, and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from benchmarks.measuring import peak_rss_mib, percentile, run_child, write_json
from benchmarks.model import bench_pod, make_snapshot
from benchmarks.serving import free_port
from topology import labels

NODES = 5000
SHARDS = 4096
#: Requests per row (extender and floor each), bounded so the full run stays within minutes.
NAMES_REQUESTS = 200
NODES_REQUESTS = {100: 40, 1000: 12, 5000: 4}
#: Calls per in-process row.
INPROCESS_CALLS = 400
NAMESPACE = "bench"
DATASET = "ds-0"




def scheduled_pod(name: str, first: int, count: int) -> dict[str, Any]:
    """A benchmark pod as kube-scheduler sends it: from the API server, so with a ``resourceVersion``."""
    pod = bench_pod(name, first, count)
    pod["metadata"]["resourceVersion"] = "1"
    return pod


# ----------------------------------------------------------------------- server
def build_app(snapshot_path: str) -> Any:
    """The extender under /ext plus the floor under /floor, in one FastAPI app."""
    from extender.app import create_app
    from extender.settings import ExtenderSettings
    from extender.state import ClusterState
    from topology.snapshots import load_snapshot

    settings = ExtenderSettings(url_prefix="/ext")
    return floor_routes(create_app(ClusterState.from_snapshot(load_snapshot(snapshot_path), settings), settings))


def serve_child(snapshot_path: str, port: int) -> None:
    import uvicorn

    from extender.serving import ServerOptions, config, freeze_heap

    app = build_app(snapshot_path)
    freeze_heap()  # as `kbl serve` does once its cache is loaded
    uvicorn.Server(config(app, ServerOptions(host="127.0.0.1", port=port, log_level="warning"))).run()


def rss_child(snapshot_path: str) -> None:
    """Fresh process: 1,000,000 replicas into the cache, one prioritize, report peak RSS."""
    import asyncio

    from extender.app import create_app
    from extender.state import ClusterState
    from topology.snapshots import load_snapshot

    t0 = time.perf_counter()
    state = ClusterState.from_snapshot(load_snapshot(snapshot_path))
    t1 = time.perf_counter()
    replicas = sum(int((d.placement.pieces >= 0).sum()) for d in state.cluster.datasets.values() if d.placement is not None)
    names = list(state.cluster.nodes)
    pod = bench_pod("rss", 0, 64)
    pod["metadata"]["annotations"][labels.POD_DATASET] = "ds-0"
    app = create_app(state)

    async def go() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            response = await client.post("/prioritize", content=orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": names}))
            return response.status_code

    status = asyncio.run(go())
    print(json.dumps({"nodes": len(names), "replicas": replicas, "load_s": t1 - t0, "status": status, "peak_rss_mib": peak_rss_mib()}))


# ----------------------------------------------------------------------- client
def measure(client: httpx.Client, path: str, bodies: list[bytes], count: int) -> list[float]:
    out = []
    for i in range(count):
        body = bodies[i % len(bodies)]
        started = time.perf_counter()
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        response.read()
        out.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
    return out


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "throughput_rps": len(samples) / sum(samples),
        "requests": len(samples),
    }


def latency(quick: bool, workdir: Path) -> list[dict[str, Any]]:
    snap = workdir / "latency.json"
    make_snapshot(snap, nodes=NODES, replicas_total=3 * SHARDS, datasets=1)
    objects = {o["metadata"]["name"]: o for o in json.loads(snap.read_text())["items"] if o.get("kind") == "Node"}
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.extender", "--child-serve", str(snap), str(port)])
    rows: list[dict[str, Any]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(base + "/readyz").raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("benchmark server did not start") from None
                time.sleep(0.2)
        rng = random.Random(0)
        all_names = list(objects)
        with httpx.Client(base_url=base, timeout=120) as client:
            for n in (100, 1000, 5000):
                candidates = rng.sample(all_names, n)
                for shards in (1, 64):
                    pods = [scheduled_pod(f"p{i}", rng.randrange(0, SHARDS - shards), shards) for i in range(8)]
                    for mode in ("names", "nodes"):
                        if mode == "names":
                            bodies = [orjson.dumps({"Pod": p, "Nodes": None, "NodeNames": candidates}) for p in pods]
                            count = NAMES_REQUESTS // (5 if quick else 1)
                        else:
                            items = [objects[c] for c in candidates]
                            bodies = [
                                orjson.dumps({"Pod": p, "Nodes": {"metadata": {}, "items": items}, "NodeNames": None}) for p in pods[:2]
                            ]
                            count = max(4, NODES_REQUESTS[n] // (4 if quick else 1))
                        for verb in ("filter", "prioritize"):
                            warm = len(bodies) if mode == "names" else 1
                            measure(client, f"/ext/{verb}", bodies, warm)  # warm: byte tables, connection
                            measure(client, f"/floor/{verb}", bodies, warm)
                            ext: list[float] = []
                            floor: list[float] = []
                            for _ in range(4):  # interleave so both see the same machine state
                                ext += measure(client, f"/ext/{verb}", bodies, max(1, count // 4))
                                floor += measure(client, f"/floor/{verb}", bodies, max(1, count // 4))
                            e, f = summary(ext), summary(floor)
                            row = {
                                "verb": verb,
                                "mode": mode,
                                "nodes": n,
                                "shards": shards,
                                "payload_b": len(bodies[0]),
                                "extender": e,
                                "floor": f,
                                "p50_ratio": e["p50_ms"] / f["p50_ms"],
                                "p99_ratio": e["p99_ms"] / f["p99_ms"],
                                "load_1m": os.getloadavg()[0],
                            }
                            rows.append(row)
                            print(
                                f"{verb:10} {mode:5} {n:5} nodes {shards:2} shards {len(bodies[0]) / 1e6:7.2f} MB | "
                                f"ext p50 {e['p50_ms']:8.2f} p99 {e['p99_ms']:8.2f} ms {e['throughput_rps']:7.1f}/s | "
                                f"floor p50 {f['p50_ms']:8.2f} p99 {f['p99_ms']:8.2f} ms | "
                                f"x{row['p50_ratio']:.2f} p50, x{row['p99_ratio']:.2f} p99 | load {os.getloadavg()[0]:.2f}",
                                flush=True,
                            )
    finally:
        proc.terminate()
        proc.wait(30)
    return rows


async def _asgi_call(app: Any, path: str, body: bytes) -> int:
    """One request straight into the ASGI app; returns the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    delivered = False
    status = [0]

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    await app(scope, receive, send)
    return status[0]


def synthetic_state(cached_nodes: int, *, holders: int = NODES, seed: int = 0) -> tuple[Any, list[str]]:
    """A ready :class:`~extender.state.ClusterState` of ``cached_nodes`` typed nodes, fast.

    No JSON: one node is parsed from the real EKS object and copied with a new name and place
    (racks of 34 hosts, racks spread over 3 zones), so 100,000 nodes take seconds. The first
    ``holders`` nodes are the same whatever ``cached_nodes`` is, and hold a 4,096-shard
    3x-replicated DataSet; they are returned in a shuffled order, as the offered list. So a
    5,000-node and a 100,000-node cache differ only in the 95,000 nodes nobody offers.
    """
    import dataclasses

    import numpy as np

    from benchmarks.model import distinct_triples
    from extender.settings import ExtenderSettings
    from extender.state import ClusterState
    from topology.datasets import DataSet, Replicas, dataset_object
    from topology.examples import make_node
    from topology.nodes import Node
    from topology.snapshots import Snapshot

    base = Node.from_object(make_node("node-0", region="us-east-1", zone="us-east-1a", rack="rack-0", storage_b=2 * 10**12))
    nodes = []
    for i in range(cached_nodes):
        rack = i // 34
        zone = f"us-east-1/us-east-1{'abc'[rack % 3]}"
        name = f"node-{i}"
        host = {**base.labels, labels.HOSTNAME: name}
        nodes.append(dataclasses.replace(base, name=name, zone=zone, rack=f"{zone}/rack-{rack}", labels=host))
    names = [n.name for n in nodes[:holders]]
    obj = dataset_object(DATASET, namespace=NAMESPACE, shards=SHARDS, shard_size="1Gi", redundancy=Replicas(3))
    obj["status"] = {"placement": {"nodes": names, "shards": distinct_triples(np.random.default_rng(seed), SHARDS, len(names)).tolist()}}
    state = ClusterState.from_snapshot(Snapshot(nodes=nodes, datasets=[DataSet.from_object(obj)]), ExtenderSettings(url_prefix="/ext"))
    random.Random(seed + 1).shuffle(names)
    return state, names


def floor_routes(app: Any) -> Any:
    """Add the no-op floor (``/floor/filter``, ``/floor/prioritize``) to an app (module docstring)."""

    async def floor_filter(request: Request) -> Response:
        args = orjson.loads(await request.body())
        if args.get("NodeNames") is not None:
            reply = {"Nodes": None, "NodeNames": args["NodeNames"], "FailedNodes": {}, "FailedAndUnresolvableNodes": {}, "Error": ""}
        else:
            reply = {
                "Nodes": {"metadata": {}, "items": args["Nodes"]["items"]},
                "NodeNames": None,
                "FailedNodes": {},
                "FailedAndUnresolvableNodes": {},
                "Error": "",
            }
        return Response(orjson.dumps(reply), media_type="application/json")

    async def floor_prioritize(request: Request) -> Response:
        args = orjson.loads(await request.body())
        names = args["NodeNames"] if args.get("NodeNames") is not None else [n["metadata"]["name"] for n in args["Nodes"]["items"]]
        return Response(orjson.dumps([{"Host": n, "Score": 0} for n in names]), media_type="application/json")

    app.add_api_route("/floor/filter", floor_filter, methods=["POST"])
    app.add_api_route("/floor/prioritize", floor_prioritize, methods=["POST"])
    return app


def in_process(quick: bool, cached_nodes: int | None = None) -> list[dict[str, Any]]:
    """Per-call time of the handlers (ASGI app called directly) at 5,000 NodeNames candidates.

    Two synthetic caches side by side (:func:`synthetic_state`): 5,000 nodes and, with
    ``cached_nodes``, that many (the same 5,000 offered, the rest never offered); calls
    alternate between the extender on each cache and the no-op floor, so all three see the same
    machine. Rows: filter and prioritize at 1 and 64 shards with nothing changing between calls
    (every per-list and per-load cache warm), and ``prioritize+load``: prioritize after an
    in-flight assignment to a random offered node before every call (the load version moves,
    as in a real scheduler binding a pod per cycle), and ``prioritize+wish``: every call a pod
    reading a shard set never asked before (the per-dataset-and-shard-set byte table and cost
    vector are built for it: the part that is still O(cached nodes), once per shard set).
    """
    from extender.app import create_app
    from extender.serving import freeze_heap

    sizes = [NODES] if not cached_nodes or cached_nodes == NODES else [NODES, cached_nodes]
    apps: dict[int, Any] = {}
    states: dict[int, Any] = {}
    candidates: list[str] = []
    for size in sizes:
        started = time.perf_counter()
        states[size], candidates = synthetic_state(size)
        apps[size] = floor_routes(create_app(states[size]))
        print(f"in-process cache: {size} nodes built in {time.perf_counter() - started:.1f} s", flush=True)
    freeze_heap()
    rng = random.Random(1)
    calls = INPROCESS_CALLS // (4 if quick else 1)
    rows: list[dict[str, Any]] = []

    async def go() -> None:
        for shards in (1, 64):
            bodies = [
                orjson.dumps(
                    {"Pod": scheduled_pod(f"q{i}", rng.randrange(0, SHARDS - shards), shards), "Nodes": None, "NodeNames": candidates}
                )
                for i in range(8)
            ]
            fresh = [  # a shard set no call asked before: every per-wish table is cold
                orjson.dumps(
                    {"Pod": scheduled_pod(f"c{shards}-{i}", i * 11 % (SHARDS - shards), shards), "Nodes": None, "NodeNames": candidates}
                )
                for i in range(calls)
            ]
            for verb in ("filter", "prioritize", "prioritize+load", "prioritize+wish"):
                path = verb.split("+")[0]
                row_bodies = fresh if verb.endswith("+wish") else bodies
                sides = [(f"ext{size}", apps[size], f"/ext/{path}") for size in sizes] + [("floor", apps[NODES], f"/floor/{path}")]
                samples: dict[str, list[float]] = {side: [] for side, _app, _path in sides}
                for _side, app, route in sides:
                    for body in bodies:  # warm
                        await _asgi_call(app, route, body)
                for i in range(calls):
                    if verb.endswith("+load"):
                        for size in sizes:
                            states[size].record_assignment(NAMESPACE, f"load-{shards}-{i}", f"load-{shards}-{i}", rng.choice(candidates))
                    for side, app, route in sides[i % len(sides) :] + sides[: i % len(sides)]:  # each goes first in turn
                        started = time.perf_counter()
                        status = await _asgi_call(app, route, row_bodies[i % len(row_bodies)])
                        samples[side].append(time.perf_counter() - started)
                        if status != 200:
                            raise RuntimeError(f"in-process {route}: HTTP {status}")
                f = summary(samples["floor"])
                for size in sizes:
                    e = summary(samples[f"ext{size}"])
                    row: dict[str, Any] = {
                        "verb": verb,
                        "nodes": len(candidates),
                        "cached_nodes": size,
                        "shards": shards,
                        "extender": e,
                        "floor": f,
                        "load_1m": os.getloadavg()[0],
                    }
                    row["p50_ratio"] = e["p50_ms"] / f["p50_ms"]
                    if size != NODES:
                        base = summary(samples[f"ext{NODES}"])
                        row["p50_vs_5000"] = e["p50_ms"] / base["p50_ms"]
                        row["p99_vs_5000"] = e["p99_ms"] / base["p99_ms"]
                    rows.append(row)
                    versus = f" | x{row['p50_vs_5000']:.2f} p50, x{row['p99_vs_5000']:.2f} p99 vs 5000 cached" if size != NODES else ""
                    print(
                        f"in-process {verb:15} {len(candidates)} nodes {shards:2} shards {size:6} cached | "
                        f"ext median {e['p50_ms']:.3f} p99 {e['p99_ms']:.3f} ms | "
                        f"floor median {f['p50_ms']:.3f} p99 {f['p99_ms']:.3f} ms | "
                        f"x{row['p50_ratio']:.2f} p50 to the floor{versus} | load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )

    asyncio.run(go())
    return rows


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the 1,000,000-replica memory measurement")
    parser.add_argument(
        "--cached-nodes",
        type=int,
        default=None,
        metavar="N",
        help="also run the in-process rows with an N-node cache (e.g. 100000), side by side with 5,000",
    )
    parser.add_argument("--skip-http", action="store_true", help="only the in-process rows (and the memory measurement)")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="kbl-bench-extender-") as tmp:
        workdir = Path(tmp)
        rows = [] if args.skip_http else latency(args.quick, workdir)
        inproc = in_process(args.quick, args.cached_nodes)
        rss: dict[str, Any] | None = None
        if not args.skip_rss:
            snap = workdir / "rss.json"
            make_snapshot(snap, nodes=NODES, replicas_total=1_000_000, datasets=10)
            rss = run_child("benchmarks.extender", "--child-rss", str(snap))
            print(
                f"cache: {rss['nodes']} nodes, {rss['replicas']} replicas: "
                f"peak RSS {rss['peak_rss_mib']:.0f} MiB (load {rss['load_s']:.1f} s)"
            )
    load_after = os.getloadavg()
    result = {
        "latency": rows,
        "in_process": inproc,
        "rss": rss,
        "quick": args.quick,
        "wall_s": time.perf_counter() - started,
        "load_average": {"start": list(load_before), "end": list(load_after)},
    }
    print(f"total {result['wall_s']:.0f} s; load average at the end {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--child-serve":
        serve_child(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "--child-rss":
        rss_child(sys.argv[2])
