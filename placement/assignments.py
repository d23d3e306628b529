"""Assignments: the array algorithms behind every planner (fill, invariant repair, balancing).

All three work in place on a ``pieces`` array (``shards x width`` indexes into
:attr:`Layout.names <placement.layouts.Layout.names>`, ``-1`` = missing) and a ``loads`` vector
(bytes per node):

- :func:`drop_violations` unsets pieces that break the failure-domain rule (a second piece on
  one node, more than ``cap`` pieces in one domain), keeping the lower piece indexes.
- :func:`fill` gives every missing piece a node by *bounded-load weighted rendezvous*: each
  piece takes the best-ranked node (:mod:`placement.hashing`) that keeps the rule and whose load
  is under ``target * (1 + fill_slack)``; when a node gets more proposals than room it accepts
  those that rank it best (lowest key) and is full for the rest, which try their next node.
  Slots are filled in piece order, all shards at once, so a fresh placement is the straw2-like
  constrained rendezvous wherever no node is full.
- :func:`balance` moves pieces from nodes above ``target * (1 + tol)`` (or above target, when
  only under-loaded nodes are out of band) to nodes below ``target * (1 - tol)`` (or below
  target), never breaking the rule, preferring the pieces that rank their node worst and the
  destinations that rank the piece best, until every node is in band, no move is possible or
  the move budget is spent. Pieces whose shard is over a spread cap in their domain (a repair on
  a smaller cluster could not spread it) are moved first, so the moves a balance must make anyway
  bring the spread above the failure domain back. Amounts are the out-of-band excess only, so the moved data is
  within one piece per node of the minimum that must move.

Pieces keep their index through all of it (an erasure piece that stays keeps its stripe slot).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from placement import hashing
from placement.layouts import Layout
from placement.settings import PlacementSettings
from placement.trees import Tree, try_hashes

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

#: How far past its band's edges (relative to the target) a load still counts as inside: two
#: :data:`placement.stability.MARGIN`, so whatever :func:`~placement.stability.keeps` accepts as
#: on an edge (its goals agree with the layout's to a few ulps), the balancer leaves alone.
EDGE = 2e-9


def loads_of(layout: Layout, pieces: I32) -> F64:
    """Bytes held by each node of ``layout``."""
    rows, _ = np.nonzero(pieces >= 0)
    placed = pieces[pieces >= 0]
    out: F64 = np.bincount(placed, weights=layout.piece_bytes[rows], minlength=layout.size).astype(np.float64)
    return out


def _piece_domains(layout: Layout, pieces: I32) -> I64:
    """Failure-domain id per piece (``-1`` for a missing piece)."""
    dom = np.where(pieces >= 0, layout.domains[np.maximum(pieces, 0)], -1)
    out: I64 = dom.astype(np.int64)
    return out


def drop_violations(layout: Layout, pieces: I32) -> B:
    """Unset pieces that break the rule (kept: lower piece indexes). Returns the dropped mask."""
    width = pieces.shape[1]
    dom = _piece_domains(layout, pieces)
    dropped = np.zeros(pieces.shape, dtype=bool)
    for q in range(width):
        here = pieces[:, q] >= 0
        same_node = np.zeros(len(pieces), dtype=bool)
        same_dom = np.zeros(len(pieces), dtype=np.int64)
        for r in range(q):
            kept = pieces[:, r] >= 0
            same_node |= kept & (pieces[:, r] == pieces[:, q])
            same_dom += kept & (dom[:, r] == dom[:, q])
        bad = here & (same_node | (same_dom >= layout.cap))
        dropped[:, q] = bad
        pieces[bad, q] = -1
        dom[bad, q] = -1
    return dropped


def _feasible(layout: Layout, pieces: I32, rows: I64, cand: I32, *, spread: bool = True) -> B:
    """Candidate nodes (``len(rows) x k``) that keep the rule (and the spreading) for the given shards."""
    ok = layout.eligible[cand].copy()
    rules = [(layout.domains, layout.cap)]
    if spread:
        rules.extend((r.ids, r.cap) for r in layout.spread)
    held_all = pieces[rows]
    present = held_all >= 0
    for q in range(pieces.shape[1]):
        ok &= ~(present[:, q : q + 1] & (cand == held_all[:, q : q + 1]))
    safe_held = np.maximum(held_all, 0)
    for ids, cap in rules:
        cand_dom = ids[cand]
        held_dom = ids[safe_held]
        count = np.zeros(cand.shape, dtype=np.int64)
        for q in range(pieces.shape[1]):
            count += present[:, q : q + 1] & (cand_dom == held_dom[:, q : q + 1])
        ok &= count < cap
    return ok


def _first_ok(layout: Layout, pieces: I32, rows: I64, cand: I32, full: B, *, window: int = 8) -> tuple[I64, B]:
    """Per row, the first candidate column that keeps the rule and is not full (and whether any).

    Looks at the first ``window`` columns first (almost every row finds one there), then at all
    columns for the rest.
    """
    head = cand[:, :window]
    ok = _feasible(layout, pieces, rows, head) & ~full[head]
    first = np.argmax(ok, axis=1).astype(np.int64)
    has = ok[np.arange(len(rows)), first]
    if cand.shape[1] > window and not has.all():
        rest = np.flatnonzero(~has)
        ok_all = _feasible(layout, pieces, rows[rest], cand[rest]) & ~full[cand[rest]]
        first[rest] = np.argmax(ok_all, axis=1)
        has[rest] = ok_all[np.arange(len(rest)), first[rest]]
    return first, has


def fill(
    layout: Layout, pieces: I32, loads: F64, *, seed: int, settings: PlacementSettings, rows: I64 | None = None, tree: Tree | None = None
) -> int:
    """Give every missing piece a node (bounded-load rendezvous); returns pieces left unplaced.

    ``rows`` limits the fill to those shards (default: every shard with a missing piece).
    With a ``tree`` each piece descends it (:class:`~placement.trees.Tree`, hierarchical
    rendezvous through the nodes with room) instead of ranking every node.

    A piece stays unplaced only when no eligible node can take it without breaking the rule
    (possible in repairs on a shrunken cluster, never when :func:`build_layout` accepted it).
    """
    need_rows = np.flatnonzero((pieces < 0).any(axis=1))
    if rows is not None:
        need_rows = np.intersect1d(need_rows, rows)
    if len(need_rows) == 0 or layout.size == 0:
        return int((pieces[need_rows] < 0).sum())
    shard_hash = hashing.shard_hashes(seed, need_rows.astype(np.int64))
    caps = layout.targets * (1.0 + settings.fill_slack)
    if settings.fill_spread is not None and (pieces >= 0).any():  # a repair: spread what is copied at once
        missing = float((layout.piece_bytes[need_rows] * (pieces[need_rows] < 0).sum(axis=1)).sum())
        receivers = max(1, int(layout.eligible.sum()))
        quota = np.maximum(settings.fill_spread * missing / receivers, layout.piece_bytes[need_rows].max())
        caps = np.minimum(caps, loads + quota)
    if tree is not None:
        return _fill_tree(layout, tree, pieces, loads, caps=caps, need_rows=need_rows, shard_hash=shard_hash, seed=seed)
    cand, cand_keys = hashing.ranked(shard_hash, layout.node_hash, layout.weights, settings.candidates, settings.chunk_rows)
    local_of = np.full(len(pieces), -1, dtype=np.int64)
    local_of[need_rows] = np.arange(len(need_rows))
    leftovers: list[tuple[int, int]] = []
    for p in range(pieces.shape[1]):
        act = need_rows[pieces[need_rows, p] < 0]
        while len(act):
            full = loads >= caps
            loc = local_of[act]
            sub = cand[loc]
            first, has = _first_ok(layout, pieces, act, sub, full)
            leftovers.extend((int(s), p) for s in act[~has])
            act, loc, first = act[has], loc[has], first[has]
            if not len(act):
                break
            node = sub[has][np.arange(len(act)), first]
            key = cand_keys[loc, first]
            size = layout.piece_bytes[act]
            accepted = _accept(layout, loads, caps, act=act, node=node, key=key)
            pieces[act[accepted], p] = node[accepted].astype(np.int32)
            np.add.at(loads, node[accepted], size[accepted])
            rejected_nodes = np.unique(node[~accepted])
            loads[rejected_nodes] = np.maximum(loads[rejected_nodes], caps[rejected_nodes])  # mark full
            act = act[~accepted]
        # loads of rejected nodes were bumped to mark them full: recompute the truth.
        loads[:] = loads_of(layout, pieces)
    unplaced = 0
    for s, p in sorted(leftovers):
        if not _place_one(layout, pieces, loads, shard=s, piece=p, seed=seed):
            unplaced += 1
    return unplaced


def _accept(layout: Layout, loads: F64, caps: F64, *, act: I64, node: I64, key: F64) -> B:
    """Which proposals ``act -> node`` the nodes accept: each node takes them in key order (then
    shard order) while its load before the piece is under its cap."""
    size = layout.piece_bytes[act]
    order = np.lexsort((act, key, node))
    node_o, size_o = node[order], size[order]
    cum = np.cumsum(size_o)
    starts = np.searchsorted(node_o, node_o, side="left")
    before = cum - size_o - np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    accepted = np.zeros(len(act), dtype=bool)
    accepted[order[before < (caps - loads)[node_o]]] = True
    return accepted


def _fill_tree(
    layout: Layout, tree: Tree, pieces: I32, loads: F64, *, caps: F64, need_rows: I64, shard_hash: hashing.U64, seed: int
) -> int:
    """:func:`fill` by descents of ``tree``: each round every missing piece of the slot draws a
    node among those under their cap that keep the rule and the spreading, the nodes accept in
    key order up to their cap, the others draw again (a new try, a new hash) in the next round.
    Pieces no node with room can take (the spreading cannot be kept) go to :func:`_place_one`."""
    tries = np.zeros(len(pieces), dtype=np.int64)
    hash_of = np.zeros(len(pieces), dtype=np.uint64)
    hash_of[need_rows] = shard_hash
    leftovers: list[tuple[int, int]] = []
    for p in range(pieces.shape[1]):
        act = need_rows[pieces[need_rows, p] < 0]
        while len(act):
            room = np.where(layout.eligible & (loads < caps), caps - loads, 0.0)  # what each node may still take
            node, key = tree.descend(pieces[act], try_hashes(hash_of[act], tries[act]), room)
            lost = node < 0
            leftovers.extend((int(s), p) for s in act[lost])
            act, node, key = act[~lost], node[~lost], key[~lost]
            if not len(act):
                break
            accepted = _accept(layout, loads, caps, act=act, node=node, key=key)
            pieces[act[accepted], p] = node[accepted].astype(np.int32)
            np.add.at(loads, node[accepted], layout.piece_bytes[act[accepted]])
            tries[act[~accepted]] += 1
            act = act[~accepted]
    unplaced = 0
    for s, p in sorted(leftovers):
        if not _place_one(layout, pieces, loads, shard=s, piece=p, seed=seed):
            unplaced += 1
    return unplaced


def _place_one(layout: Layout, pieces: I32, loads: F64, *, shard: int, piece: int, seed: int) -> bool:
    """Fallback for one piece: the rule-keeping node with the lowest load/target, then best key."""
    everyone = np.arange(layout.size, dtype=np.int32)[None, :]
    row = np.array([shard], dtype=np.int64)
    ok = _feasible(layout, pieces, row, everyone)[0]
    if not ok.any():  # spreading is a preference: drop it before giving up
        ok = _feasible(layout, pieces, row, everyone, spread=False)[0]
    if not ok.any():
        return False
    row_keys = hashing.keys(hashing.shard_hashes(seed, np.array([shard], dtype=np.int64)), layout.node_hash, layout.weights)[0]
    ratio = np.where(layout.targets > 0, loads / np.maximum(layout.targets, 1e-300), np.inf)
    options = np.flatnonzero(ok)
    best = options[np.lexsort((row_keys[options], ratio[options]))[0]]
    pieces[shard, piece] = best
    loads[best] += layout.piece_bytes[shard]
    return True


def balance(
    layout: Layout,
    pieces: I32,
    loads: F64,
    *,
    tolerance: float,
    budget: int | None,
    seed: int,
    settings: PlacementSettings,
    pinned: B | None = None,
    tree: Tree | None = None,
    min_band: float = 0.0,
    chains: bool = False,
) -> int:
    """Move pieces until every node is within ``target * (1 +- tolerance)``; returns moves made.

    Parameters
    ----------
    pinned:
        Optional ``shards x width`` mask of pieces that must not move.
    budget:
        Most pieces to move (``None``: no limit).
    tree:
        When given, each piece's destination is drawn by a descent of it (among the nodes that
        may take, weighted by what they may take) instead of ranking every destination.
    chains:
        When a round finds no direct move, the next lets nodes at their target also give or
        take (up to ``min_band``), so a piece whose shard blocks the direct move goes through a
        third node (a fresh placement, where moves cost nothing; a node whose target is nearly
        every shard needs it). Only then: taken every round they spread pieces onto nodes at
        their target rather than onto those short of it (CV 0.84% against 0.53% at 3,000 hosts).
    min_band:
        A move may take its ends this many bytes from their targets even where
        ``tolerance`` is narrower (:func:`placement.placements.plan` passes one piece: :func:`bands`).
    """
    targets = layout.targets
    bonus = 0.0  # min_band in a round after one that found no direct move (chains)
    moved = 0
    shard_hash_all: hashing.U64 | None = None
    mean_piece = float(layout.piece_bytes.mean()) if len(layout.piece_bytes) else 0.0
    for _ in range(settings.max_rounds):
        if budget is not None and moved >= budget:
            break
        # out of band: beyond the plain band in a fresh placement (chains even it out further);
        # beyond the widened one with a previous placement, whose every move costs a copy
        hi, lo = bands(targets, tolerance, 0.0 if chains else min_band)
        wide = bands(targets, tolerance, min_band)
        need_out = np.maximum(loads - hi, 0.0)
        need_in = np.maximum(lo - loads, 0.0)
        if need_out.sum() <= 0 and need_in.sum() <= 0:
            break
        if need_out.sum() >= need_in.sum():
            give, take = need_out, np.maximum(targets - loads + bonus, 0.0)
        else:
            give, take = np.maximum(loads - targets + bonus, 0.0), need_in
        if give.sum() <= 0 or take.sum() <= 0:
            if chains and not bonus and min_band > 0:
                bonus = min_band
                continue
            break
        if shard_hash_all is None:
            shard_hash_all = hashing.shard_hashes(seed, np.arange(len(pieces), dtype=np.int64))
        made = _balance_round(
            layout, pieces, loads, amounts=(give, take, *wide), shard_hash=shard_hash_all, mean_piece=mean_piece,
            budget=budget, moved_so_far=moved, pinned=pinned, tree=tree,
        )
        moved += made
        if made == 0 and chains and not bonus and min_band > 0:
            bonus = min_band  # no direct move left: let nodes at their target pass one on
            continue
        if made == 0:
            break
        bonus = 0.0
    return moved


def bands(targets: F64, tolerance: float, min_band: float = 0.0) -> tuple[F64, F64]:
    """The balance band per node: ``target +- max(tolerance * target, min_band)`` (upper, lower).

    Both edges reach :data:`EDGE` of the target further: a load on an edge is inside, whatever
    ulps the target is off by (:func:`placement.stability.keeps` counts it inside too).

    Nodes outside the plain band (``min_band = 0``) give or take; a move may leave its ends
    anywhere in the band widened to ``min_band`` (one piece). With about ten pieces per node a
    +-5% band is half a piece, and a node one piece above its target could give nothing without
    falling below the plain band: nodes that joined stayed nearly empty (issue 24).
    """
    width = np.maximum(targets * tolerance, min_band) + EDGE * targets
    return targets + width, targets - width


def off_spread(layout: Layout, pieces: I32, rows: I64, slots: I64) -> B:
    """For each piece ``(rows[i], slots[i])``: does its shard hold more than a spread rule's cap
    in that piece's domain (at any level of :attr:`Layout.spread`)?"""
    out = np.zeros(len(rows), dtype=bool)
    if not len(rows):
        return out
    held = pieces[rows]
    present = held >= 0
    safe = np.maximum(held, 0)
    own = pieces[rows, slots]
    for rule in layout.spread:
        dom = rule.ids[safe]
        mine = rule.ids[np.maximum(own, 0)]
        count = (present & (dom == mine[:, None])).sum(axis=1)
        out |= (own >= 0) & (count > rule.cap)
    return out


