"""Which offered nodes a pod may run on, as far as data and dedicated node groups go.

Rules, each with a reason a human can act on:

* **Dedicated groups.** A node tainted ``kbl.io/dedicated=<K>`` belongs to KBL ``K``; pods of any
  other KBL (or of none) are rejected even if they tolerate the taint. A pod of a KBL whose
  group is dedicated (its KBL object says so, or any node carries its dedicated taint) is kept
  to nodes labelled ``kbl.io/kbl=<K>``. Both go to ``FailedAndUnresolvableNodes``: evicting pods
  does not change a node's labels.
* **Required locality** (``kbl.io/locality: required``): only nodes that can read every
  requested byte locally (for replicas: hold a replica of every requested shard) pass. Others
  are unresolvable (preemption cannot move data). A holder that has no room left in the cache
  (bound requests plus in-flight assignments) goes to ``FailedNodes``: preempting lower-priority
  pods there can make room.
* **Not synced yet.** Until the cache's first full sync, offered nodes it has not seen are
  unresolvable: it cannot know their dedicated taint or their data (no wrong answer while stale).
* **Unusable wishes** (unknown DataSet, bad ``kbl.io/shards``, no placement yet): with required
  locality every node is unresolvable with that reason; with preferred locality the pod still
  schedules (the problem is only reported).

:func:`decide` is shared by ``/filter`` and ``/preempt`` (which drops candidate nodes the filter
would reject).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from extender.scoring import utilization
from extender.state import ClusterState, Wish, load_vector
from topology import labels
from topology.pods import Pod

BoolArray = npt.NDArray[np.bool_]


@dataclass(slots=True)
class Verdict:
    """The outcome for offered nodes: indexes that pass, and reasons for the others."""

    passing: list[int]
    failed: dict[str, str] = field(default_factory=dict)
    unresolvable: dict[str, str] = field(default_factory=dict)
    wish: Wish | None = None


def decide(state: ClusterState, pod: Pod, names: list[str], wish: Wish | None = None) -> Verdict:
    """Apply the module's rules to the offered ``names``.

    Parameters
    ----------
    state:
        The cache (read under its lock).
    pod:
        The pod being scheduled.
    names:
        Offered node names, in request order.
    wish:
        The pod's resolved data wish (resolved here when not given).

    Returns
    -------
    Verdict
        ``passing`` indexes into ``names`` in request order; every other offered node is in
        exactly one of ``failed`` / ``unresolvable`` with its reason.
    """
    with state.lock:
        wish = wish if wish is not None else state.resolve(pod)
        count = len(names)
        ok = np.ones(count, dtype=bool)
        unresolvable: dict[str, str] = {}
        failed: dict[str, str] = {}
        if count == 0:
            return Verdict([], failed, unresolvable, wish)
        ids = state.node_ids(names)
        if not state.ready:
            _unsynced(names, ids=ids, ok=ok, out=unresolvable)
        kbl = pod.kbl
        if state.has_dedicated_nodes or state.kbl_is_dedicated(kbl):
            _dedicated(state, kbl, names, ids=ids, ok=ok, out=unresolvable)
        if wish.required:
            _required(state, pod, wish, names, ids=ids, ok=ok, failed=failed, unresolvable=unresolvable)
        return Verdict(np.flatnonzero(ok).tolist(), failed, unresolvable, wish)


def _unsynced(names: list[str], *, ids: npt.NDArray[np.int64], ok: BoolArray, out: dict[str, str]) -> None:
    """Before the first full sync, a node the cache has not seen cannot be vouched for (its
    dedicated taint, its data): fail it closed, as unresolvable so preemption evicts nothing."""
    unknown = ids < 0
    for i in np.flatnonzero(unknown & ok).tolist():
        out[names[i]] = "the extender is starting and has not seen this node yet (first sync of its cache not finished): retry shortly"
    ok &= ~unknown


def _dedicated(
    state: ClusterState, kbl: str | None, names: list[str], *, ids: npt.NDArray[np.int64], ok: BoolArray, out: dict[str, str]
) -> None:
    owner, group = state.owners(ids)
    mine = state.kbl_id(kbl)
    foreign = (owner >= 0) & (owner != mine)
    who = f"KBL {_clip(kbl)}" if kbl else "no KBL"
    for i in np.flatnonzero(foreign & ok).tolist():
        owner_name = state.kbl_name(int(owner[i]))
        out[names[i]] = (
            f"node is dedicated to KBL {owner_name} (taint {labels.DEDICATED_TAINT}={owner_name}); "
            f"this pod belongs to {who}: set {labels.POD_KBL}={owner_name} only if it is part of that KBL"
        )
    ok &= ~foreign
    if state.kbl_is_dedicated(kbl):
        outside = group != mine
        for i in np.flatnonzero(outside & ok).tolist():
            out[names[i]] = (
                f"pods of KBL {kbl} run on its dedicated node group (nodes labelled {labels.KBL_LABEL}={kbl}); "
                "this node is not in it: the kbl controller grows the group when none has room"
            )
        ok &= ~outside


def _required(
    state: ClusterState,
    pod: Pod,
    wish: Wish,
    names: list[str],
    *,
    ids: npt.NDArray[np.int64],
    ok: BoolArray,
    failed: dict[str, str],
    unresolvable: dict[str, str],
) -> None:
    if not wish.usable:
        reason = f"{labels.POD_LOCALITY}: required, but {_clip(wish.problem or '')}"
        for i in np.flatnonzero(ok).tolist():
            unresolvable[names[i]] = reason
        ok[:] = False
        return
    table = state.level_bytes(wish).table
    known = ids >= 0
    local = np.zeros(len(names), dtype=np.float64)
    local[known] = table[ids[known], 0]
    needed = wish.needed_bytes
    holds = local >= needed * (1 - 1e-12)
    for i in np.flatnonzero(ok & ~known).tolist():
        unresolvable[names[i]] = "node is not in the extender's cache (not yet watched?): cannot check that it holds the data"
    for i in np.flatnonzero(ok & known & ~holds).tolist():
        share = local[i] / needed if needed > 0 else 0.0
        unresolvable[names[i]] = (
            f"{labels.POD_LOCALITY}: required, but the node holds {share:.0%} of the requested data of DataSet {wish.key} "
            f"({_human(local[i])} of {_human(needed)}); only nodes with a replica of every requested shard qualify"
        )
    ok &= known & holds
    if not ok.any():
        return
    used, alloc = state.load(ids)
    util = utilization(used, alloc, load_vector(pod.requests))
    full = ok & (util > 1.0)
    for i in np.flatnonzero(full).tolist():
        failed[names[i]] = (
            "node holds the data but has no room left for this pod in the extender's cache "
            "(bound pods plus in-flight assignments); preempting lower-priority pods can free it"
        )
    ok &= ~full


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


def preempt(state: ClusterState, pod: Pod, victims: dict[str, tuple[list[str], int]]) -> dict[str, tuple[list[str], int]]:
    """Candidate nodes and victims kept for a preemption.

    Nodes the filter would reject for this pod (dedicated groups, required locality: nothing
    a victim's eviction changes) are dropped, and so are nodes without victims (kube-scheduler
    rejects a node returned with none). Victims on the kept nodes stay as the scheduler chose
    them; they are returned as UIDs only, so no unknown UID can appear.
    """
    names = [n for n, (uids, _) in victims.items() if uids]
    verdict = decide(state, pod, names)
    # A node that is full in the cache is exactly what preemption is for: keep it.
    keep = set(verdict.passing) | {i for i, n in enumerate(names) if n in verdict.failed}
    return {names[i]: victims[names[i]] for i in sorted(keep)}
