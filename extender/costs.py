"""Cost and utilization vectors over every node id, derived from the cache and kept while valid.

A prioritize call at 5,000 offered nodes must not do per-node Python. :class:`CostTables`
computes, once per state version, the vectors :mod:`extender.scoring` defines over *all* node
ids, and a call then reads them at the offered ids:

* :meth:`CostTables.node_costs`: ``raw_costs`` of a wish's byte table, one vector per dataset and
  shard set (the byte tables themselves are cached by :class:`~topology.clusters.Cluster`);
* :meth:`CostTables.utilization`: ``utilization`` of every node after placing a pod of a given
  request, valid for one :attr:`~extender.state.ClusterState.load_version`;
* :meth:`CostTables.cost_at` / :meth:`CostTables.effective_at`: network and effective cost at
  *given* node ids only (the offered ones), from the cluster's per-domain sums, so a prioritize
  call after a load change, or for a shard set never asked before, is O(offered + requested
  pieces), not O(cached nodes); :meth:`CostTables.lowest_cost`: the cheapest node's cost, from
  the holders alone;
* :meth:`CostTables.cost_order`: node ids sorted by network cost, per cost vector, so the
  "better node not offered" check looks only at the nodes cheaper than the best offered one;
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
#: Effective costs at offered ids remembered (per offered list, cost vector, load and request).
OFFERED_CACHE_SIZE = 16
#: Effective-cost vectors remembered (each keeps its cost and utilization vectors alive: at
#: 100,000 nodes 3 x 0.8 MB apiece).
EFFECTIVE_CACHE_SIZE = 8


class CostTables:
    """Vectors over all node ids derived from one :class:`~extender.state.ClusterState` (module docstring).

    Call under ``state.lock``.
    """

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self._tables: dict[tuple[str | None, tuple[int, ...] | None, int, int], FloatArray] = {}
        self._costs: deque[tuple[FloatArray, FloatArray, float, float]] = deque(maxlen=COST_CACHE_SIZE)
        self._orders: deque[tuple[FloatArray, IntArray, FloatArray]] = deque(maxlen=COST_CACHE_SIZE)
        self._offered: deque[tuple[tuple[object, ...], IntArray, FloatArray, FloatArray]] = deque(maxlen=OFFERED_CACHE_SIZE)
        self._lowest: dict[tuple[str | None, tuple[int, ...] | None, int, int], float] = {}
        self._util: tuple[tuple[int, int, bytes], FloatArray] | None = None
        self._effective: deque[tuple[FloatArray, FloatArray, FloatArray]] = deque(maxlen=EFFECTIVE_CACHE_SIZE)
        self._local: deque[tuple[IntArray, tuple[int, ...] | None, IntArray]] = deque(maxlen=COST_CACHE_SIZE)

    def level_bytes(self, wish: Wish) -> LevelBytes:
        """The byte table of a usable wish (cached by the cluster per dataset and shard set)."""
        assert wish.key is not None
        return self.state.cluster.level_bytes(wish.key, wish.shards)

    def _table(self, wish: Wish) -> FloatArray:
        """The wish's byte table, remembered per dataset, shard set and state version: a hit costs
        a dict lookup, where asking the cluster builds a ``LevelBytes`` (an id range over all nodes)."""
        state = self.state
        key = (wish.key, wish.shards, state.cluster.version, state.data_version)
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) >= COST_CACHE_SIZE or any(k[2:] != key[2:] for k in self._tables):
                self._tables.clear()
            table = self._tables[key] = self.level_bytes(wish).table
        return table

    def node_costs(self, wish: Wish) -> FloatArray:
        """Network cost of a usable wish on every node id (``raw_costs`` of its byte table)."""
        return self._cost_entry(wish)[1]

    def cost_range(self, wish: Wish) -> tuple[float, float]:
        """``(lowest, highest)`` of :meth:`node_costs` (``(inf, -inf)`` with no node), kept with the vector."""
        _table, _cost, low, high = self._cost_entry(wish)
        return low, high

    def _cost_entry(self, wish: Wish) -> tuple[FloatArray, FloatArray, float, float]:
        table = self._table(wish)
        for entry in self._costs:
            if entry[0] is table:
                return entry
        cost = raw_costs(table, self.state.settings.costs)
        cost.flags.writeable = False
        entry = (table, cost, float(cost.min()) if cost.size else np.inf, float(cost.max()) if cost.size else -np.inf)
        self._costs.appendleft(entry)
        return entry

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

    def cost_order(self, wish: Wish) -> tuple[IntArray, FloatArray]:
        """``(ids, costs)``: every node id sorted by :meth:`node_costs` (stable), and those costs.

        Built once per cost vector (``O(n log n)``, kept as long as the vector), then a threshold
        is one binary search: the ids cheaper than it are a prefix.
        """
        cost = self.node_costs(wish)
        for cached_cost, order, ordered in self._orders:
            if cached_cost is cost:
                return order, ordered
        order = np.argsort(cost, kind="stable").astype(np.int64)
        ordered = cost[order]
        order.flags.writeable = False
        ordered.flags.writeable = False
        self._orders.appendleft((cost, order, ordered))
        return order, ordered

    def cost_at(self, wish: Wish, ids: IntArray) -> FloatArray:
        """Network cost of a usable wish at node ``ids`` (``-1``: unknown, given the all-remote
        cost): the same numbers as :meth:`node_costs` read at ``ids``, from the cluster's
        per-domain sums (:meth:`~topology.clusters.Cluster.level_bytes_at`), so a shard set
        never asked before costs O(requested pieces + len(ids)), not a table over every node."""
        assert wish.key is not None
        known = ids >= 0
        safe = ids if bool(known.all()) else np.where(known, ids, 0)
        cost = raw_costs(self.state.cluster.level_bytes_at(wish.key, wish.shards, safe), self.state.settings.costs)
        if not known.all():
            cost[~known] = wish.needed_bytes * self.state.settings.costs.remote
        return cost

    def lowest_cost(self, wish: Wish) -> float:
        """The lowest network cost of the wish over every node id, from its holders alone.

        With costs that never decrease with distance (:class:`~topology.localities.LocalityCosts`
        checks it), a holder in the smallest domain shared by a node and any holder reads every
        shard at least as near as that node, so the cheapest node is a holder; with no holder
        present every node reads everything remotely. O(requested pieces).
        """
        assert wish.key is not None
        state = self.state
        key = (wish.key, wish.shards, state.cluster.version, state.data_version)
        found = self._lowest.get(key)
        if found is None:
            if len(self._lowest) >= COST_CACHE_SIZE or any(k[2:] != key[2:] for k in self._lowest):
                self._lowest.clear()
            holders = state.cluster.level_sums(wish.key, wish.shards).holders
            remote = wish.needed_bytes * state.settings.costs.remote
            found = self._lowest[key] = float(self.cost_at(wish, holders).min()) if holders.size else remote
        return found

    def effective_at(self, wish: Wish, request: FloatArray, ids: IntArray) -> tuple[FloatArray, FloatArray]:
        """``(effective cost, utilization)`` at node ``ids`` only (``-1``: unknown, given the
        all-remote cost and utilization ``inf``): the same numbers as :meth:`effective` read at
        ``ids``, for O(len(ids)) work (:meth:`cost_at`), with no vector over every node.

        Remembered per ``ids`` array (the state hands out the same read-only array for the same
        offered list), dataset and shard set, state versions and request, so a pod's repeated
        call with nothing changed costs a lookup.
        """
        state = self.state
        state.expire()
        key = (id(ids), wish.key, wish.shards, state.cluster.version, state.data_version, state.load_version, request.tobytes())
        for cached_key, cached_ids, eff, util in self._offered:
            if cached_key == key and cached_ids is ids:
                return eff, util
        eff, util = self.faded(wish, request, ids, self.cost_at(wish, ids))
        if not ids.flags.writeable:  # only arrays nobody changes can key a cache
            self._offered.appendleft((key, ids, eff, util))
        return eff, util

    def faded(self, wish: Wish, request: FloatArray, ids: IntArray, cost: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``(effective cost, utilization)`` at ``ids`` given their network ``cost`` (unknown ids:
        the all-remote cost, utilization ``inf``); never remembered."""
        state = self.state
        known = ids >= 0
        used, alloc = state.load(ids)
        util = utilization(used, alloc, request)
        worst = wish.needed_bytes * state.settings.costs.remote
        eff = effective_costs(cost, worst, util, state.settings.hotspot_threshold)
        if not known.all():
            eff[~known] = worst
            util[~known] = np.inf
        eff.flags.writeable = False
        util.flags.writeable = False
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
