"""Per-pod state computed once, and the derived tables a decision reads, over one cache.

kube-scheduler asks ``/filter`` and then ``/prioritize`` about the same pod. As in
scheduler-plugins, where PreFilter writes per-pod state into the ``CycleState`` that Filter and
Score then read, :meth:`Framework.cycle` computes a :class:`Cycle` (the typed pod, its resolved
data wish, its request vector) once and hands the same one to the next verb about that pod while
nothing it depends on changed (the pod object, the DataSets and KBLs, the node set).

:class:`Framework` also owns what is derived from the cache for decisions
(:class:`~extender.costs.CostTables`, :class:`~extender.pricing.BatchPricing`) and the encoded
reply templates of recent offered lists (:class:`~extender.messages.PriorityTemplate`), so that
:class:`~extender.state.ClusterState` stays the cache and nothing else.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from extender.costs import CostTables
from extender.messages import PriorityTemplate, key_is_exact, names_key
from extender.pricing import BatchPricing
from extender.state import ClusterState, load_vector
from extender.wishes import Wish, resolve
from topology.pods import Pod

#: Pods whose cycle is remembered between their filter and prioritize calls.
CYCLE_CACHE_SIZE = 256
#: Parsed pods remembered by ``(uid, resourceVersion)``.
POD_CACHE_SIZE = 256
#: Offered lists whose encoded reply template is remembered.
TEMPLATE_CACHE_SIZE = 8


@dataclass(frozen=True, slots=True)
class Cycle:
    """What every verb needs to know about one pod, computed once (module docstring)."""

    pod: Pod
    wish: Wish
    request: npt.NDArray[np.float64]


class Framework:
    """Decision-side companions of a :class:`~extender.state.ClusterState` (module docstring)."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.costs = CostTables(state)
        self.pricing = BatchPricing(state, self.costs)
        self._templates: OrderedDict[tuple[int, str], PriorityTemplate] = OrderedDict()
        self._cycles: OrderedDict[str, tuple[tuple[int, int], Cycle]] = OrderedDict()
        self._pods: OrderedDict[tuple[str, str], Pod] = OrderedDict()

    def pod(self, raw: Mapping[str, Any]) -> Pod:
        """The typed pod of a request's raw ``Pod``, parsed once per ``(uid, resourceVersion)``.

        The API server gives every change of an object a new ``resourceVersion``, so a pod sent
        again with both unchanged (its filter then its prioritize call, a retry) is the same
        object; parsing it again costs more than the rest of a filter call. Pods without both
        are parsed every time. Call under ``state.lock``.

        Raises
        ------
        ObjectError
            The pod is invalid (never remembered).
        """
        meta = raw.get("metadata")
        uid = meta.get("uid") if isinstance(meta, Mapping) else None
        version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        if not (isinstance(uid, str) and uid and isinstance(version, str) and version):
            return Pod.from_object(raw)
        key = (uid, version)
        pod = self._pods.get(key)
        if pod is None:
            pod = self._pods[key] = Pod.from_object(raw)
            while len(self._pods) > POD_CACHE_SIZE:
                self._pods.popitem(last=False)
        else:
            self._pods.move_to_end(key)
        return pod

    def cycle(self, pod: Pod) -> Cycle:
        """The pod's :class:`Cycle`: remembered if the same pod was seen with the same data and nodes.

        Call under ``state.lock``.
        """
        state = self.state
        key = pod.uid or pod.key
        version = (state.data_version, state.cluster.version)
        found = self._cycles.get(key)
        if found is not None and found[0] == version and found[1].pod == pod:
            self._cycles.move_to_end(key)
            return found[1]
        cycle = Cycle(pod, resolve(state.cluster, pod), load_vector(pod.requests))
        cycle.request.flags.writeable = False
        self._cycles[key] = (version, cycle)
        self._cycles.move_to_end(key)
        while len(self._cycles) > CYCLE_CACHE_SIZE:
            self._cycles.popitem(last=False)
        return cycle

    def reply(self, names: list[str], scores: npt.NDArray[np.int64], key: str | None = None) -> bytes:
        """The encoded prioritize reply: the offered list's :class:`~extender.messages.PriorityTemplate`
        (remembered for the last :data:`TEMPLATE_CACHE_SIZE` lists, by :func:`~extender.messages.names_key`)
        filled with ``scores``. Per call it costs O(offered names), whatever the cache holds."""
        if key is None:
            key = names_key(names)
        cache_key = (len(names), key)
        template = self._templates.get(cache_key)
        if template is None:
            template = PriorityTemplate(names, key)
            if key_is_exact(key, len(names)):  # else two different lists could share the key
                self._templates[cache_key] = template
                while len(self._templates) > TEMPLATE_CACHE_SIZE:
                    self._templates.popitem(last=False)
        return template.body(scores)
