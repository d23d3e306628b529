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

In-process: the same app built in the parent and called as an ASGI application with prebuilt
requests (no socket, no HTTP parsing), 5,000 candidates in ``NodeNames`` form, many iterations:
the Python work per request, far less sensitive to the other jobs on a shared machine than the
HTTP figures. The load average is recorded at the start and the end of the run.

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




# ----------------------------------------------------------------------- server
def build_app(snapshot_path: str) -> Any:
    """The extender under /ext plus the floor under /floor, in one FastAPI app."""
    from extender.app import create_app
    from extender.settings import ExtenderSettings
    from extender.state import ClusterState
    from topology.snapshots import load_snapshot

    settings = ExtenderSettings(url_prefix="/ext")
    app = create_app(ClusterState.from_snapshot(load_snapshot(snapshot_path), settings), settings)

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
                    pods = [bench_pod(f"p{i}", rng.randrange(0, SHARDS - shards), shards) for i in range(8)]
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
                            }
                            rows.append(row)
                            print(
                                f"{verb:10} {mode:5} {n:5} nodes {shards:2} shards {len(bodies[0]) / 1e6:7.2f} MB | "
                                f"ext p50 {e['p50_ms']:8.2f} p99 {e['p99_ms']:8.2f} ms {e['throughput_rps']:7.1f}/s | "
                                f"floor p50 {f['p50_ms']:8.2f} p99 {f['p99_ms']:8.2f} ms | "
                                f"x{row['p50_ratio']:.2f} p50, x{row['p99_ratio']:.2f} p99",
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


def in_process(quick: bool, workdir: Path) -> list[dict[str, Any]]:
    """Per-call time of the handlers (ASGI app called directly) at 5,000 NodeNames candidates."""
    snap = workdir / "latency.json"
    app = build_app(str(snap))
    names = [o["metadata"]["name"] for o in json.loads(snap.read_text())["items"] if o.get("kind") == "Node"]
    rng = random.Random(1)
    candidates = rng.sample(names, len(names))
    calls = INPROCESS_CALLS // (4 if quick else 1)
    rows: list[dict[str, Any]] = []

    async def go() -> None:
        for shards in (1, 64):
            bodies = [
                orjson.dumps({"Pod": bench_pod(f"q{i}", rng.randrange(0, SHARDS - shards), shards), "Nodes": None, "NodeNames": candidates})
                for i in range(8)
            ]
            for verb in ("filter", "prioritize"):
                samples: dict[str, list[float]] = {"ext": [], "floor": []}
                for side in ("ext", "floor"):
                    for body in bodies:  # warm
                        await _asgi_call(app, f"/{side}/{verb}", body)
                for i in range(calls):
                    for side in ("ext", "floor"):
                        started = time.perf_counter()
                        status = await _asgi_call(app, f"/{side}/{verb}", bodies[i % len(bodies)])
                        samples[side].append(time.perf_counter() - started)
                        if status != 200:
                            raise RuntimeError(f"in-process /{side}/{verb}: HTTP {status}")
                e, f = summary(samples["ext"]), summary(samples["floor"])
                rows.append({"verb": verb, "nodes": len(candidates), "shards": shards, "extender": e, "floor": f})
                print(
                    f"in-process {verb:10} {len(candidates)} nodes {shards:2} shards | "
                    f"ext median {e['p50_ms']:.3f} p99 {e['p99_ms']:.3f} ms | floor median {f['p50_ms']:.3f} p99 {f['p99_ms']:.3f} ms",
                    flush=True,
                )

    asyncio.run(go())
    return rows


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the 1,000,000-replica memory measurement")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="kbl-bench-extender-") as tmp:
        workdir = Path(tmp)
        rows = latency(args.quick, workdir)
        inproc = in_process(args.quick, workdir)
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
