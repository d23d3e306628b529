"""Shifts: the incremental re-plan of a placement after nodes join or leave (issue 24, item 3).

``place(nodes, spec, previous=p)`` re-plans from scratch around ``p``: it builds the layout and
the failure-domain tree and walks every piece, 3.7 s of CPU for 10^6 pieces on 100,000 nodes
however little changed. :func:`shift` moves only what the change forces, in O(pieces) numpy
(a few passes over the ``shards x width`` array) plus Python over the moved pieces:

1. **Missing**: a piece on a node no longer eligible (left, lost, draining, cordoned unless
   kept by the caller) or on no node.
2. **Refill**: each missing piece goes to the node furthest below its goal (relative), among
   those with room below the band's top, that keeps the rule for that shard (distinct nodes, at
   most ``cap`` pieces per failure domain) and the shard's spread over every coarser level (at
   most ``ceil(width / domains)`` pieces per zone, say); never to a ``closed`` node.
3. **Shed**: a node above its stable band (its share fell: nodes joined, weights changed) gives
   up just enough pieces, the shards it wins least by a rendezvous hash of ``(shard, node)``
   first, each to a node chosen as in the refill (a piece no such node can take stays).
4. **Pull**: a node below its stable band (it joined, or its share grew) takes just enough
   pieces to get inside it: the shards it wins by rendezvous (``hash(shard, node)`` lowest
   first), each time from the holder furthest above its goal that stays inside its band, when
   the move keeps the rule and the spread; past its sample, from any holder with a piece to
   spare. Every joiner first to its band's bottom, then (direct takes exhausted: the only
   holders whose shards may enter its zone are at their band's bottom) through **chains**: a
   holder gives although that leaves it below its band, and a donor above its goal refills it
   (two moves for one piece); then every joiner on towards its goal by direct takes. An erasure
   piece that moves keeps its index.

When more than ``POOL_MIN`` nodes are above their band (the shed's limit), the pull runs
before the shed: a joiner takes from the holders furthest above their goal, those nodes first,
so the shed has only what is left to move (30 hosts joining a zone of 200 of 3 zones: every old
host of the zone above its band; the shed gave up and ``place()`` ran). Otherwise the shed
first (its pieces go to the neediest nodes: the joiners).

The result is returned only when it passes :func:`placement.stability.keeps`'s own check (rule,
every load inside the stable band with the margin): so ``place(previous=result)`` would keep it,
and the next pass of the reconciler is the steady state. Otherwise (too many pieces to move, no
node with room keeps the rule, a rule that changed) :func:`shift` returns ``None`` and the caller
runs :func:`~placement.placements.place`, the exact planner, which stays the oracle
(``tests/placement/test_shifts.py`` compares the two). Deterministic: same inputs, same output.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from placement import hashing
from placement.layouts import LEVEL_OF_KEY, LEVELS
from placement.settings import DEFAULT_SETTINGS, PlacementSettings
from placement.stability import Frame, NodeTable, distinct, frame
from topology.datasets import DataSetSpec, ShardPlacement

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Above this many pieces to move (missing, shed or pulled) :func:`shift` gives up: ``place`` re-plans.
MOVE_LIMIT = 20_000
#: The refill draws from the neediest ``POOL_MIN + POOL_PER_PIECE x pieces`` nodes first.
POOL_MIN = 64
POOL_PER_PIECE = 8
#: A joiner ranks the shards it wins among ``PULL_SAMPLE`` times as many as it may take (every
#: ``stride``-th shard), not among every shard.
PULL_SAMPLE = 32
#: At most this many chains (two moves for one piece, :func:`_chain_to`) per joiner short of
#: its band after the direct takes; past it ``place()`` re-plans.
CHAIN_LIMIT = 1024
#: A chain is looked for among this many holders, and this many donors for each.
CHAIN_TRIES = 16


class _State:
    """The pieces being shifted (eligible positions) and the loads, with the rule's domain ids."""

    def __init__(self, table: NodeTable, spec: DataSetSpec, fr: Frame, pieces: I64, closed: npt.NDArray[np.bool_], *, loads: F64) -> None:
        self.fr = fr
        self.pieces = pieces
        self.loads = loads.copy()  # fr.loads(pieces), computed by the caller
        self.closed = closed
        chosen = np.flatnonzero(fr.position[:-1] >= 0)
        self.chosen = chosen
        fd_level = LEVEL_OF_KEY.get(spec.failure_domain)
        coarser = LEVELS[LEVELS.index(fd_level) + 1 :] if fd_level in LEVELS else ()
        self.rules: list[tuple[I64, int]] = [(fr.domains, fr.cap)]
        for level in coarser:
            ids = table.domains(level)[chosen]
            present = distinct(ids)
            if present > 1:
                self.rules.append((ids, math.ceil(fr.width / present)))
        self.moved = 0
        self.chained = 0  # chains made (:func:`_chain_to`): one move each past the bound
        self.touched: list[int] = []

    def allowed(self, s: int, p: int, cand: I64) -> npt.NDArray[np.bool_]:
        """Which ``cand`` nodes may hold slot ``(s, p)``: not already in the shard, every rule's
        cap kept with the shard's other pieces."""
        row = self.pieces[s]
        others = np.array([row[q] for q in range(len(row)) if q != p and row[q] >= 0], dtype=np.int64)
        ok = np.ones(len(cand), dtype=bool)
        for o in others.tolist():
            ok &= cand != o
        for ids, cap in self.rules:
            count = np.zeros(len(cand), dtype=np.int64)
            cand_ids = ids[cand]
            for o in others.tolist():
                count += cand_ids == ids[o]
            ok &= count + 1 <= cap
        return ok

    def allows(self, row: list[int], p: int, node: int) -> bool:
        """:meth:`allowed` for one node, ``row`` the shard's pieces as a list."""
        others = [o for q, o in enumerate(row) if q != p and o >= 0]
        if node in others:
            return False
        for ids, cap in self.rules:
            mine = ids[node]
            if sum(1 for o in others if ids[o] == mine) + 1 > cap:
                return False
        return True

    def room(self, s: int, cand: I64) -> npt.NDArray[np.bool_]:
        """``cand`` nodes that can take one more piece of shard ``s`` inside their band, and are open."""
        fr = self.fr
        out: npt.NDArray[np.bool_] = (self.loads[cand] + fr.piece_bytes[s] <= fr.hi[cand] + fr.slack[cand]) & ~self.closed[cand]
        return out

    def put(self, s: int, p: int, node: int) -> None:
        old = int(self.pieces[s, p])
        if old >= 0:
            self.loads[old] -= self.fr.piece_bytes[s]
        self.pieces[s, p] = node
        self.loads[node] += self.fr.piece_bytes[s]
        self.moved += 1
        self.touched.append(s)


