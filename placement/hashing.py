"""Rendezvous scores: a stable, seeded, vectorised hash of (shard, node) turned into a ranking.

Every shard ranks every node by the *weighted rendezvous key* (straw2-like exponential race)::

    u(s, j)   = (mix(shard_hash(seed, s) XOR node_hash(name_j)) >> 11 + 0.5) / 2**53   in (0, 1)
    key(s, j) = -ln(u(s, j)) / weight_j                                               (lower is better)

``key`` is an exponential variable with rate ``weight_j``, so node ``j`` ranks first for a fraction
``weight_j / sum(weight)`` of the shards, and changing one node's weight (or adding or removing a
node) changes only that node's keys: every other pair keeps its order. ``mix`` is the splitmix64
finaliser, ``node_hash`` the first 8 bytes of BLAKE2b of the node name and ``shard_hash`` a
splitmix64 of the seed and the shard index, so the ranking depends on names, indexes and the seed
only (never on input order, dict order or ``PYTHONHASHSEED``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO_53 = float(2**53)


def mix(x: U64) -> U64:
    """The splitmix64 finaliser applied element-wise (wrapping uint64 arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    out: U64 = x ^ (x >> np.uint64(31))
    return out


def node_hashes(names: Sequence[str]) -> U64:
    """A 64-bit hash per node name (BLAKE2b, stable across processes and platforms)."""
    return np.array([int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "little") for n in names], dtype=np.uint64)


def shard_hashes(seed: int, shards: npt.NDArray[np.int64]) -> U64:
    """A 64-bit hash per shard index for a given seed."""
    base = np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    salted = mix(base * _GOLDEN + np.uint64(0x632BE59BD9B4E019))
    return mix(shards.astype(np.uint64) * _GOLDEN + salted)


def keys(shard_hash: U64, node_hash: U64, weights: F64) -> F64:
    """Rendezvous keys ``(len(shard_hash), len(node_hash))``; lower ranks first.

    Parameters
    ----------
    shard_hash:
        From :func:`shard_hashes`, one per row.
    node_hash:
        From :func:`node_hashes`, one per column.
    weights:
        Positive capacity weight per column (any unit; only ratios matter).
    """
    bits = mix(shard_hash[:, None] ^ node_hash[None, :]) >> np.uint64(11)
    u = (bits.astype(np.float64) + 0.5) / _TWO_53
    out: F64 = -np.log(u) / weights[None, :]
    return out


def pair_keys(shard_hash: U64, node_hash: U64, weights: F64) -> F64:
    """Rendezvous keys of matching pairs (``shard_hash[i]`` with ``node_hash[i]``)."""
    bits = mix(shard_hash ^ node_hash) >> np.uint64(11)
    u = (bits.astype(np.float64) + 0.5) / _TWO_53
    out: F64 = -np.log(u) / weights
    return out


def ranked(shard_hash: U64, node_hash: U64, weights: F64, top: int, chunk_rows: int) -> tuple[I32, F64]:
    """Each row's ``top`` best nodes in rank order, and their keys.

    Computed ``chunk_rows`` rows at a time so the full score matrix never exists at once.

    Returns
    -------
    (candidates, candidate_keys):
        ``int32`` and ``float64`` arrays of shape ``(rows, min(top, nodes))``.
    """
    rows, n = len(shard_hash), len(node_hash)
    k = min(top, n)
    cand = np.empty((rows, k), dtype=np.int32)
    cand_keys = np.empty((rows, k), dtype=np.float64)
    for start in range(0, rows, chunk_rows):
        block = keys(shard_hash[start : start + chunk_rows], node_hash, weights)
        if k < n:
            part = np.argpartition(block, k - 1, axis=1)[:, :k]
            part_keys = np.take_along_axis(block, part, axis=1)
            order = np.argsort(part_keys, axis=1, kind="stable")
            idx = np.take_along_axis(part, order, axis=1)
        else:
            idx = np.argsort(block, axis=1, kind="stable")
        cand[start : start + len(block)] = idx
        cand_keys[start : start + len(block)] = np.take_along_axis(block, idx, axis=1)
    return cand, cand_keys
