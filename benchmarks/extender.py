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

Memory: a fresh child loads a snapshot of 5,000 nodes and 1,000,000 shard replicas into a
:class:`~extender.state.ClusterState`, answers one prioritize, and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
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
from benchmarks.model import make_snapshot

NODES = 5000
SHARDS = 4096
NAMESPACE = "bench"
DATASET = "ds-0"


def bench_pod(name: str, first: int, count: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "annotations": {"kbl.io/dataset": DATASET, "kbl.io/shards": f"{first}-{first + count - 1}" if count > 1 else str(first)},
        },
        "spec": {"containers": [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
        "status": {"phase": "Pending"},
    }


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

    from extender.serving import ServerOptions, config

    app = build_app(snapshot_path)
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
    pod["metadata"]["annotations"]["kbl.io/dataset"] = "ds-0"
    app = create_app(state)

    async def go() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            response = await client.post("/prioritize", content=orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": names}))
            return response.status_code

    status = asyncio.run(go())
    print(json.dumps({"nodes": len(names), "replicas": replicas, "load_s": t1 - t0, "status": status, "peak_rss_mib": peak_rss_mib()}))


# ----------------------------------------------------------------------- client
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
                            count = 60 if quick else 300
                        else:
                            items = [objects[c] for c in candidates]
                            bodies = [
                                orjson.dumps({"Pod": p, "Nodes": {"metadata": {}, "items": items}, "NodeNames": None}) for p in pods[:2]
                            ]
                            count = {100: 100, 1000: 30, 5000: 8}[n] // (4 if quick else 1) or 2
                        for verb in ("filter", "prioritize"):
                            measure(client, f"/ext/{verb}", bodies, min(len(bodies) * 2, count))  # warm: byte tables, connection
                            measure(client, f"/floor/{verb}", bodies, min(len(bodies), count))
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


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the 1,000,000-replica memory measurement")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kbl-bench-extender-") as tmp:
        workdir = Path(tmp)
        rows = latency(args.quick, workdir)
        rss: dict[str, Any] | None = None
        if not args.skip_rss:
            snap = workdir / "rss.json"
            make_snapshot(snap, nodes=NODES, replicas_total=1_000_000, datasets=10)
            rss = run_child("benchmarks.extender", "--child-rss", str(snap))
            print(
                f"cache: {rss['nodes']} nodes, {rss['replicas']} replicas: "
                f"peak RSS {rss['peak_rss_mib']:.0f} MiB (load {rss['load_s']:.1f} s)"
            )
    result = {"latency": rows, "rss": rss, "quick": args.quick, "wall_s": time.perf_counter() - started}
    print(f"total {result['wall_s']:.0f} s")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--child-serve":
        serve_child(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "--child-rss":
        rss_child(sys.argv[2])
