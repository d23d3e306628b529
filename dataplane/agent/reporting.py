"""The node's report: its NodeHoldings object, created once and then patched through status.

The agent is the only writer of its node's ``NodeHoldings`` (:mod:`topology.holdings`). The
first write creates the object with an ownerReference to the Node (so it goes with the node);
later writes are JSON merge patches of the ``status`` subresource. Writes are throttled to at
most one per ``report_min_interval_s`` and made whenever the content changed, plus a heartbeat
every ``heartbeat_s``. The status also carries a ``conditions`` list (``DiskFull``) beside the
contract's fields.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from dataplane.agent.hydrating import Hydrator
from kube.api import NODE_HOLDINGS, NODES, ApiError, ConflictError, KubeApi
from topology.holdings import DataSetHoldings, NodeHoldings
from topology.times import format_time

log = logging.getLogger(__name__)


def build_holdings(hydrator: Hydrator, endpoint: str) -> NodeHoldings:
    """What this node holds, hydrates and found corrupt, per DataSet."""
    datasets = {}
    for key, (state, ns, name) in hydrator.snapshot().items():
        ready: dict[str, set[int]] = {}
        hydrating: dict[str, set[int]] = {}
        corrupt: dict[str, set[int]] = {}
        for shard, piece in state.ready:
            ready.setdefault(piece, set()).add(shard)
        for shard, piece in state.hydrating:
            hydrating.setdefault(piece, set()).add(shard)
        for shard, piece in state.corrupt:
            corrupt.setdefault(piece, set()).add(shard)
        datasets[key] = DataSetHoldings(
            namespace=ns,
            name=name,
            uid=state.uid,
            ready={k: frozenset(v) for k, v in ready.items()},
            hydrating={k: frozenset(v) for k, v in hydrating.items()},
            corrupt={k: frozenset(v) for k, v in corrupt.items()},
            ready_bytes=sum(r.size for r in state.ready.values()),
        )
    capacity, free = hydrator.store.capacity()
    return NodeHoldings(node=hydrator.node, endpoint=endpoint, capacity_bytes=capacity, free_bytes=free, datasets=datasets)


class Reporter:
    """Writes the NodeHoldings of one node (module docstring)."""

    def __init__(self, api: KubeApi, hydrator: Hydrator, endpoint: str, *, min_interval_s: float = 1.0, heartbeat_s: float = 30.0) -> None:
        self.api = api
        self.hydrator = hydrator
        self.endpoint = endpoint
        self.min_interval_s = min_interval_s
        self.heartbeat_s = heartbeat_s
        self.created = False
        self.writes = 0
        self._last: dict[str, Any] | None = None
        self._last_at = 0.0
        self._lock = threading.Lock()  # the agent's loop (on change) and the heartbeat thread both write

    def status(self) -> dict[str, Any]:
        status = build_holdings(self.hydrator, self.endpoint).status()
        conditions = []
        if self.hydrator.disk_full:
            conditions.append({"type": "DiskFull", "status": "True", "reason": "NoSpace", "message": self.hydrator.last_error[:500]})
        status["conditions"] = conditions
        return status

    def maybe_write(self, *, force: bool = False) -> bool:
        """Write if the content changed (or the heartbeat is due) and the throttle allows."""
        with self._lock:
            return self._maybe_write(force)

    def _maybe_write(self, force: bool) -> bool:
        now = time.monotonic()
        if now - self._last_at < self.min_interval_s and not force:
            return False
        status = self.status()
        if not force and status == self._last and now - self._last_at < self.heartbeat_s:
            return False
        status["heartbeatTime"] = format_time(time.time())
        try:
            self._write(status)
        except ApiError as exc:
            log.warning("writing NodeHoldings %s: %s", self.hydrator.node, exc)
            return False
        status.pop("heartbeatTime")
        self._last = status
        self._last_at = now
        self.writes += 1
        return True

    def _write(self, status: dict[str, Any]) -> None:
        node = self.hydrator.node
        if not self.created:
            if self.api.get(NODE_HOLDINGS, node) is None:
                owner = self.api.get(NODES, node)
                obj = NodeHoldings(node=node).to_object(node_uid=str(((owner or {}).get("metadata") or {}).get("uid") or ""))
                obj["status"] = status
                with contextlib.suppress(ConflictError):  # another start of this agent created it
                    self.api.create(NODE_HOLDINGS, obj)
            self.created = True
        self.api.patch_status(NODE_HOLDINGS, node, {"status": status})
