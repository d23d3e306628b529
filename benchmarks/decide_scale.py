"""Benchmark: the reconciler's ``decide()`` on one DataSet of 10^6 pieces (issue 24, item 3).

``python -m benchmarks.decide_scale [NODES] [PIECES]`` (default 5,000 nodes, 1,000,002 pieces:
333,334 shards x 3, host rule, 1 GiB shards). Measures, in CPU seconds of this process (numpy
runs one thread), :func:`dataplane.reconciler.planning.decide` as it is (nothing in
``dataplane/`` changes here):

- *first*: a new DataSet, no target yet (``decide`` calls ``place()``);
- *steady*: the target in place and every piece reported ready by its node's agent;
- *steady, memo*: the same again with the pass's :class:`PlanMemo` and cluster token;
- *one node lost*: the same cluster with one node NotReady past its grace period (repairs).

Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.measuring import peak_rss_mib
from benchmarks.placement_scale import node_objects
from dataplane.reconciler.planning import ClusterView, PlanMemo, cluster_token, decide
from topology.datasets import DataSet, Replicas, dataset_object
from topology.holdings import DataSetHoldings, NodeHoldings, piece_key
from topology.nodes import Node


def cpu(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def main(nodes_n: int = 5000, pieces: int = 1_000_000) -> dict[str, Any]:
    nodes = {n.name: n for n in (Node.from_object(o) for o in node_objects(nodes_n))}
    shards = -(-pieces // 3)
    raw = dataset_object("d", namespace="bench", shards=shards, shard_size="1Gi", redundancy=Replicas(3))
    raw["metadata"]["uid"] = "uid-d"
    empty = ClusterView(nodes)
    first, first_s = cpu(lambda: decide(DataSet.from_object(raw), empty, None))
    target = first.placement
    assert target is not None
    raw["status"] = {"placement": target.to_status()}
    spec = DataSet.from_object(raw).spec
    holdings: dict[str, NodeHoldings] = {}
    t0 = time.perf_counter()
    for j, name in enumerate(target.nodes):
        rows, cols = np.nonzero(target.pieces == j)
        ready: dict[str, set[int]] = {}
        for s, p in zip(rows.tolist(), cols.tolist(), strict=True):
            ready.setdefault(piece_key(spec, p), set()).add(s)
        entry = DataSetHoldings("bench", "d", "uid-d", {k: frozenset(v) for k, v in ready.items()})
        holdings[name] = NodeHoldings(name, datasets={"bench/d": entry})
    build_s = time.perf_counter() - t0
    dataset = DataSet.from_object(raw)
    status = dict(raw["status"])
    view = ClusterView(nodes, frozenset(), holdings)
    steady, steady_s = cpu(lambda: decide(dataset, view, status))
    memo, token = PlanMemo(), cluster_token(view)
    decide(dataset, view, status, memo=memo, token=token)
    _, memo_s = cpu(lambda: decide(dataset, view, status, memo=memo, token=token))
    victim = target.nodes[len(target.nodes) // 2]
    lost_view = ClusterView(nodes, frozenset({victim}), holdings)
    lost, lost_s = cpu(lambda: decide(dataset, lost_view, status))
    return {
        "nodes": nodes_n, "pieces": 3 * shards, "holdings_build_wall_s": build_s,
        "first_s": first_s, "steady_s": steady_s, "steady_memo_s": memo_s, "lost_one_node_s": lost_s,
        "steady_ready": int(steady.shard_ready.sum()), "lost_placed": lost.placement is not None,
        "peak_rss_mib": peak_rss_mib(),
    }


if __name__ == "__main__":
    print(json.dumps(main(*(int(a) for a in sys.argv[1:3]))))