def shift(
    table: NodeTable,
    spec: DataSetSpec,
    previous: ShardPlacement,
    *,
    weight: str = "ephemeral-storage",
    seed: int = 0,
    settings: PlacementSettings | None = None,
    closed: Collection[str] = (),
) -> ShardPlacement | None:
    """``previous`` itself when :func:`~placement.stability.keeps` holds for it; else a placement
    that moves only the pieces the change forces (module docstring) and that ``keeps`` accepts;
    ``None`` when no such shift was found (call :func:`~placement.placements.place`).

    ``table`` holds the nodes that may hold pieces (eligible ones, and ``closed`` ones: they
    keep what they hold and take nothing new).
    """
    cfg = settings or DEFAULT_SETTINGS
    fr = frame(table, spec, previous, weight=weight, settings=cfg)
    if fr is None:
        return None
    pieces = fr.positions(table, previous)
    missing = bool((pieces < 0).any())
    if not fr.rule_holds(pieces, partial=missing):
        return None  # the rule is broken by pieces that stay (labels or the rule changed): place decides
    loads = fr.loads(pieces)
    if not missing and fr.in_band(loads):
        return previous  # keeps() holds
    pieces = pieces.copy()
    mask = np.zeros(len(fr.goal), dtype=bool)
    for name in closed:
        found = table.index.get(name)
        if found is not None and fr.position[found] >= 0:
            mask[fr.position[found]] = True
    state = _State(table, spec, fr, pieces, mask, loads=loads)
    missing_rows, missing_cols = np.nonzero(pieces < 0)
    todo = list(zip(missing_rows.tolist(), missing_cols.tolist(), strict=True))
    budget = _move_budget(fr, state.loads, len(todo))
    if len(todo) > MOVE_LIMIT:
        return None
    shard_hash = _ShardHashes(seed)
    node_hash = _NodeHashes(table, state.chosen)
    if not _refill(state, todo):
        return None
    # The shed first, unless more nodes are above their band than it handles: then the pull
    # first (joiners take from the nodes furthest above their goal), and the shed after it.
    crowded = int(np.count_nonzero(state.loads > fr.hi + fr.slack)) > POOL_MIN
    steps = (_pull, _shed) if crowded else (_shed, _pull)
    if not all(step(state, shard_hash, node_hash) for step in steps):
        return None
    # keeps()'s check of the result: the rule on the rows that changed (the others held it
    # already), nothing missing, every load in its band (summed again unless every piece weighs the same).
    rows = np.unique(np.array(state.touched, dtype=np.int64))
    loads = state.loads if fr.uniform else fr.loads(state.pieces)
    if (state.pieces < 0).any() or not fr.rule_holds(state.pieces[rows]) or not fr.in_band(loads):
        return None
    if state.moved > budget + state.chained:
        return None  # more than any placement needs by a margin: place() decides
    return _placement(table, state)


