"""Which node a pod may use: the one eligibility rule shared by filter, prioritize and pricing.

Two parts, both read from the cache (:class:`~extender.state.ClusterState`), never the API:

* **Dedicated groups** (:func:`dedicated`): a node tainted ``kbl.io/dedicated=<K>`` belongs to
  KBL ``K``, and pods of any other KBL (or of none) may not use it, even if they tolerate the
  taint (*foreign*); the pods of a KBL whose group is dedicated (its KBL object says so, or a node
  carries its dedicated taint) may only use nodes labelled ``kbl.io/kbl=<K>`` (*outside*
  otherwise). The filter turns these masks into reasons; nothing a victim's eviction changes.
* **Usability** (:func:`eligible`): the dedicated rule, plus the node is present, ready and
  schedulable, its taints are tolerated and the pod's ``nodeSelector`` matches its labels. This
  is what prioritize asks of a better node that was not offered, and what pending-batch pricing
  asks of every slot. (The filter leaves readiness, taints and selectors to kube-scheduler's own
  plugins, which ran before it.)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from extender.state import ClusterState
from topology.pods import Pod

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def dedicated(state: ClusterState, kbl: str | None, ids: IntArray) -> tuple[BoolArray, BoolArray]:
    """``(foreign, outside)`` per node id for a pod of KBL ``kbl`` (``None``: no KBL).

    ``foreign``: the node is dedicated to another KBL. ``outside``: the pod's KBL is dedicated
    and the node is not in its group (an unknown id ``-1`` is in no group).
    """
    none = np.zeros(ids.shape[0], dtype=bool)
    is_dedicated = state.kbl_is_dedicated(kbl)
    if not (state.has_dedicated_nodes or is_dedicated):
        return none, none
    owner, group = state.owners(ids)
    mine = state.kbl_id(kbl)
    foreign = (owner >= 0) & (owner != mine)
    outside = (group != mine) if is_dedicated else none
    return foreign, outside


def eligible(state: ClusterState, pod: Pod, ids: IntArray) -> BoolArray:
    """Per node id: may ``pod`` run there as far as the cache knows (module docstring)?

    Vector work over ``ids``; per-node Python only for the tainted nodes among them and, when
    the pod has a ``nodeSelector``, for the nodes still eligible.
    """
    foreign, outside = dedicated(state, pod.kbl, ids)
    ok = state.usable(ids) & ~foreign & ~outside
    if not ok.any():
        return ok
    tainted = state.tainted_ids()
    if tainted.size:
        for i in np.flatnonzero(ok & np.isin(ids, tainted)).tolist():
            ok[i] = pod.tolerates(state.taints(int(ids[i])))
    if pod.node_selector:
        selector = pod.node_selector.items()
        for i in np.flatnonzero(ok).tolist():
            node = state.node(int(ids[i]))
            ok[i] = node is not None and all(node.labels.get(k) == v for k, v in selector)
    return ok
