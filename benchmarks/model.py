"""Benchmark: building the topology model from a snapshot of a big cluster.

5,000 nodes (copies of the real EKS node object) in 3 zones x 50 racks, and datasets totalling
1,000,000 shard replicas with their placement in ``status.placement``. The snapshot is written
to a JSON file first; a child process then loads it (``load_snapshot``) and builds the
:class:`~topology.clusters.Cluster` (graph and hot-path index), reporting the time of each step
and its peak RSS. Target (issue 2): under 10 s and under 1 GiB.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from benchmarks.measuring import peak_rss_mib, run_child, write_json
from topology.datasets import Replicas, dataset_object
from topology.examples import make_node, make_pod, node_template


def make_snapshot(path: Path, *, nodes: int, replicas_total: int, datasets: int, seed: int = 0) -> None:
    """Write a snapshot of ``nodes`` nodes and ``replicas_total`` 3x-replicated shard pieces.

    Nodes are copies of the real EKS node object (image list included) in 3 zones of racks of
    about 34 hosts; each shard's 3 replicas are on 3 distinct random nodes. The file is written
    object by object, so a 100,000-node snapshot is never one tree in this process either.
    """
    racks = max(1, nodes // (3 * 34))
    hosts = -(-nodes // (3 * racks))
    template = node_template()
    rng = np.random.default_rng(seed)
    names: list[str] = []
    with path.open("wb") as out:
        out.write(b'{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":[')
        for z, r, h in itertools.product(range(3), range(racks), range(hosts)):
            if len(names) == nodes:
                break
            name = f"node-{z}-{r}-{h}"
            zone = f"us-east-1{'abc'[z]}"
            obj = make_node(name, region="us-east-1", zone=zone, rack=f"rack-{r}", storage_b=2 * 10**12, template=template)
            out.write(b"," if names else b"")
            out.write(orjson.dumps(obj))
            names.append(name)
        shards_total = replicas_total // 3
        per = shards_total // datasets
        for d in range(datasets):
            count = per if d < datasets - 1 else shards_total - per * (datasets - 1)
            ds = dataset_object(f"ds-{d}", namespace="bench", shards=count, shard_size="1Gi", redundancy=Replicas(3), failure_domain="host")
            ds["status"] = {"placement": {"nodes": names, "shards": distinct_triples(rng, count, nodes)}}
            out.write(b",")
            out.write(orjson.dumps(ds, option=orjson.OPT_SERIALIZE_NUMPY))
        out.write(b"]}")


def distinct_triples(rng: np.random.Generator, count: int, n: int) -> npt.NDArray[np.int32]:
    """``count`` rows of 3 distinct node indexes in ``range(n)`` (n >= 3), uniformly at random."""
    first = rng.integers(0, n, count)
    step1 = rng.integers(1, n, count)
    step2 = rng.integers(1, n - 1, count)
    step2 = step2 + (step2 >= step1)
    return np.stack([first, (first + step1) % n, (first + step2) % n], axis=1).astype(np.int32)


def bench_pod(name: str, first: int, count: int, *, namespace: str = "bench", dataset: str = "ds-0") -> dict[str, Any]:
    """A pending pod reading shards ``first .. first + count - 1`` of a benchmark DataSet."""
    shards = f"{first}-{first + count - 1}" if count > 1 else str(first)
    return make_pod(name, namespace=namespace, dataset=dataset, shards=shards, scheduler=None, image="busybox", created=None)


def child(path: str) -> None:
    """Measured in a fresh process: load the snapshot, build the cluster."""
    from topology.snapshots import load_snapshot

    t0 = time.perf_counter()
    snap = load_snapshot(path)
    t1 = time.perf_counter()
    cluster = snap.cluster()
    t2 = time.perf_counter()
    for key in cluster.datasets:  # the hot-path index, as the extender warms it
        cluster.global_pieces(key)
    cluster.domain_arrays()
    t3 = time.perf_counter()
    replicas = sum(int((d.placement.pieces >= 0).sum()) for d in snap.datasets if d.placement is not None)
    print(
        json.dumps(
            {
                "nodes": len(cluster.nodes),
                "replicas": replicas,
                "graph_vertices": cluster.graph.number_of_nodes(),
                "graph_edges": cluster.graph.number_of_edges(),
                "load_s": t1 - t0,
                "graph_s": t2 - t1,
                "index_s": t3 - t2,
                "total_s": t3 - t0,
                "peak_rss_mib": peak_rss_mib(),
                "rejected": len(snap.rejected),
            }
        )
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--replicas", type=int, default=1_000_000, help="shard replicas in total (3 per shard)")
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--json", dest="json_out", metavar="OUT", help="write the figures as JSON")


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.json"
        make_snapshot(path, nodes=args.nodes, replicas_total=args.replicas, datasets=args.datasets)
        size_mib = path.stat().st_size / 2**20
        result = run_child("benchmarks.model", str(path))
    result["snapshot_mib"] = size_mib
    print(
        f"model: {result['nodes']:,} nodes, {result['replicas']:,} replicas, snapshot {size_mib:,.0f} MiB\n"
        f"  load {result['load_s']:.2f} s + graph {result['graph_s']:.2f} s + index {result['index_s']:.2f} s"
        f" = {result['total_s']:.2f} s (target < 10 s); peak RSS {result['peak_rss_mib']:,.0f} MiB (target < 1024 MiB)\n"
        f"  graph: {result['graph_vertices']:,} vertices, {result['graph_edges']:,} edges"
    )
    write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    child(sys.argv[1])
