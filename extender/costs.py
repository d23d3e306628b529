"""Cost and utilization vectors over every node id, derived from the cache and kept while valid.

A prioritize call at 5,000 offered nodes must not do per-node Python. :class:`CostTables`
computes, once per state version, the vectors :mod:`extender.scoring` defines over *all* node
ids, and a call then reads them at the offered ids:

* :meth:`CostTables.node_costs`: ``raw_costs`` of a wish's byte table, one vector per dataset and
  shard set (the byte tables themselves are cached by :class:`~topology.clusters.Cluster`);
* :meth:`CostTables.utilization`: ``utilization`` of every node after placing a pod of a given
  request, valid for one :attr:`~extender.state.ClusterState.load_version`;
* :meth:`CostTables.local_shards`: how many requested shards each node holds a piece of
  (:func:`extender.wishes.local_shards`), for required locality.

Returned arrays are read-only: callers share them.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from extender.scoring import effective_costs, raw_costs, utilization
from extender.state import ClusterState
from extender.wishes import Wish, local_shards
from topology.clusters import LevelBytes

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Per-node network-cost vectors remembered (one per dataset and shard set recently asked for).
COST_CACHE_SIZE = 32
#: Effective-cost vectors remembered (each keeps its cost and utilization vectors alive: at
#: 100,000 nodes 3 x 0.8 MB apiece).
EFFECTIVE_CACHE_SIZE = 8


class CostTables:
    """Vectors over all node ids derived from one :class:`~extender.state.ClusterState` (module docstring).

    Call under ``state.lock``.
    """

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self._costs: deque[tuple[FloatArray, FloatArray]] = deque(maxlen=COST_CACHE_SIZE)
        self._util: tuple[tuple[int, int, bytes], FloatArray] | None = None
        self._effective: deque[tuple[FloatArray, FloatArray, FloatArray]] = deque(maxlen=EFFECTIVE_CACHE_SIZE)
        self._local: deque[tuple[IntArray, tuple[int, ...] | None, IntArray]] = deque(maxlen=COST_CACHE_SIZE)

    def level_bytes(self, wish: Wish) -> LevelBytes:
        """The byte table of a usable wish (cached by the cluster per dataset and shard set)."""
        assert wish.key is not None
        return self.state.cluster.level_bytes(wish.key, wish.shards)

    def node_costs(self, wish: Wish) -> FloatArray:
        """Network cost of a usable wish on every node id (``raw_costs`` of its byte table)."""
        table = self.level_bytes(wish).table
        for cached_table, cost in self._costs:
            if cached_table is table:
                return cost
        cost = raw_costs(table, self.state.settings.costs)
        cost.flags.writeable = False
        self._costs.appendleft((table, cost))
        return cost

    def utilization(self, request: FloatArray) -> FloatArray:
        """Utilization of every node id after placing a pod of ``request``:
        ``max_k (bound_k + in-flight_k + request_k) / allocatable_k``; ``inf`` on absent nodes."""
        state = self.state
        state.expire()
        key = (state.load_version, state.cluster.version, request.tobytes())
        if self._util is not None and self._util[0] == key:
            return self._util[1]
        used, alloc = state.used_all()
        util = utilization(used, alloc, request)
        util.flags.writeable = False
        self._util = (key, util)
        return util

    def effective(self, wish: Wish, request: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``(effective cost, utilization)`` of every node id for a usable wish and a pod request:
        ``effective_costs`` of :meth:`node_costs` faded by :meth:`utilization` (same inputs, same array)."""
        cost = self.node_costs(wish)
        util = self.utilization(request)
        for cached_cost, cached_util, eff in self._effective:
            if cached_cost is cost and cached_util is util:
                return eff, util
        worst = wish.needed_bytes * self.state.settings.costs.remote
        eff = effective_costs(cost, worst, util, self.state.settings.hotspot_threshold)
        eff.flags.writeable = False
        self._effective.appendleft((cost, util, eff))
        return eff, util

    def local_shards(self, wish: Wish) -> IntArray:
        """Per node id: how many of the wish's requested shards it holds a piece of."""
        assert wish.key is not None
        pieces = self.state.cluster.global_pieces(wish.key)  # cached per dataset and node version
        for cached_pieces, shards, counts in self._local:
            if cached_pieces is pieces and shards == wish.shards:
                return counts
        chosen = pieces if wish.shards is None else pieces[np.asarray(wish.shards, dtype=np.int64)]
        counts = local_shards(chosen, self.state.id_count)
        counts.flags.writeable = False
        self._local.appendleft((pieces, wish.shards, counts))
        return counts
