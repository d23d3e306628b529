"""Trees: a layout's failure-domain hierarchy, and weighted rendezvous descents through it.

The exact planners rank every node for every shard (``shards x nodes`` rendezvous keys: 3.3e10
for a million pieces on 100,000 nodes). A :class:`Tree` ranks level by level instead, as CRUSH's
straw2 buckets do: zone, then rack, then host, each child drawn by the weighted rendezvous key
``-ln(u(row, child)) / weight(child)`` among its siblings, where a child's weight is the sum of
the weights below it. A bucket with more than :data:`FANOUT` children is split into about
``sqrt(children)`` virtual buckets (children assigned by a hash of their id), so one descent costs
``O(sum of bucket sizes on its path)``, about a hundred keys on 100,000 nodes, never ``O(nodes)``.

A descent (:func:`Tree.descend`) draws one node per row, all rows at once (numpy, one pass per
level), and takes two kinds of masks into account on the way down:

- *room*: a weight per node (zero: the node takes nothing now: full, or not a destination), summed
  up the tree every time it changes, so a subtree without room is never entered;
- *the rule*: at the coarsest tree level whose buckets each lie inside one domain of a rule (the
  failure domain with its ``cap``, each spreading level of :attr:`Layout.spread`, and distinct
  nodes at the leaves), the buckets where the row's shard already holds ``cap`` pieces are
  masked, so the node drawn keeps the rule whenever any node with room does.

Since the minimum of exponential keys with rates ``w_i`` is exponential with rate ``sum w_i``,
the first descent of a row picks a node with probability proportional to its weight, as the flat
ranking does; the rows differ from the exact ranking, not the distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from placement import hashing
from placement.layouts import LEVELS, Layout

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U64 = npt.NDArray[np.uint64]
B = npt.NDArray[np.bool_]

#: Buckets with more children than this are split into about ``sqrt(children)`` virtual buckets.
FANOUT = 16
#: Elements of one ``rows x bucket`` key matrix computed at once (bounds memory).
CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True, slots=True, eq=False)
class Level:
    """One level of the tree: each node's bucket (``code``), each bucket's parent bucket, the
    children of each parent padded with ``-1``, a hash per bucket and the rules checked here
    (each a domain id per node, a domain id per bucket and the cap)."""

    code: I64
    parent: I64
    children: I64
    hash: U64
    rules: tuple[tuple[I64, I64, int], ...]


def _split(parent_code: I64, code: I64, salt: int) -> I64:
    """Virtual buckets between ``parent_code`` and ``code`` where a parent has more than
    :data:`FANOUT` children: about ``sqrt(children)`` buckets of equal size, children dealt to
    them in the order of a hash of their id."""
    groups = int(code.max(initial=-1)) + 1
    first = np.unique(code, return_index=True)[1]
    parent_of = parent_code[first]
    siblings = np.bincount(parent_of, minlength=int(parent_of.max(initial=-1)) + 1)
    n = siblings[parent_of]
    split = np.where(n > FANOUT, np.ceil(np.sqrt(n)).astype(np.int64), 1)
    mixed = hashing.mix(np.arange(groups, dtype=np.uint64) ^ np.uint64((salt * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF))
    order = np.lexsort((mixed, parent_of))
    rank = np.empty(groups, dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(siblings)[:-1]))
    rank[order] = np.arange(groups) - starts[parent_of[order]]
    bucket = rank * split // n
    pair = parent_of * (int(split.max(initial=1)) + 1) + bucket
    virtual_of_group = np.unique(pair, return_inverse=True)[1].astype(np.int64).ravel()
    out: I64 = virtual_of_group[code]
    return out


def _codes(layout: Layout) -> list[I64]:
    """Bucket codes per node, coarsest first, the leaves last (``arange(nodes)``)."""
    n = layout.size
    chain = [layout.levels[level] for level in reversed(LEVELS) if level in layout.levels and level != "host"]
    out: list[I64] = []
    code: I64 = np.zeros(n, dtype=np.int64)
    for salt, ids in enumerate([*chain, np.arange(n, dtype=np.int64)]):
        if salt == len(chain):
            finer = ids  # the leaves: a leaf's bucket id is its node index
        else:
            pair = code * (int(ids.max(initial=0)) + 1) + ids
            finer = np.unique(pair, return_inverse=True)[1].astype(np.int64).ravel()
        first = np.unique(finer, return_index=True)[1]
        if int(np.bincount(code[first]).max(initial=0)) > FANOUT:
            out.append(_split(code, finer, salt + 101))
        out.append(finer)
        code = finer
    return out


def _nested(code: I64, ids: I64) -> bool:
    """Every bucket of ``code`` lies inside one domain of ``ids``."""
    groups = int(code.max(initial=-1)) + 1
    pairs = len(np.unique(code * (int(ids.max(initial=0)) + 1) + ids))
    return pairs == groups


class Tree:
    """The hierarchy of one :class:`Layout` (see the module docstring)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        codes = _codes(layout)
        rules: list[tuple[I64, int]] = [(layout.domains, layout.cap), *((r.ids, r.cap) for r in layout.spread)]
        placed = [False] * len(rules)
        levels: list[Level] = []
        parent_code: I64 = np.zeros(layout.size, dtype=np.int64)
        for depth, code in enumerate(codes):
            groups = int(code.max(initial=-1)) + 1
            first = np.unique(code, return_index=True)[1]
            parent = parent_code[first]
            order = np.lexsort((np.arange(groups), parent))
            counts = np.bincount(parent, minlength=int(parent.max(initial=-1)) + 1)
            width = int(counts.max(initial=1))
            children = np.full((len(counts), width), -1, dtype=np.int64)
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            slot = np.arange(groups) - starts[parent[order]]
            children[parent[order], slot] = order
            here: list[tuple[I64, I64, int]] = []
            for i, (ids, cap) in enumerate(rules):
                if not placed[i] and _nested(code, ids):
                    here.append((ids, np.append(ids[first], -1), cap))
                    placed[i] = True
            salt = np.uint64(((depth + 1) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF)
            hashes = np.append(hashing.mix(np.arange(groups, dtype=np.uint64) ^ salt), np.uint64(0))  # last: the -1 pads
            levels.append(Level(code, parent, children, hashes, tuple(here)))
            parent_code = code
        self.levels = tuple(levels)

    def weights(self, room: F64) -> list[F64]:
        """Per level, each bucket's weight: the ``room`` weights of the nodes below it (and a
        last ``0``, the weight of the ``-1`` pads)."""
        return [np.append(np.bincount(level.code, weights=room, minlength=len(level.parent)), 0.0) for level in self.levels]

    def descend(self, held: npt.NDArray[np.integer], row_hash: U64, room: F64, sums: list[F64] | None = None) -> tuple[I64, F64]:
        """One node per row of ``held`` (the nodes a shard holds, ``-1`` = none), drawn by
        weighted rendezvous level by level among the buckets with room that keep the rule for
        that shard (distinct nodes, every rule's cap).

        Returns the node per row (``-1`` when no node with room keeps the rule) and the key of
        the last choice (lower: the row prefers its node more; ``inf`` for ``-1``).
        """
        sums = self.weights(room) if sums is None else sums
        n = len(held)
        node = np.full(n, -1, dtype=np.int64)
        key_out = np.full(n, np.inf, dtype=np.float64)
        if n == 0:
            return node, key_out
        held = held.astype(np.int64)
        present = held >= 0
        safe = np.maximum(held, 0)
        last = len(self.levels) - 1
        step = max(1, CHUNK_ELEMENTS // max(1, *(lv.children.shape[1] for lv in self.levels)))
        for a in range(0, n, step):
            b = min(n, a + step)
            at = np.zeros(b - a, dtype=np.int64)
            alive = np.ones(b - a, dtype=bool)
            h, pr, sf = row_hash[a:b], present[a:b], safe[a:b]
            key = np.full(b - a, np.inf)
            pick = np.arange(b - a)
            for depth, level in enumerate(self.levels):
                cand = level.children[at]  # -1 pads read the last entry of the sums (0) and hashes
                w = sums[depth][cand]
                ok = w > 0
                for dom_of_node, dom_of_bucket, cap in level.rules:
                    cand_dom = dom_of_bucket[cand]
                    held_dom = dom_of_node[sf]
                    count = np.zeros(cand.shape, dtype=np.int16)
                    for q in range(held.shape[1]):
                        count += pr[:, q : q + 1] & (held_dom[:, q : q + 1] == cand_dom)
                    ok &= count < cap
                if depth == last:
                    for q in range(held.shape[1]):
                        ok &= ~(pr[:, q : q + 1] & (cand == sf[:, q : q + 1]))
                # u in (0, 1) from the top 24 bits (float32 halves the cost of the log); the top
                # value rounds to 1.0 in float32, whose log 0 over a weight 0 made a NaN that argmin took
                bits = (hashing.mix(h[:, None] ^ level.hash[cand]) >> np.uint64(40)).astype(np.float32)
                u = np.minimum((bits + np.float32(0.5)) * np.float32(2.0**-24), np.float32(1.0 - 2.0**-24))
                with np.errstate(divide="ignore"):
                    k = -np.log(u) / np.where(ok, w, 0.0).astype(np.float32)
                j = np.argmin(k, axis=1)
                key = k[pick, j].astype(np.float64)
                alive &= np.isfinite(key)
                at = np.where(alive, cand[pick, j], 0)
            node[a:b] = np.where(alive, at, -1)
            key_out[a:b] = np.where(alive, key, np.inf)
        return node, key_out


def try_hashes(shard_hash: U64, tries: I64) -> U64:
    """The row hash of a shard's ``tries``-th descent (0: the first)."""
    out: U64 = hashing.mix(shard_hash ^ (tries.astype(np.uint64) * np.uint64(0x94D049BB133111EB)))
    return out


def use_tree(layout: Layout, shards: int, limit: float | None, forced: bool | None) -> bool:
    """Whether the planners descend a :class:`Tree` rather than rank every node (``forced``
    decides when set; else when ``shards x nodes`` exceeds ``limit``)."""
    if forced is not None:
        return forced
    return limit is not None and float(shards) * float(layout.size) > limit and math.isfinite(limit)
