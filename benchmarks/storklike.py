"""A Stork-like tier extender: the closest peer's locality policy, served over HTTP for comparison.

Stork (libopenstorage/stork) scores a node for each volume a pod uses by the best tier at which
the node sees one of the volume's replicas, **node 100, rack 50, zone 25, region 10**, sums those
per volume, and gives nodes with no data a default of 10. Here a *volume* is a shard the pod
reads (``kbl.io/shards`` of ``kbl.io/dataset``) and a replica is any piece of it::

    raw(n) = sum over shards s of max over pieces p of s of tier(level(n, node(p)))
    raw(n) = 10 if it would be 0

**Stork's bug, and our deliberate clamp.** Stork returns ``raw`` as the extender score. A pod
reading 8 volumes can score 800 where the protocol's maximum is 10, and kube-scheduler multiplies
without clamping (``score x weight x 10``), so the built-in plugins are silently outweighed. The
comparison here is with a Stork-like policy that *speaks the protocol*: the raw sum is scaled by
the best possible raw sum (``100 x shards``) into 0..10 and clamped::

    score(n) = min(10, round(10 * raw(n) / (100 * shards)))

Filter passes every offered node (Stork filters to storage-driver nodes; every node here is one).
Both ``nodeCacheCapable`` request forms are accepted; replies use the form of the request.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

from topology import labels
from topology.clusters import Cluster
from topology.errors import KblError
from topology.localities import Level
from topology.shards import parse_shards

#: Stork's tier scores by locality level, and its default for nodes without data.
TIER_SCORES = {Level.NODE: 100, Level.RACK: 50, Level.ZONE: 25, Level.REGION: 10, Level.REMOTE: 0}
DEFAULT_SCORE = 10


def _names(args: dict[str, Any]) -> list[str]:
    names = args.get("NodeNames")
    if names is not None:
        return [str(n) for n in names]
    nodes = args.get("Nodes") or {}
    return [str((item.get("metadata") or {}).get("name")) for item in nodes.get("items") or []]


def pod_shards(cluster: Cluster, pod: dict[str, Any]) -> tuple[str, list[int]] | None:
    """The dataset key and shard indexes a pod reads, or ``None`` if it reads no dataset.

    Raises
    ------
    KblError
        If the pod names a dataset the cluster does not know or shards it does not have.
    """
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    dataset = annotations.get(labels.POD_DATASET)
    if not dataset:
        return None
    key = f"{meta.get('namespace') or 'default'}/{dataset}"
    found = cluster.datasets.get(key)
    if found is None:
        raise KblError(f"unknown dataset {key}")
    text = annotations.get(labels.POD_SHARDS)
    return key, list(parse_shards(text, found.spec.shards)) if text else list(range(found.spec.shards))


def raw_scores(cluster: Cluster, key: str, shards: list[int], names: list[str]) -> list[int]:
    """Stork's raw per-node sums for a pod reading ``shards`` of ``key`` (module docstring)."""
    pieces = cluster.global_pieces(key)[np.asarray(shards, dtype=np.int64)]  # shards x width, -1 missing
    rack, zone, region, _present = cluster.domain_arrays()
    valid = pieces >= 0
    safe = np.where(valid, pieces, 0)
    out = []
    for nid in cluster.node_ids(names).tolist():
        if nid < 0:
            out.append(0)
            continue
        tier = np.select(
            [safe == nid, rack[safe] == rack[nid], zone[safe] == zone[nid], region[safe] == region[nid]],
            [TIER_SCORES[Level.NODE], TIER_SCORES[Level.RACK], TIER_SCORES[Level.ZONE], TIER_SCORES[Level.REGION]],
            0,
        )
        out.append(int(np.where(valid, tier, 0).max(axis=1).sum()))
    return out


def scaled_scores(raw: list[int], shards: int) -> list[int]:
    """Raw sums scaled into the protocol's 0..10 and clamped (the fix for Stork's overflow)."""
    best = max(1, 100 * shards)
    return [min(10, max(0, round(10 * (r or DEFAULT_SCORE) / best))) for r in raw]


def create_storklike_app(cluster: Cluster) -> FastAPI:
    """The Stork-like extender as a FastAPI app: ``POST /filter`` and ``POST /prioritize``."""
    app = FastAPI(title="stork-like tier extender")

    @app.post("/filter")
    async def filter_(request: Request) -> Response:
        args = orjson.loads(await request.body())
        if args.get("NodeNames") is not None:
            reply: dict[str, Any] = {"Nodes": None, "NodeNames": args["NodeNames"], "FailedNodes": {}, "FailedAndUnresolvableNodes": {}}
        else:
            reply = {"Nodes": args.get("Nodes"), "NodeNames": None, "FailedNodes": {}, "FailedAndUnresolvableNodes": {}}
        return Response(orjson.dumps(reply), media_type="application/json")

    @app.post("/prioritize")
    async def prioritize(request: Request) -> Response:
        args = orjson.loads(await request.body())
        names = _names(args)
        try:
            wanted = pod_shards(cluster, args.get("Pod") or {})
        except KblError as exc:
            return Response(orjson.dumps({"error": str(exc)}), status_code=400, media_type="application/json")
        scores = [0] * len(names) if wanted is None else scaled_scores(raw_scores(cluster, wanted[0], wanted[1], names), len(wanted[1]))
        return Response(orjson.dumps([{"Host": n, "Score": s} for n, s in zip(names, scores, strict=True)]), media_type="application/json")

    return app