def _move_budget(fr: Frame, loads: F64, missing: int) -> float:
    """The most moves a shift may make: 5% over a lower bound on what *any* placement that keeps
    the band must move (every missing piece; the pieces that must enter the nodes below their
    band, or leave those above it, counted at the largest piece's size), plus one piece per
    node outside its margin (a shift stops just inside it, where ``place()`` stops at the edge).
    Past it (plus one move per chain: the rule forces it) the caller runs ``place()``, so a shift
    never moves much more than ``place()``."""
    biggest = float(fr.piece_bytes.max()) if len(fr.piece_bytes) else 1.0
    enter = float(np.ceil(np.maximum(fr.lo - loads, 0.0) / biggest).sum())
    leave = float(np.ceil(np.maximum(loads - fr.hi, 0.0) / biggest).sum())
    outside = int(((loads < fr.lo - fr.slack) | (loads > fr.hi + fr.slack)).sum())
    return 1.05 * max(float(missing), enter, leave) + outside


class _ShardHashes:
    """:func:`placement.hashing.shard_hashes` of the shards asked for (an over node's rows, a
    joiner's sample: not every shard of a million)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __getitem__(self, shards: I64) -> npt.NDArray[np.uint64]:
        return hashing.shard_hashes(self.seed, np.asarray(shards, dtype=np.int64))


class _NodeHashes:
    """:func:`placement.hashing.node_hashes` of the eligible positions asked for (a few nodes
    joined or over: not every name of the table)."""

    def __init__(self, table: NodeTable, chosen: I64) -> None:
        self.table, self.chosen = table, chosen

    def __getitem__(self, position: int) -> np.uint64:
        return np.uint64(hashing.node_hashes([self.table.names[int(self.chosen[position])]])[0])


def _shed(state: _State, shard_hash: _ShardHashes, node_hash: _NodeHashes) -> bool:
    """Move just enough pieces off every node above its band, the shards it wins least first,
    each to the neediest node with room that keeps the rule (a piece that cannot move is
    skipped for the next one); ``False`` when too many nodes are over or one stays over."""
    fr = state.fr
    over = np.flatnonzero(state.loads > fr.hi + fr.slack)
    if len(over) > POOL_MIN:
        return False
    for d in over.tolist():
        rows, cols = np.nonzero(state.pieces == d)
        order = np.argsort(hashing.mix(shard_hash[rows] ^ node_hash[d]))[::-1]  # the shards it wins least first
        for i in order.tolist():
            if state.loads[d] <= fr.hi[d] + fr.slack[d]:
                break
            s, p = int(rows[i]), int(cols[i])
            cand = np.flatnonzero((state.loads + fr.piece_bytes[s] <= fr.hi + fr.slack) & ~state.closed)
            if not _give(state, s, p, cand):
                continue
            if state.moved > MOVE_LIMIT:
                return False
        if state.loads[d] > fr.hi[d] + fr.slack[d]:
            return False
    return True


def _give(state: _State, s: int, p: int, cand: I64) -> bool:
    """Slot ``(s, p)`` to the neediest of ``cand`` with room that keeps the rule; ``False`` if none."""
    fr = state.fr
    ok = state.room(s, cand) & state.allowed(s, p, cand)
    if not ok.any():
        return False
    score = np.where(ok, (fr.goal[cand] - state.loads[cand]) / np.maximum(fr.goal[cand], 1e-300), -np.inf)
    state.put(s, p, int(cand[int(np.argmax(score))]))
    return True


def _refill(state: _State, todo: list[tuple[int, int]]) -> bool:
    """Give every slot of ``todo`` the neediest node that keeps the rule (module docstring)."""
    if not todo:
        return True
    fr = state.fr
    n = len(fr.goal)
    size = min(n, POOL_MIN + POOL_PER_PIECE * len(todo))
    need = (fr.goal - state.loads) / np.maximum(fr.goal, 1e-300)
    pool = np.argpartition(-need, size - 1)[:size] if size < n else np.arange(n)
    pool = pool[np.lexsort((pool, -need[pool]))]
    everyone = np.arange(n)
    return all(_give(state, s, p, pool) or _give(state, s, p, everyone) for s, p in todo)


def _pull(state: _State, shard_hash: _ShardHashes, node_hash: _NodeHashes) -> bool:
    """Bring every node below its band inside it with the shards it wins (module docstring): each
    first to the band's bottom by direct takes, then (the direct takes ran out) through chains,
    then on towards its floor by direct takes only, so no joiner's direct takes starve another's
    and no chain is made for more than the band."""
    fr = state.fr
    under = np.flatnonzero((state.loads < fr.lo - fr.slack) & ~state.closed)
    half = 0.5 * float(fr.piece_bytes.min())
    samples: list[tuple[int, float, _Sample]] = []
    for u in under.tolist():
        # Inside the band, and within half a piece of the goal: a joiner stopping at the band's
        # bottom would hold one piece per DataSet less than its share (90% at ten per node).
        floor = max(fr.lo[u] - fr.slack[u], min(fr.goal[u] - half, fr.hi[u] + fr.slack[u] - 2 * half))
        want = max(1, math.ceil((floor - state.loads[u]) / float(fr.piece_bytes.min())))
        if state.moved + want > MOVE_LIMIT:
            return False
        samples.append((u, floor, _Sample(state, u, want, shard_hash, node_hash)))
    for u, _, sample in samples:
        _fill_to(state, u, float(fr.lo[u] - fr.slack[u]), sample)
    for u, _, _ in samples:
        if state.loads[u] < fr.lo[u] - fr.slack[u] and not _chain_to(state, u):
            return False
    for u, floor, sample in samples:
        _fill_to(state, u, floor, sample)
    return True


class _Sample:
    """The shards ``u`` wins, ranked among a sample of them (every ``stride``-th from an offset of
    u's own: ``PULL_SAMPLE`` times the batch, eight times the pieces it wants and 64 more), not
    among a million: the same rendezvous order within the sample, O(want) hashes per joiner."""

    def __init__(self, state: _State, u: int, want: int, shard_hash: _ShardHashes, node_hash: _NodeHashes) -> None:
        shards = state.pieces.shape[0]
        self.batch = 8 * want + 64
        stride = max(1, shards // (PULL_SAMPLE * self.batch))
        self.order: I64 | None = None  # the rows, the shards u wins first (sorted on first use)
        self.rows = np.arange(int(node_hash[u] % np.uint64(stride)), shards, stride, dtype=np.int64)
        self.score = hashing.mix(shard_hash[self.rows] ^ node_hash[u])


def _fill_to(state: _State, u: int, floor: float, sample: _Sample) -> bool:
    """Direct takes for ``u`` (:func:`_take`), the shards of its sample it wins first, then (a
    sample short of every shard) from any holder with a piece to spare (:func:`_direct`), until
    its load reaches ``floor`` (``True``) or no holder can give (``False``). The shards
    :func:`_take` would refuse are dropped first in one vectorised test: during the loop holders
    only lose pieces and ``u`` only enters rows it takes, so none of them becomes takeable."""
    rows = sample.rows
    if sample.order is None:
        sample.order = rows[np.argsort(sample.score, kind="stable")]
    for start in range(0, len(rows), sample.batch):
        if state.loads[u] >= floor:
            break
        batch = sample.order[start : start + sample.batch]
        for s in batch[_takeable(state, u, batch)].tolist():
            if state.loads[u] >= floor:
                break
            _take(state, int(s), u)
    if state.loads[u] < floor and len(rows) < state.pieces.shape[0]:
        _direct(state, u, floor)
    return bool(state.loads[u] >= floor)


def _direct(state: _State, u: int, floor: float, rows: I64 | None = None, cols: I64 | None = None) -> None:
    """Past the sample: every slot ``u`` may take whose holder stays inside its band, the holders
    furthest above their goal first, until ``u`` reaches ``floor`` (one vectorised search, then
    scalar checks as the loads change)."""
    fr = state.fr
    if rows is None or cols is None:
        rows, cols = _slots_for(state, u)
    if not len(rows):
        return
    holders = state.pieces[rows, cols]
    spare = state.loads[holders] - fr.piece_bytes[rows] >= fr.lo[holders] - fr.slack[holders]
    rows, cols, holders = rows[spare], cols[spare], holders[spare]
    over = (state.loads[holders] - fr.goal[holders]) / np.maximum(fr.goal[holders], 1e-300)
    for i in np.lexsort((rows, -over)).tolist():
        if state.loads[u] >= floor:
            return
        s, p, d = int(rows[i]), int(cols[i]), int(holders[i])
        row = state.pieces[s].tolist()
        if row[p] != d or state.loads[d] - fr.piece_bytes[s] < fr.lo[d] - fr.slack[d] or not state.allows(row, p, u):
            continue
        state.put(s, p, u)


def _slots_for(state: _State, u: int) -> tuple[I64, I64]:
    """Every slot ``(shard, piece)`` whose piece ``u`` may hold (the rule with the shard's other
    pieces), in one vectorised pass over the shards."""
    rows, cols = np.nonzero(_may_hold(state, u, state.pieces))
    return rows.astype(np.int64), cols.astype(np.int64)


def _may_hold(state: _State, u: int, pieces: I64) -> npt.NDArray[np.bool_]:
    """Per slot of ``pieces`` (rows of the placement): may ``u`` hold it, the rule kept with the
    row's other pieces?"""
    ok: npt.NDArray[np.bool_] = ~(pieces == u).any(axis=1, keepdims=True) & (pieces >= 0)
    for ids, cap in state.rules:
        same = ids[np.maximum(pieces, 0)] == ids[u]
        ok &= (same.sum(axis=1, keepdims=True) - same) + 1 <= cap
    return ok


def _takeable(state: _State, u: int, shards: I64) -> npt.NDArray[np.bool_]:
    """Per shard of ``shards``: is there a piece ``u`` may hold whose holder stays inside its band
    without it (:func:`_take`'s test, vectorised, to skip the shards it would refuse)?"""
    fr = state.fr
    pieces = state.pieces[shards]
    holders = np.maximum(pieces, 0)
    spare = state.loads[holders] - fr.piece_bytes[shards][:, None] >= fr.lo[holders] - fr.slack[holders]
    out: npt.NDArray[np.bool_] = np.asarray((_may_hold(state, u, pieces) & spare).any(axis=1), dtype=bool)
    return out


def _chain_to(state: _State, u: int) -> bool:
    """Bring ``u`` to its band's bottom through chains: a holder ``d`` of a piece ``u`` may take
    gives it although that leaves ``d`` below its band, and a donor with pieces to spare (above
    its goal, the furthest first) gives ``d`` one of its own that ``d`` may hold. Two moves for
    one piece: what the rule forces when only some holders' shards may enter ``u``'s domains
    (every shard of a node the same zones: only the nodes whose shards lack ``u``'s zone can
    give, and they hit their band's bottom first). ``False`` when no chain is found."""
    fr = state.fr
    bottom = float(fr.lo[u] - fr.slack[u])
    chains = 0
    while state.loads[u] < bottom:
        rows, cols = _slots_for(state, u)
        before = state.moved
        _direct(state, u, bottom, rows, cols)
        if state.loads[u] >= bottom:
            break
        if state.moved != before:
            continue  # the slots changed: look again
        made = _chains(state, u, bottom, rows, cols)
        chains += made
        if not made or chains > CHAIN_LIMIT:
            return False
    return True


def _chains(state: _State, u: int, bottom: float, rows: I64, cols: I64) -> int:
    """Chains for ``u`` (:func:`_chain_to`) until it reaches ``bottom``, one per holder of the
    slots ``(rows, cols)`` it may take; how many were made. Holders (open ones) first where a
    donor (a node with a piece to spare) shares the most coarser domains with them (a piece
    moving inside its rack or zone keeps the spread of its shard), the fullest first; for each,
    the donors sharing the most domains with it, the furthest above their goal first
    (``CHAIN_TRIES`` of them): the first donor piece the holder may hold."""
    fr = state.fr
    spare = state.loads - fr.piece_bytes.max() - (fr.lo - fr.slack)
    donors = np.flatnonzero((spare >= 0) & (np.arange(len(spare)) != u))
    if not len(donors):
        return 0
    holders = state.pieces[rows, cols]
    levels = [ids for ids, _ in state.rules[1:]]
    distinct_holders, first = np.unique(holders, return_index=True)
    keep = ~state.closed[distinct_holders]
    distinct_holders, first = distinct_holders[keep], first[keep]
    shared = np.zeros(len(distinct_holders), dtype=np.int64)
    for ids in levels:
        shared += np.isin(ids[distinct_holders], ids[donors])
    order = np.lexsort((rows[first], -state.loads[distinct_holders], -shared))
    over = -(state.loads[donors] - fr.goal[donors]) / np.maximum(fr.goal[donors], 1e-300)
    made, failed = 0, 0
    for k in order.tolist():
        if state.loads[u] >= bottom or failed >= CHAIN_TRIES:
            break
        d, i = int(distinct_holders[k]), int(first[k])
        s, p = int(rows[i]), int(cols[i])
        row = state.pieces[s].tolist()
        if row[p] != d or not state.allows(row, p, u):
            continue
        if _refill_from_donor(state, d, s, donors=donors, over=over):
            state.put(s, p, u)
            state.chained += 1
            made += 1
        else:
            failed += 1
    return made


def _refill_from_donor(state: _State, d: int, skip: int, *, donors: I64, over: F64) -> bool:
    """Give ``d`` a piece of a donor (not of shard ``skip``) that ``d`` may hold, the donors
    nearest ``d`` (most shared domains), then furthest above their goal, first; donors still
    with a piece to spare only."""
    fr = state.fr
    near = np.zeros(len(donors), dtype=np.int64)
    for ids, _ in state.rules[1:]:
        near += ids[donors] == ids[d]
    tried = 0
    for e in donors[np.lexsort((donors, over, -near))].tolist():
        if tried >= CHAIN_TRIES:
            break
        if e == d or state.loads[e] - fr.piece_bytes.max() < fr.lo[e] - fr.slack[e]:
            continue
        tried += 1
        er, ec = np.nonzero(state.pieces == e)
        ok = _may_hold(state, d, state.pieces[er])[np.arange(len(er)), ec] & (er != skip)
        if ok.any():
            j = int(np.argmax(ok))
            state.put(int(er[j]), int(ec[j]), d)
            return True
    return False


def _take(state: _State, s: int, u: int) -> None:
    """Move to ``u`` the piece of shard ``s`` whose holder is furthest above its goal, when that
    holder stays inside its band and ``u`` keeps the rule; nothing otherwise (scalar checks: one
    candidate, many rows)."""
    fr = state.fr
    row = state.pieces[s].tolist()
    if u in row:
        return
    best, best_over = -1, -math.inf
    for p, d in enumerate(row):
        if d < 0:
            continue
        left = state.loads[d] - fr.piece_bytes[s]
        if left < fr.lo[d] - fr.slack[d]:
            continue
        over = (state.loads[d] - fr.goal[d]) / max(float(fr.goal[d]), 1e-300)
        if over > best_over and state.allows(row, p, u):
            best, best_over = p, over
    if best >= 0:
        state.put(s, best, u)


def _placement(table: NodeTable, state: _State) -> ShardPlacement:
    """Eligible positions as a :class:`ShardPlacement` over the nodes used (sorted by name, as
    the table is)."""
    n = len(state.fr.goal)
    used = np.bincount(state.pieces.ravel(), minlength=n) > 0
    if len(state.chosen) == len(table.names) and used.all():
        # Every node of the table holds a piece (the usual case at scale): the table's own names,
        # one object shared by every DataSet shifted on this table, so what the reconciler
        # derives from a node list (its name array, its positions) is computed once per pass.
        return ShardPlacement(table.names, state.pieces.astype(np.int32))
    lut = (np.cumsum(used, dtype=np.int64) - 1).astype(np.int32)
    names = tuple(table.name_array()[state.chosen[used]].tolist())
    return ShardPlacement(names, lut[state.pieces])


__all__ = ["MOVE_LIMIT", "shift"]
