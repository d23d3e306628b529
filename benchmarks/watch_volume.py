"""What the agents read from the API server at 5,000 nodes: every holdings write vs only what they copy (issue 24, item 4).

``python -m benchmarks.watch_volume [NODES] [SHARDS]`` (default 5,000 nodes and 50,000 shards of
a 3x DataSet, about 30 pieces per node). A model of the watch streams in which the agent's own
code decides what it reads (:func:`dataplane.agent.hydrating.candidates`) and the real placement
engine decides who receives what:

- **watching** (the agents before this change: an informer on every node's NodeHoldings): every
  holdings write reaches every agent. In steady state each agent writes its heartbeat every
  ``heartbeat_s`` (30 s), so each agent receives ``N * 60 / 30`` objects a minute; after one node
  loss, every receiver's reports (hydrating, then ready: two writes) reach all of them too.
- **reading on demand** (now): an agent with nothing to hydrate reads nothing. After one node's
  loss, ``place(previous=...)`` gives its pieces new holders; each receiver reads, once per copy,
  the holdings of that piece's candidates (the placement's other holders), each answer kept a
  second; every other agent reads nothing.

Prints one JSON object: objects read per agent per minute, steady state and in the minute after
one node loss (max and mean over agents), for both.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from benchmarks.placement_scale import node_objects
from dataplane.agent.hydrating import candidates
from placement import place
from topology.datasets import DataSet, Replicas, dataset_object
from topology.holdings import piece_key
from topology.nodes import Node

HEARTBEAT_S = 30.0


def main(nodes_n: int = 5000, shards: int = 50_000) -> dict[str, Any]:
    nodes = [Node.from_object(o) for o in node_objects(nodes_n)]
    obj = dataset_object("reads", namespace="ml", shards=shards, shard_size=1 << 30, redundancy=Replicas(3), failure_domain="host")
    obj["metadata"]["uid"] = "uid-reads"
    spec = DataSet.from_object(obj).spec
    before = place(nodes, spec).placement
    victim = before.nodes[int(before.pieces[0, 0])]
    after = place([n for n in nodes if n.name != victim], spec, previous=before).placement
    dataset = DataSet(spec, placement=after)
    # Who receives what: slots whose holder changed.
    old = np.asarray([before.nodes[i] for i in before.pieces.ravel()], dtype=object).reshape(before.pieces.shape)
    new = np.asarray([after.nodes[i] for i in after.pieces.ravel()], dtype=object).reshape(after.pieces.shape)
    received: dict[str, list[int]] = {}
    for s, p in zip(*np.nonzero(old != new), strict=True):
        received.setdefault(str(new[s, p]), []).append(int(s))
    reads = {
        node: len({c for s in shards_of for c in candidates(dataset, s, piece_key(spec, 0), node)}) for node, shards_of in received.items()
    }
    watching_steady = nodes_n * 60.0 / HEARTBEAT_S
    watching_loss = watching_steady + 2 * len(received)  # every receiver's two reports reach every agent
    return {
        "nodes": nodes_n,
        "pieces": int(after.pieces.size),
        "pieces_per_node": after.pieces.size / nodes_n,
        "lost_node": victim,
        "receivers": len(received),
        "pieces_received_max": max(len(v) for v in received.values()),
        "watching": {"steady_per_agent_per_min": watching_steady, "after_loss_per_agent_per_min": watching_loss},
        "on_demand": {
            "steady_per_agent_per_min": 0.0,
            "after_loss_max_per_agent": max(reads.values()),
            "after_loss_mean_over_receivers": sum(reads.values()) / len(reads),
            "after_loss_mean_over_all_agents": sum(reads.values()) / (nodes_n - 1),
        },
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(main(*args), indent=1))
