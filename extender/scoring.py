"""Pure scoring: from bytes read at each locality level to kube-scheduler's 0..10 priorities.

Three steps, each a pure function on numpy arrays, tested on their own:

1. :func:`raw_costs` -- the network cost of running the pod on each node:
   ``cost(n) = sum over levels L of bytes_L(n) * c_L`` where ``bytes_L(n)`` are the bytes of the
   requested shards the pod would read at level L (node, rack, zone, region, remote) from
   :meth:`topology.clusters.Cluster.level_bytes`, and ``c_L`` the per-level costs of
   :class:`~topology.localities.LocalityCosts`. Lower is better; ``worst = needed * c_remote``.
2. :func:`effective_costs` -- hotspot avoidance. In the spirit of the in-tree ImageLocality
   plugin, which scales an image's score down by how little it has spread so that pods do not
   all heat the few nodes holding it, a node's locality *advantage* ``worst - cost(n)`` fades as
   the node fills up: ``eff(n) = cost(n) + (worst - cost(n)) * fade(u(n))`` with
   ``fade(u) = clip((u - t) / (1 - t), 0, 1)``, ``t`` the hotspot threshold and ``u(n)`` the
   node's utilization *after* placing the pod: the largest of cpu, memory and pod count of
   ``(bound requests + in-flight assignments + this pod) / allocatable``. Below ``t`` locality
   rules untouched; a full node is scored as if it held nothing, so the next pods reading the
   same shards go to the other replica holders and to their rack-mates instead of piling on.
3. :func:`normalize` -- min-max into integers with square-root spacing:
   ``score(n) = round(10 * (1 - sqrt((eff(n) - lo) / (hi - lo))))`` with ``lo``/``hi`` the
   smallest/largest effective cost among the candidates, so the best candidate gets 10 and the
   worst 0. kube-scheduler accepts only the 11 integers 0..10, and the choice is made among the
   cheapest candidates; a linear scale spends the levels evenly up to the worst candidate (which
   reads everything across zones, 16-64x a local byte), so node-local and rack-local readers often
   land on one level and the default plugins' load spread decides between them. The square root
   puts level boundaries at ``x = (1 - (s - 0.5) / 10) ** 2`` of the range: 10 covers the best
   0.25%, 9 up to 2.25%, 5 up to 30%. Order is kept (cheaper never scores lower). When all are
   equal (``hi - lo <= 1e-9 * max(1, |hi|)``) every node gets 0: the extender has no preference
   and adds nothing. Never outside 0..10.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from topology.localities import LocalityCosts

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MIN_SCORE = 0
MAX_SCORE = 10
#: Relative tolerance under which effective costs count as equal.
EQUAL_TOLERANCE = 1e-9


def raw_costs(level_table: FloatArray, costs: LocalityCosts) -> FloatArray:
    """Network cost per node.

    Parameters
    ----------
    level_table:
        Shape ``(nodes, 5)``: bytes read at node, rack, zone, region and remote level.
    costs:
        Cost of one byte at each level.

    Returns
    -------
    FloatArray
        ``level_table @ [c_node, c_rack, c_zone, c_region, c_remote]`` (cost units x bytes).
    """
    # Column by column, left to right: no BLAS call (whose threads stall on a busy machine: a
    # 100,000 x 5 product took 6 ms where these five passes take a fraction of one).
    weights = costs.as_tuple()
    if level_table.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    out = np.asarray(level_table[:, 0] * weights[0], dtype=np.float64)
    for column in range(1, len(weights)):
        out += level_table[:, column] * weights[column]
    return out


def utilization(used: FloatArray, allocatable: FloatArray, request: FloatArray) -> FloatArray:
    """Utilization per node after placing a pod: ``max_k (used_k + request_k) / allocatable_k``.

    Parameters
    ----------
    used, allocatable:
        Shape ``(nodes, k)`` in the same units per column (millicores, bytes, pods).
    request:
        Shape ``(k,)``: the pod's requests.

    Returns
    -------
    FloatArray
        Shape ``(nodes,)``; a resource requested on a node with none allocatable gives ``inf``.
    """
    demand = used + request
    if demand.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = demand / allocatable
    none = ~(allocatable > 0)
    if none.any():  # nothing allocatable: any demand does not fit, none is free
        ratio[none] = np.where(demand[none] > 0, np.inf, 0.0)
    # Column by column: numpy's max over a short inner axis is several times slower.
    out = np.array(ratio[:, 0], dtype=np.float64)
    for column in range(1, ratio.shape[1]):
        np.maximum(out, ratio[:, column], out=out)
    return out


def fade(util: FloatArray, threshold: float) -> FloatArray:
    """How much of a node's locality advantage is lost at utilization ``util`` (0..1).

    ``clip((u - t) / (1 - t), 0, 1)``; with ``t = 1`` it is a step: 0 up to full, 1 beyond.
    """
    if threshold >= 1.0:
        return np.where(util > 1.0, 1.0, 0.0)
    return np.asarray(np.clip((util - threshold) / (1.0 - threshold), 0.0, 1.0), dtype=np.float64)


def effective_costs(cost: FloatArray, worst: float, util: FloatArray, threshold: float) -> FloatArray:
    """``cost + (worst - cost) * fade(util)``: locality that fades on hot nodes (module docstring)."""
    return np.asarray(cost + (worst - cost) * fade(util, threshold), dtype=np.float64)


def normalize(eff: FloatArray) -> IntArray:
    """Effective costs into integer priorities 0..10, lowest cost best; all equal gives all 0.

    ``round(10 * (1 - sqrt((eff - lo) / (hi - lo))))`` (module docstring).

    >>> normalize(np.array([0.0, 0.01, 0.25, 1.0])).tolist()
    [10, 9, 5, 0]
    >>> normalize(np.array([3.0, 3.0])).tolist()
    [0, 0]
    """
    if eff.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo = float(eff.min())
    hi = float(eff.max())
    if hi - lo <= EQUAL_TOLERANCE * max(1.0, abs(hi)):
        return np.zeros(eff.shape[0], dtype=np.int64)
    scaled = np.floor(MAX_SCORE * (1.0 - np.sqrt(np.clip((eff - lo) / (hi - lo), 0.0, 1.0))) + 0.5)
    return np.asarray(np.clip(scaled, MIN_SCORE, MAX_SCORE), dtype=np.int64)
