"""A greedy oracle extender: the best a per-pod, online extender could do with exact costs.

It knows each pod's exact network cost on every offered node (the same
:meth:`~topology.clusters.Cluster.level_bytes` accounting the benchmark measures with) and gives
the cheapest offered nodes 10 and the others 0; configured with a weight large enough to override
the built-in plugins (those only break ties among the cheapest). No extender that decides one pod
at a time, on arrival, without knowing the future can do better on every pod; the gap between this
oracle and the min-cost-flow bound is the price of deciding online, which no scoring knob closes.
"""

from __future__ import annotations

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

from benchmarks.storklike import pod_shards
from topology.clusters import Cluster
from topology.errors import KblError
from topology.localities import LocalityCosts

#: Relative tolerance under which two costs count as equal.
TIE_TOLERANCE = 1e-9


def create_oracle_app(cluster: Cluster, costs: LocalityCosts | None = None) -> FastAPI:
    """The oracle as a FastAPI app: ``/filter`` passes every node, ``/prioritize`` scores 10 / 0."""
    price = costs or LocalityCosts()
    app = FastAPI(title="greedy oracle extender")

    @app.post("/filter")
    async def filter_(request: Request) -> Response:
        args = orjson.loads(await request.body())
        reply = {"Nodes": args.get("Nodes"), "NodeNames": args.get("NodeNames"), "FailedNodes": {}, "FailedAndUnresolvableNodes": {}}
        return Response(orjson.dumps(reply), media_type="application/json")

    @app.post("/prioritize")
    async def prioritize(request: Request) -> Response:
        args = orjson.loads(await request.body())
        names = args.get("NodeNames")
        if names is None:
            names = [item["metadata"]["name"] for item in (args.get("Nodes") or {}).get("items") or []]
        try:
            wanted = pod_shards(cluster, args.get("Pod") or {})
        except KblError as exc:
            return Response(orjson.dumps({"error": str(exc)}), status_code=400, media_type="application/json")
        if wanted is None:
            return Response(orjson.dumps([{"Host": n, "Score": 0} for n in names]), media_type="application/json")
        cost = cluster.level_bytes(wanted[0], wanted[1]).cost(price)[cluster.node_ids(names)]
        best = float(np.min(cost)) if cost.size else 0.0
        limit = best + TIE_TOLERANCE * max(1.0, abs(best))
        scores = [{"Host": n, "Score": 10 if c <= limit else 0} for n, c in zip(names, cost.tolist(), strict=True)]
        return Response(orjson.dumps(scores), media_type="application/json")

    return app
