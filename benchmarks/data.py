"""``kbl bench data``: the node agent's data plane measured next to its floors, as ratios.

Agents run in this process (threads, own roots, loopback ports, :func:`dataplane.agent.start_agents`)
over the in-memory Kubernetes API; the DataSet placements are written by the benchmark. Every
figure stands beside a floor measured in the same run on the same bytes:

- **hydration from the source** (a ``path`` source) vs ``shutil.copyfile`` of the same files;
- **hydration from a peer** (source moved away) vs a plain authenticated GET of the same shards
  from that peer's read API;
- **erasure encode** through the agents (shard read, encoded, one fragment kept per node) and
  **rebuild** of a lost fragment from ``k`` peers, vs pyeclib's own encode/reconstruct speed on
  the same bytes in memory;
- **repair after a node loss** (replicas): time until every lost piece is back, vs the bound
  *bytes lost / aggregate hydration bandwidth* (the per-agent ``--bandwidth-mbps`` times the
  number of agents receiving).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from dataplane.agent import Agent, start_agents
from dataplane.agent.coding import Codec
from kube.api import DATASETS, NODES
from kube.memory import MemoryApi
from topology import labels

NS = "bench"
TOKEN = "bench-token"  # noqa: S105 - a loopback test token


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    parser.add_argument("--shards", type=int, default=8, help="shards per DataSet (default %(default)s)")
    parser.add_argument("--shard-mib", type=float, default=8.0, help="MiB per shard (default %(default)s)")
    parser.add_argument("--bandwidth-mbps", type=float, default=400.0, help="per-agent hydration bandwidth for the repair run")
    parser.add_argument("--quick", action="store_true", help="4 shards of 2 MiB")


def _node(name: str, zone: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "uid": f"uid-{name}", "labels": {labels.ZONE: zone}}}


def _dataset(  # noqa: PLR0917 - one DataSet object, field by field
    name: str, shards: int, size: int, red: dict[str, Any], nodes: list[str], rows: list[list[int]], src: Path
) -> dict[str, Any]:
    return {
        "apiVersion": labels.API_VERSION,
        "kind": "DataSet",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
        "spec": {"shards": shards, "shardSize": str(size), "redundancy": red, "source": {"path": str(src)}, "shardKey": "{index}.bin"},
        "status": {"placement": {"nodes": nodes, "shards": rows}},
    }


def _put(api: MemoryApi, obj: dict[str, Any]) -> None:
    if api.get(DATASETS, obj["metadata"]["name"], namespace=NS) is None:
        api.create(DATASETS, obj, namespace=NS)
    else:
        api.replace(DATASETS, obj["metadata"]["name"], obj, namespace=NS)


def _ready(agent: Agent, ds: str) -> int:
    with agent.hydrator.lock:
        state = agent.hydrator.local.get(f"{NS}/{ds}")
        return len(state.ready) if state is not None else 0


def _wait(check: Callable[[], bool], timeout_s: float = 600.0) -> float:
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError("the agents did not converge")
        time.sleep(0.005)
    return time.perf_counter() - start


def measure(shards: int, shard_bytes: int, bandwidth_mbps: float, work: Path) -> dict[str, Any]:
    import os

    src = work / "source"
    src.mkdir()
    blobs = {i: os.urandom(shard_bytes) for i in range(shards)}
    for i, data in blobs.items():
        (src / f"{i}.bin").write_bytes(data)
    total = shards * shard_bytes
    mb = total / 1e6
    api = MemoryApi()
    names = [f"n{i}" for i in range(8)]
    for n in names:
        api.put(NODES, _node(n, "a"))
    out: dict[str, Any] = {"shards": shards, "shard_bytes": shard_bytes}

    # Floors: copyfile of the same files.
    floor_dir = work / "floor"
    floor_dir.mkdir()
    t = time.perf_counter()
    for i in range(shards):
        shutil.copyfile(src / f"{i}.bin", floor_dir / f"{i}.bin")
    copy_s = time.perf_counter() - t
    settings = {"report_min_interval_s": 0.2, "resync_s": 0.05, "scrub_interval_s": 0}
    agents = start_agents(api, names[:6], work / "nodes", token=TOKEN, settings=settings)
    by = {a.settings.node: a for a in agents}
    try:
        # Hydration from the source, one agent.
        _put(api, _dataset("rep", shards, shard_bytes, {"replicas": 1}, ["n0"], [[0]] * shards, src))
        source_s = _wait(lambda: _ready(by["n0"], "rep") == shards)
        # Plain GET floor from n0's read API, then hydration of n1 from n0 (source moved away).
        headers = {"Authorization": f"Bearer {TOKEN}"}
        parallel = by["n1"].settings.parallel_copies  # the floor gets the agent's own parallelism
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(parallel) as pool:

            def fetch(i: int) -> None:  # like `curl -o`: stream the shard into a file
                url = f"{by['n0'].endpoint}/v1/namespaces/{NS}/datasets/rep/shards/{i}"
                with client.stream("GET", url, headers=headers) as r, open(floor_dir / f"get-{i}", "wb") as f:
                    for chunk in r.iter_bytes():
                        f.write(chunk)
                assert (floor_dir / f"get-{i}").stat().st_size == shard_bytes

            t = time.perf_counter()
            list(pool.map(fetch, range(shards)))
            get_s = time.perf_counter() - t
        src.rename(work / "away")
        _put(api, _dataset("rep", shards, shard_bytes, {"replicas": 2}, ["n0", "n1"], [[0, 1]] * shards, work / "away"))
        peer_s = _wait(lambda: _ready(by["n1"], "rep") == shards)
        (work / "away").rename(src)
        out["hydration"] = {
            "source_MBps": mb / source_s,
            "copyfile_MBps": mb / copy_s,
            "source_vs_copyfile": (mb / source_s) / (mb / copy_s),
            "peer_MBps": mb / peer_s,
            "plain_get_MBps": mb / get_s,
            "peer_vs_plain_get": (mb / peer_s) / (mb / get_s),
        }

        # Erasure 4+2: the library alone, then through the agents (6 nodes).
        codec = Codec(4, 2)
        t = time.perf_counter()
        fragments = [codec.encode(blobs[i]) for i in range(shards)]
        lib_encode_s = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(shards):
            codec.rebuild(fragments[i][1:5], 0)
        lib_rebuild_s = time.perf_counter() - t
        ec_nodes = names[:6]
        _put(api, _dataset("ec", shards, shard_bytes, {"erasure": {"data": 4, "parity": 2}}, ec_nodes, [list(range(6))] * shards, src))
        encode_s = _wait(lambda: all(_ready(by[n], "ec") == shards for n in ec_nodes))
        # Every agent reads and encodes every shard (it keeps its own fragment): shard bytes per agent per second.
        by["n0"].stop()
        extra = start_agents(api, ["n6"], work / "nodes", token=TOKEN, settings=settings)[0]
        agents.append(extra)
        by["n6"] = extra
        src.rename(work / "away")
        _put(
            api,
            _dataset(
                "ec",
                shards,
                shard_bytes,
                {"erasure": {"data": 4, "parity": 2}},
                ["n6", *ec_nodes[1:]],
                [list(range(6))] * shards,
                work / "away",
            ),
        )
        rebuild_s = _wait(lambda: _ready(by["n6"], "ec") == shards)
        (work / "away").rename(src)
        out["erasure"] = {
            "backend": codec.backend,
            "library_encode_MBps": mb / lib_encode_s,
            "agent_encode_MBps_per_agent": mb / encode_s,
            "agent_encode_MBps_all_agents": 6 * mb / encode_s,
            "agent_vs_library_encode": (mb / encode_s) / (mb / lib_encode_s),
            "library_rebuild_MBps": mb / lib_rebuild_s,
            "agent_rebuild_MBps": mb / rebuild_s,
            "agent_vs_library_rebuild": (mb / rebuild_s) / (mb / lib_rebuild_s),
        }
    finally:
        for a in agents:
            a.stop()

    # Repair after a node loss, bandwidth-bounded: 2 replicas over 4 nodes, one node lost, its
    # slots re-placed round-robin over the 3 survivors that do not hold that shard.
    rate = bandwidth_mbps * 1e6 / 8
    api2 = MemoryApi()
    for n in names[:4]:
        api2.put(NODES, _node(n, "a"))
    limited = {**settings, "bandwidth_bytes_per_s": rate, "burst_bytes": 1 << 20}  # no burst: the bound holds from the first byte
    agents = start_agents(api2, names[:4], work / "repair", token=TOKEN, settings=limited)
    by = {a.settings.node: a for a in agents}
    try:
        rows = [[i % 4, (i + 1) % 4] for i in range(shards)]
        _put(api2, _dataset("r2", shards, shard_bytes, {"replicas": 2}, names[:4], rows, src))
        _wait(lambda: sum(_ready(by[n], "r2") for n in names[:4]) == 2 * shards)
        by["n0"].stop()
        lost = [i for i, row in enumerate(rows) if 0 in row]
        load = {1: 0, 2: 0, 3: 0}  # new pieces per survivor: spread them evenly
        new_rows = []
        for row in rows:
            if 0 in row:
                keep = next(x for x in row if x != 0)
                pick = min((x for x in load if x != keep), key=lambda x: (load[x], x))
                load[pick] += 1
                new_rows.append([keep, pick])
            else:
                new_rows.append(row)
        receivers = {x for x, n in load.items() if n}
        src.rename(work / "away")
        _put(api2, _dataset("r2", shards, shard_bytes, {"replicas": 2}, names[:4], new_rows, work / "away"))
        repair_s = _wait(lambda: all(_ready(by[names[r]], "r2") == sum(1 for row in new_rows if r in row) for r in (1, 2, 3)))
        lost_bytes = len(lost) * shard_bytes
        bound_s = lost_bytes / (len(receivers) * rate)
        out["repair"] = {
            "lost_bytes": lost_bytes,
            "receivers": len(receivers),
            "bandwidth_MBps_per_agent": rate / 1e6,
            "repair_s": repair_s,
            "bound_s": bound_s,
            "repair_vs_bound": repair_s / bound_s,
        }
    finally:
        for a in agents:
            a.stop()
    return out


def run(args: argparse.Namespace) -> int:
    shards, mib = (4, 2.0) if args.quick else (args.shards, args.shard_mib)
    with tempfile.TemporaryDirectory(prefix="kbl-bench-data-") as tmp:
        figures = measure(shards, int(mib * 1024 * 1024), args.bandwidth_mbps, Path(tmp))
    h, e, r = figures["hydration"], figures["erasure"], figures["repair"]
    print(f"data plane, {shards} shards x {mib:g} MiB, agents in one process on loopback")
    print(
        f"  hydration from source {h['source_MBps']:8.1f} MB/s  vs copyfile   {h['copyfile_MBps']:8.1f} MB/s  "
        f"ratio {h['source_vs_copyfile']:.2f}"
    )
    print(
        f"  hydration from peer   {h['peer_MBps']:8.1f} MB/s  vs plain GET  {h['plain_get_MBps']:8.1f} MB/s  "
        f"ratio {h['peer_vs_plain_get']:.2f}"
    )
    print(
        f"  erasure 4+2 ({e['backend']}): encode via agents {e['agent_encode_MBps_per_agent']:.1f} MB/s per agent "
        f"({e['agent_encode_MBps_all_agents']:.1f} MB/s over the 6) vs library {e['library_encode_MBps']:.1f} MB/s on one core  "
        f"ratio {e['agent_vs_library_encode']:.2f}"
    )
    print(
        f"  rebuild of a lost fragment via an agent {e['agent_rebuild_MBps']:.1f} MB/s vs library {e['library_rebuild_MBps']:.1f} MB/s  "
        f"ratio {e['agent_vs_library_rebuild']:.2f}"
    )
    print(
        f"  repair after a node loss: {r['lost_bytes'] / 1e6:.1f} MB over {r['receivers']} receivers "
        f"at {r['bandwidth_MBps_per_agent']:.0f} MB/s each: "
        f"{r['repair_s']:.2f} s vs bound {r['bound_s']:.2f} s  ratio {r['repair_vs_bound']:.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0
