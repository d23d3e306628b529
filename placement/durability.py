"""Durability: what a placement loses when domains or nodes fail, and whether a removal is safe.

A shard with ``n`` pieces on live nodes survives the loss of ``slack = n - needed`` of them
(``needed`` = 1 for replicas, ``k`` for ``k + m`` erasure); it is *lost* when more than ``slack``
of its pieces are on failed nodes.

:func:`durability` reports, for one placement:

- for each level (host, rack, zone) the worst single-domain failure: the most shards lost (and
  left with exactly ``needed`` pieces, *at risk*) when any one domain of that level fails;
- for ``f`` simultaneous node failures the worst case, the mean and the probability of losing
  any shard. Exact when possible: ``f <= slack`` loses nothing; when every shard dies exactly
  when ``f`` of its nodes fail (``f == slack + 1`` for all), the fatal node sets are counted
  (worst = the most shards sharing one fatal ``f``-set, probability = distinct fatal sets over
  ``C(N, f)``); small cases are enumerated. Otherwise ``samples`` random ``f``-sets plus a greedy
  adversary give a lower bound on the worst case and estimates of mean and probability (the
  report says which method was used).

:func:`removal_is_safe` is the controller's cheap check before a scale-down: after removing the
named nodes, does every shard that loses a piece keep at least ``needed + min_spare`` pieces?
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from placement.layouts import LEVELS, domain_ids
from topology.datasets import DataSetSpec, ShardPlacement
from topology.nodes import Node

I64 = npt.NDArray[np.int64]

#: Largest ``C(N, f) * pieces`` evaluated by brute-force enumeration.
ENUMERATION_BUDGET = 30_000_000
#: Largest number of fatal sets counted for the exact ``f == slack + 1`` method.
TUPLE_BUDGET = 20_000_000


@dataclass(frozen=True, slots=True)
class DomainLoss:
    """The worst single-domain failure at one level."""

    level: str
    domains: int
    worst_lost: int
    worst_at_risk: int
    worst_domain: str

    def __str__(self) -> str:
        return f"{self.level}: worst of {self.domains} domains loses {self.worst_lost} shards ({self.worst_at_risk} left at risk)"


@dataclass(frozen=True, slots=True)
class NodeFailureLoss:
    """Shards lost when ``f`` nodes fail at once.

    ``method`` is ``"none"`` (f within every shard's slack: exact 0), ``"fatal-sets"`` or
    ``"enumeration"`` (exact), or ``"sampled"`` (``worst_lost`` is a lower bound; mean and
    probability are estimates from ``evaluated`` random sets).
    """

    f: int
    method: str
    exact: bool
    worst_lost: int
    worst_nodes: tuple[str, ...]
    mean_lost: float
    p_any_loss: float
    evaluated: int

    def __str__(self) -> str:
        how = "exact" if self.exact else f"sampled {self.evaluated}, lower bound"
        return (
            f"{self.f} node failures: worst {self.worst_lost} shards lost ({how}), mean {self.mean_lost:.3g}, "
            f"P(any loss) {self.p_any_loss:.3g}"
        )


@dataclass(frozen=True, slots=True)
class DurabilityReport:
    """Durability of one placement: per-level domain failures and ``f`` node failures."""

    shards: int
    already_lost: int
    domains: tuple[DomainLoss, ...]
    nodes: NodeFailureLoss

    def lines(self) -> list[str]:
        out = [f"{self.shards} shards, {self.already_lost} already lost"]
        out.extend(str(d) for d in self.domains)
        out.append(str(self.nodes))
        return out


@dataclass(frozen=True, slots=True)
class SafetyVerdict:
    """Whether removing some nodes keeps every shard readable with a spare.

    Attributes
    ----------
    safe:
        No shard that loses a piece drops below ``needed + min_spare`` pieces (capped at the
        width).
    intact:
        No shard loses any piece at all.
    reason:
        One sentence a human can act on.
    lost_shards:
        Shards that would drop below ``needed`` (data loss).
    at_risk_shards:
        Shards that would drop below ``needed + min_spare`` but not below ``needed``.
    pieces_removed:
        Pieces held by the removed nodes.
    """

    safe: bool
    intact: bool
    reason: str
    lost_shards: tuple[int, ...]
    at_risk_shards: tuple[int, ...]
    pieces_removed: int

    def __bool__(self) -> bool:
        return self.safe


def _live_pieces(nodes: Sequence[Node], placement: ShardPlacement) -> tuple[list[Node], I64]:
    """Nodes sorted by name and pieces as indexes into them (``-1``: missing or on an absent node)."""
    ordered = sorted(nodes, key=lambda n: n.name)
    index = {n.name: i for i, n in enumerate(ordered)}
    lut = np.array([*(index.get(n, -1) for n in placement.nodes), -1], dtype=np.int64)
    return ordered, lut[placement.pieces]


def removal_is_safe(
    nodes: Sequence[Node], spec: DataSetSpec, placement: ShardPlacement, remove: Collection[str], *, min_spare: int = 1
) -> SafetyVerdict:
    """Would removing ``remove`` leave every affected shard with ``needed + min_spare`` pieces?

    Parameters
    ----------
    nodes:
        The cluster's nodes now (pieces on nodes not listed are already missing).
    spec:
        The DataSet spec (its redundancy gives ``needed`` and the width).
    placement:
        The placement in effect.
    remove:
        Names of nodes to remove (unknown names hold nothing).
    min_spare:
        Pieces beyond ``needed`` each affected shard must keep (1: it still survives one more
        failure). Shards the removal does not touch are never blamed for being degraded already.

    Returns
    -------
    SafetyVerdict
        Truthy when safe; with the offending shards and a reason.
    """
    ordered, pieces = _live_pieces(nodes, placement)
    gone = np.zeros(len(ordered) + 1, dtype=bool)
    names = {n.name: i for i, n in enumerate(ordered)}
    for name in remove:
        if name in names:
            gone[names[name]] = True
    present = pieces >= 0
    hit = present & gone[np.where(present, pieces, len(ordered))]
    removed = int(hit.sum())
    affected = hit.any(axis=1)
    after = (present & ~hit).sum(axis=1)
    red = spec.redundancy
    required = min(red.width, red.needed + max(0, min_spare))
    lost = np.flatnonzero(affected & (after < red.needed))
    risky = np.flatnonzero(affected & (after >= red.needed) & (after < required))
    who = ", ".join(sorted(remove)[:5]) + (" ..." if len(remove) > 5 else "")
    if len(lost) or len(risky):
        sample = ", ".join(str(s) for s in np.concatenate([lost, risky])[:10].tolist())
        reason = (
            f"removing {who} would leave {len(lost)} shards of {spec.key} with fewer than {red.needed} pieces (data loss) and "
            f"{len(risky)} with fewer than {required} (no spare); first shards: {sample}"
        )
    elif removed:
        reason = f"removing {who} takes {removed} pieces of {spec.key}; every affected shard keeps at least {required}"
    else:
        reason = f"{who or 'nothing'} holds no piece of {spec.key}"
    return SafetyVerdict(
        safe=not len(lost) and not len(risky),
        intact=removed == 0,
        reason=reason,
        lost_shards=tuple(int(s) for s in lost),
        at_risk_shards=tuple(int(s) for s in risky),
        pieces_removed=removed,
    )


def durability(
    nodes: Sequence[Node], spec: DataSetSpec, placement: ShardPlacement, *, f: int, samples: int = 1000, seed: int = 0
) -> DurabilityReport:
    """Worst-case losses of ``placement`` under domain failures and ``f`` node failures.

    Parameters
    ----------
    nodes:
        The cluster's nodes (pieces on absent nodes are missing).
    spec:
        The DataSet spec (``needed`` from its redundancy).
    placement:
        The placement to judge.
    f:
        Simultaneous node failures (``>= 1``).
    samples:
        Random ``f``-sets drawn when no exact method fits.
    seed:
        Seed of the sampling.

    Raises
    ------
    ValueError
        If ``f`` is not between 1 and the number of nodes.
    """
    ordered, pieces = _live_pieces(nodes, placement)
    n = len(ordered)
    if not 1 <= f <= max(n, 1):
        raise ValueError(f"f must be between 1 and the {n} nodes, got {f}")
    needed = spec.redundancy.needed
    present = pieces >= 0
    slack = present.sum(axis=1) - needed
    already = int((slack < 0).sum())
    alive = slack >= 0
    levels = []
    for level in LEVELS:
        ids, dnames = domain_ids([n_.domain(level) for n_ in ordered])
        dom = np.where(present, ids[np.maximum(pieces, 0)], -1)
        levels.append(_domain_loss(level, dom[alive], slack[alive], dnames))
    nodes_loss = _node_failures(pieces[alive], slack[alive], [x.name for x in ordered], f=f, samples=samples, seed=seed)
    return DurabilityReport(shards=spec.shards, already_lost=already, domains=tuple(levels), nodes=nodes_loss)


def _domain_loss(level: str, dom: I64, slack: I64, names: tuple[str, ...]) -> DomainLoss:
    """Worst single-domain failure: shards lost (count in domain > slack) and left at exactly needed."""
    n_dom = len(names)
    lost = np.zeros(n_dom, dtype=np.int64)
    risk = np.zeros(n_dom, dtype=np.int64)
    width = dom.shape[1] if dom.ndim == 2 else 0
    for q in range(width):
        d = dom[:, q]
        first = d >= 0
        for r in range(q):
            first &= dom[:, r] != d
        count = (dom == d[:, None]).sum(axis=1)
        lost += np.bincount(d[first & (count > slack)], minlength=n_dom)[:n_dom]
        risk += np.bincount(d[first & (count == slack)], minlength=n_dom)[:n_dom]
    if n_dom == 0:
        return DomainLoss(level, 0, 0, 0, "")
    worst = int(np.lexsort((-risk, -lost))[0])
    return DomainLoss(level, n_dom, int(lost[worst]), int(risk.max()), names[worst])


def _lost_by(pieces: I64, slack: I64, failed_sets: I64, n: int) -> I64:
    """Shards lost for each failure set (``sets x f`` node indexes)."""
    out = np.empty(len(failed_sets), dtype=np.int64)
    safe_pieces = np.where(pieces >= 0, pieces, n)
    for i, fs in enumerate(failed_sets):
        mask = np.zeros(n + 1, dtype=bool)
        mask[fs] = True
        out[i] = int((mask[safe_pieces].sum(axis=1) > slack).sum())
    return out


def _node_failures(pieces: I64, slack: I64, names: list[str], *, f: int, samples: int, seed: int) -> NodeFailureLoss:
    n = len(names)
    if len(pieces) == 0 or f <= int(slack.min()):
        return NodeFailureLoss(f, "none", True, 0, (), 0.0, 0.0, 0)
    total_sets = math.comb(n, f)
    if int(slack.min()) + 1 == f == int(slack.max()) + 1:
        present_count = int((pieces >= 0).sum(axis=1).max())
        tuples_needed = len(pieces) * math.comb(present_count, f)
        if tuples_needed <= TUPLE_BUDGET and n**f < 2**62:
            return _fatal_sets(pieces, names, f, total_sets)
    if total_sets * pieces.size <= ENUMERATION_BUDGET:
        sets = np.array(list(itertools.combinations(range(n), f)), dtype=np.int64)
        lost = _lost_by(pieces, slack, sets, n)
        worst = int(np.argmax(lost))
        worst_nodes = tuple(names[i] for i in sets[worst])
        return NodeFailureLoss(
            f, "enumeration", True, int(lost[worst]), worst_nodes, float(lost.mean()), float((lost > 0).mean()), len(sets)
        )
    rng = np.random.default_rng(seed)
    drawn = np.array([rng.choice(n, size=f, replace=False) for _ in range(samples)], dtype=np.int64)
    lost = _lost_by(pieces, slack, drawn, n)
    greedy, greedy_lost = _greedy_worst(pieces, slack, n, f)
    worst_i = int(np.argmax(lost))
    if greedy_lost >= int(lost[worst_i]):
        worst_nodes, worst_lost = greedy, greedy_lost
    else:
        worst_nodes, worst_lost = tuple(int(i) for i in drawn[worst_i]), int(lost[worst_i])
    return NodeFailureLoss(
        f, "sampled", False, worst_lost, tuple(names[i] for i in sorted(worst_nodes)), float(lost.mean()), float((lost > 0).mean()), samples
    )


def _fatal_sets(pieces: I64, names: list[str], f: int, total_sets: int) -> NodeFailureLoss:
    """Exact when every shard dies exactly when ``f`` of its nodes fail: count the fatal sets."""
    n = len(names)
    rows = np.sort(np.where(pieces >= 0, pieces, -1), axis=1)
    width = rows.shape[1]
    codes = []
    for combo in itertools.combinations(range(width), f):
        sel = rows[:, list(combo)]
        valid = (sel >= 0).all(axis=1)
        code = np.zeros(len(sel), dtype=np.int64)
        for c in range(f):
            code = code * n + sel[:, c]
        codes.append(code[valid])
    allc = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)
    if not len(allc):
        return NodeFailureLoss(f, "fatal-sets", True, 0, (), 0.0, 0.0, total_sets)
    uniq, counts = np.unique(allc, return_counts=True)
    best = int(np.argmax(counts))
    packed = int(uniq[best])
    members = []
    for _ in range(f):
        members.append(packed % n)
        packed //= n
    return NodeFailureLoss(
        f,
        "fatal-sets",
        True,
        int(counts[best]),
        tuple(names[i] for i in sorted(members)),
        float(len(allc) / total_sets),
        float(len(uniq) / total_sets),
        total_sets,
    )


def _greedy_worst(pieces: I64, slack: I64, n: int, f: int) -> tuple[tuple[int, ...], int]:
    """An adversary: fail nodes one at a time, each time the one that loses (then hits) the most."""
    if n * f * pieces.size > 400_000_000:
        return (), -1
    safe_pieces = np.where(pieces >= 0, pieces, n)
    chosen: list[int] = []
    hits = np.zeros(len(pieces), dtype=np.int64)
    lost = 0
    for _ in range(f):
        best, best_score = -1, (-1, -1)
        for j in range(n):
            if j in chosen:
                continue
            h = hits + (safe_pieces == j).sum(axis=1)
            score = (int((h > slack).sum()), int((h == slack).sum()))
            if score > best_score:
                best, best_score = j, score
        chosen.append(best)
        hits += (safe_pieces == best).sum(axis=1)
        lost = best_score[0]
    return tuple(chosen), lost