def _balance_round(
    layout: Layout,
    pieces: I32,
    loads: F64,
    *,
    amounts: tuple[F64, F64, F64, F64],
    shard_hash: hashing.U64,
    mean_piece: float,
    budget: int | None,
    moved_so_far: int,
    pinned: B | None,
    tree: Tree | None = None,
) -> int:
    """One balancing round: many moves at once, chosen greedily by rendezvous preference.

    ``amounts`` is (bytes each node should give, bytes each may take, upper and lower end of
    the band a move may reach: at least one piece wide, :func:`bands`).
    A move is made only if it brings an out-of-band node closer to its band (``give`` and
    ``take`` are positive only there), leaves both ends within ``hi``/``lo`` and makes the two
    nodes' deviations from their targets closer (``dev_a - dev_b > piece``: the sum of squared
    deviations falls), so repeating a round on its own result moves nothing.
    """
    give, take, hi, lo = amounts
    targets = layout.targets
    flat = pieces.ravel()
    on_source = (flat >= 0) & (give[np.maximum(flat, 0)] > 0)
    if pinned is not None:
        on_source &= ~pinned.ravel()
    pos = np.flatnonzero(on_source)
    if not len(pos):
        return 0
    width = pieces.shape[1]
    rows, slots = pos // width, pos % width
    src = flat[pos].astype(np.int64)
    # The pieces that rank their node worst are the ones to move first; take a few times what
    # each source must give, so domain conflicts leave enough to choose from.
    own_key = hashing.pair_keys(shard_hash[rows], layout.node_hash[src], layout.weights[src])
    # Pieces whose shard is over a spread cap in their own domain (left so by a repair on a
    # smaller cluster) go first: any feasible destination brings the shard's spread back.
    unspread = off_spread(layout, pieces, rows, slots)
    quota = np.ceil(give / max(mean_piece, 1e-300)).astype(np.int64) * 3 + 4
    if tree is not None and len(pos) <= 200_000:
        # a descent costs a few dozen keys per piece: every piece of a source is a candidate,
        # so the few whose shard can move (a node nearly every shard uses) are among them
        quota[:] = len(pos)
    order = np.lexsort((-own_key, unspread.astype(np.int8) * -1, src))
    src_o = src[order]
    start = np.searchsorted(src_o, src_o, side="left")
    rank = np.arange(len(order)) - start
    keep = order[rank < quota[src_o]]
    rows, slots, src, unspread = rows[keep], slots[keep], src[keep], unspread[keep]
    dests = np.flatnonzero(take > 0).astype(np.int32)
    if not len(dests):
        return 0
    best_dest = np.empty(len(rows), dtype=np.int64)
    best_key = np.empty(len(rows), dtype=np.float64)
    chunk = max(1, 4_000_000 // len(dests))
    if tree is not None:
        held = pieces[rows].copy()
        held[np.arange(len(rows)), slots] = -1  # the moving piece frees its own slot
        # First among the destinations a piece away from their target (any source with
        # something to give gains by a move there), then among all that may take.
        row_hash = try_hashes(shard_hash[rows], slots + 1)
        deficit = np.where((take > 0) & (loads - targets < -mean_piece), take, 0.0)
        best_dest, best_key = tree.descend(held, row_hash, deficit)
        dev_src = loads[src] - targets[src]
        drawn = np.maximum(best_dest, 0)
        retry = np.flatnonzero((best_dest < 0) | (dev_src - (loads[drawn] - targets[drawn]) <= layout.piece_bytes[rows]))
        if len(retry):
            best_dest[retry], best_key[retry] = tree.descend(held[retry], row_hash[retry], np.where(take > 0, take, 0.0))
        chunk = len(rows) + 1  # the loop below is the exact search: skipped
    for a in range(0 if tree is None else len(rows), len(rows), chunk):
        r, sl = rows[a : a + chunk], slots[a : a + chunk]
        held = pieces[r].copy()
        held[np.arange(len(r)), sl] = -1  # the moving piece frees its own slot
        cand = np.broadcast_to(dests, (len(r), len(dests)))
        ok = _feasible(layout, held, np.arange(len(r), dtype=np.int64), cand)
        k = hashing.keys(shard_hash[r], layout.node_hash[dests], layout.weights[dests])
        k[~ok] = np.inf
        j = np.argmin(k, axis=1)
        best_dest[a : a + chunk] = dests[j]
        best_key[a : a + chunk] = k[np.arange(len(r)), j]
    usable = np.isfinite(best_key)
    # What the loop below would refuse at its start it refuses to the end (in a round a source
    # only loses load and a destination only gains it): dropped here, in one vectorised test, so
    # a round where no move is allowed (a node joining a big cluster whose sources sit at their
    # lower band) costs no Python loop over its candidates.
    size_of, dest = layout.piece_bytes[rows], np.maximum(best_dest, 0)
    a_load, b_load = loads[src], loads[dest]
    usable &= (b_load + size_of <= hi[dest]) & (a_load - size_of >= lo[src])
    usable &= (a_load - targets[src]) - (b_load - targets[dest]) > size_of
    usable &= (give[src] > 0) & (take[dest] > 0)
    idx = np.flatnonzero(usable)
    idx = idx[np.lexsort((rows[idx], best_key[idx], ~unspread[idx]))]
    give_left, take_left = give.copy(), take.copy()
    touched: set[int] = set()
    made = 0
    # A destination only gains load in a round (no node both gives and takes), so once it can
    # take no piece (nothing left to take, or even the smallest piece would push it out of its
    # band) it stays closed; when every destination is closed the rest of the list is skipped
    # (a node joining a big cluster: one destination, filled after a few dozen moves).
    smallest = float(layout.piece_bytes.min()) if len(layout.piece_bytes) else 0.0
    open_dests = int(np.count_nonzero((take_left[dests] > 0) & (loads[dests] + smallest <= hi[dests])))
    for i in idx.tolist():
        if (budget is not None and moved_so_far + made >= budget) or open_dests == 0:
            break
        s, sl, a_node, b_node = int(rows[i]), int(slots[i]), int(src[i]), int(best_dest[i])
        if s in touched or give_left[a_node] <= 0 or take_left[b_node] <= 0:
            continue
        size = float(layout.piece_bytes[s])
        if loads[b_node] + size > hi[b_node] or loads[a_node] - size < lo[a_node]:
            continue
        if (loads[a_node] - targets[a_node]) - (loads[b_node] - targets[b_node]) <= size:
            continue
        pieces[s, sl] = b_node
        loads[a_node] -= size
        loads[b_node] += size
        give_left[a_node] -= size
        take_left[b_node] -= size
        touched.add(s)
        made += 1
        if take_left[b_node] <= 0 or loads[b_node] + smallest > hi[b_node]:
            open_dests -= 1
    return made
