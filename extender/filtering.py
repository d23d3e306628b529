"""Which offered nodes a pod may run on, as far as data and dedicated node groups go.

Rules, each with a reason a human can act on:

* **Dedicated groups** (:func:`extender.eligibility.dedicated`, the rule prioritize and pricing
  use too). A node tainted ``kbl.io/dedicated=<K>`` belongs to KBL ``K``; pods of any
  other KBL (or of none) are rejected even if they tolerate the taint. A pod of a KBL whose
  group is dedicated (its KBL object says so, or any node carries its dedicated taint) is kept
  to nodes labelled ``kbl.io/kbl=<K>``. Both go to ``FailedAndUnresolvableNodes``: evicting pods
  does not change a node's labels.
* **Required locality** (``kbl.io/locality: required``): only nodes that hold a piece of every
  requested shard pass: for replicas a whole replica of each (every requested byte is local);
  for an erasure-coded DataSet one fragment of each (the placement puts one fragment of a shard
  per node, so "every byte local" would pass no node; the pod reads its ``k - 1`` other
  fragments per shard from their holders). Others are unresolvable (preemption cannot move
  data). A holder that has no room left in the cache (bound requests plus in-flight
  assignments) goes to ``FailedNodes``: preempting lower-priority pods there can make room.
* **Not synced yet.** Until the cache's first full sync, offered nodes it has not seen are
  unresolvable: it cannot know their dedicated taint or their data (no wrong answer while stale).
* **Unusable wishes** (unknown DataSet, bad ``kbl.io/shards``, no placement yet): with required
  locality every node is unresolvable with that reason; with preferred locality the pod still
  schedules (the problem is only reported).

:func:`decide` is shared by ``/filter`` and ``/preempt`` (which drops candidate nodes the filter
would reject).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from extender.eligibility import dedicated
from extender.framework import Cycle, Framework
from extender.scoring import utilization
from extender.wishes import Wish
from topology import labels

BoolArray = npt.NDArray[np.bool_]


@dataclass(slots=True)
class Verdict:
    """The outcome for offered nodes: indexes that pass, and reasons for the others."""

    passing: Sequence[int]
    failed: dict[str, str] = field(default_factory=dict)
    unresolvable: dict[str, str] = field(default_factory=dict)
    wish: Wish | None = None


def decide(fw: Framework, cycle: Cycle, names: list[str], key: str | None = None) -> Verdict:
    """Apply the module's rules to the offered ``names``.

    Parameters
    ----------
    fw:
        The cache and its derived tables (read under the cache's lock).
    cycle:
        The pod being scheduled, with its resolved data wish.
    names:
        Offered node names, in request order.
    key:
        Their :func:`~extender.messages.names_key`, when the caller has it (the id cache's key).

    Returns
    -------
    Verdict
        ``passing`` indexes into ``names`` in request order; every other offered node is in
        exactly one of ``failed`` / ``unresolvable`` with its reason.
    """
    state, wish = fw.state, cycle.wish
    with state.lock:
        count = len(names)
        unresolvable: dict[str, str] = {}
        failed: dict[str, str] = {}
        if count == 0:
            return Verdict([], failed, unresolvable, wish)
        if state.ready and not wish.required and not (state.has_dedicated_nodes or state.kbl_is_dedicated(cycle.pod.kbl)):
            return Verdict(range(count), failed, unresolvable, wish)  # no rule applies: every node passes
        ok = np.ones(count, dtype=bool)
        ids = state.node_ids(names, key)
        if not state.ready:
            _unsynced(names, ids=ids, ok=ok, out=unresolvable)
        _dedicated(fw, cycle, names, ids=ids, ok=ok, out=unresolvable)
        if wish.required:
            _required(fw, cycle, names, ids=ids, ok=ok, failed=failed, unresolvable=unresolvable)
        return Verdict(np.flatnonzero(ok).tolist(), failed, unresolvable, wish)


def _unsynced(names: list[str], *, ids: npt.NDArray[np.int64], ok: BoolArray, out: dict[str, str]) -> None:
    """Before the first full sync, a node the cache has not seen cannot be vouched for (its
    dedicated taint, its data): fail it closed, as unresolvable so preemption evicts nothing."""
    unknown = ids < 0
    for i in np.flatnonzero(unknown & ok).tolist():
        out[names[i]] = "the extender is starting and has not seen this node yet (first sync of its cache not finished): retry shortly"
    ok &= ~unknown


def _dedicated(fw: Framework, cycle: Cycle, names: list[str], *, ids: npt.NDArray[np.int64], ok: BoolArray, out: dict[str, str]) -> None:
    state, kbl = fw.state, cycle.pod.kbl
    foreign, outside = dedicated(state, kbl, ids)
    if not (foreign.any() or outside.any()):
        return
    owner, _group = state.owners(ids)
    who = f"KBL {_clip(kbl)}" if kbl else "no KBL"
    for i in np.flatnonzero(foreign & ok).tolist():
        owner_name = state.kbl_name(int(owner[i]))
        out[names[i]] = (
            f"node is dedicated to KBL {owner_name} (taint {labels.DEDICATED_TAINT}={owner_name}); "
            f"this pod belongs to {who}: set {labels.POD_KBL}={owner_name} only if it is part of that KBL"
        )
    ok &= ~foreign
    for i in np.flatnonzero(outside & ok).tolist():
        out[names[i]] = (
            f"pods of KBL {kbl} run on its dedicated node group (nodes labelled {labels.KBL_LABEL}={kbl}); "
            "this node is not in it: the kbl controller grows the group when none has room"
        )
    ok &= ~outside


def _required(
    fw: Framework,
    cycle: Cycle,
    names: list[str],
    *,
    ids: npt.NDArray[np.int64],
    ok: BoolArray,
    failed: dict[str, str],
    unresolvable: dict[str, str],
) -> None:
    wish = cycle.wish
    if not wish.usable:
        reason = f"{labels.POD_LOCALITY}: required, but {_clip(wish.problem or '')}"
        for i in np.flatnonzero(ok).tolist():
            unresolvable[names[i]] = reason
        ok[:] = False
        return
    known = ids >= 0
    have = np.zeros(len(names), dtype=np.int64)
    have[known] = fw.costs.local_shards(wish)[ids[known]]
    holds = known & (have >= wish.shard_count)
    for i in np.flatnonzero(ok & ~known).tolist():
        unresolvable[names[i]] = "node is not in the extender's cache (not yet watched?): cannot check that it holds the data"
    missing = np.flatnonzero(ok & known & ~holds)
    if missing.size:
        local = fw.costs.level_bytes(wish).table[ids[missing], 0]
        for i, local_bytes in zip(missing.tolist(), local.tolist(), strict=True):
            unresolvable[names[i]] = _not_holding(wish, int(have[i]), local_bytes)
    ok &= holds
    if not ok.any():
        return
    used, alloc = fw.state.load(ids)
    util = utilization(used, alloc, cycle.request)
    full = ok & (util > 1.0)
    for i in np.flatnonzero(full).tolist():
        failed[names[i]] = (
            "node holds the data but has no room left for this pod in the extender's cache "
            "(bound pods plus in-flight assignments); preempting lower-priority pods can free it"
        )
    ok &= ~full


def _not_holding(wish: Wish, have: int, local_bytes: float) -> str:
    """Why a node fails required locality: what it holds of the request, and what qualifies."""
    needed = wish.needed_bytes
    share = local_bytes / needed if needed > 0 else 0.0
    word = wish.piece_word
    return (
        f"{labels.POD_LOCALITY}: required, but the node holds {share:.0%} of the requested data of DataSet {wish.key} "
        f"(a {word} of {have} of the {wish.shard_count} requested shards, {_human(local_bytes)} of {_human(needed)} readable locally); "
        f"only nodes with a {word} of every requested shard qualify"
    )


#: Longest pod-supplied text quoted in a per-node reason. A reason is repeated for every offered
#: node, so an annotation of 64 KB quoted whole would make a 5,000-node reply 320 MB.
MAX_QUOTED_CHARS = 256


def _clip(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text`` cut to ``limit`` characters (marked with its full length when cut)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _human(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def preempt(fw: Framework, cycle: Cycle, victims: dict[str, tuple[list[str], int]]) -> dict[str, tuple[list[str], int]]:
    """Candidate nodes and victims kept for a preemption.

    Nodes the filter would reject for this pod (dedicated groups, required locality: nothing
    a victim's eviction changes) are dropped, and so are nodes without victims (kube-scheduler
    rejects a node returned with none). Victims on the kept nodes stay as the scheduler chose
    them; they are returned as UIDs only, so no unknown UID can appear.
    """
    names = [n for n, (uids, _) in victims.items() if uids]
    verdict = decide(fw, cycle, names)
    # A node that is full in the cache is exactly what preemption is for: keep it.
    keep = set(verdict.passing) | {i for i, n in enumerate(names) if n in verdict.failed}
    return {names[i]: victims[names[i]] for i in sorted(keep)}
