"""The kube-scheduler extender wire messages, typed at the edge.

kube-scheduler marshals its extender structs (``k8s.io/kube-scheduler/extender/v1``) without
JSON tags, so the wrapper fields arrive in Go's **PascalCase** (``Pod``, ``Nodes``,
``NodeNames``) and unused pointer fields arrive as ``null``; the embedded Pod and Node objects
are ordinary camelCase Kubernetes JSON. The TypedDicts below spell those names exactly. The
``parse_*`` functions turn a decoded body into small frozen dataclasses and raise
:class:`~topology.errors.ProtocolError` naming the offending field; the ``*_reply`` builders
produce replies in the form that matches the request (``NodeNames`` for ``NodeNames``, a
``NodeList`` for ``Nodes``), never naming a node that was not offered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import numpy as np
import numpy.typing as npt
import orjson

from topology.errors import ProtocolError

MIN_PRIORITY = 0
MAX_PRIORITY = 10
#: Fragments per node: one per score 0..10.
WIDTH = MAX_PRIORITY - MIN_PRIORITY + 1


class NodeList(TypedDict, total=False):
    """A ``v1.NodeList`` as Go marshals it (``items`` may be ``null``)."""

    apiVersion: str
    kind: str
    metadata: dict[str, Any]
    items: list[dict[str, Any]] | None


class ExtenderArgs(TypedDict):
    """Filter and prioritize request."""

    Pod: dict[str, Any] | None
    Nodes: NodeList | None
    NodeNames: list[str] | None


class ExtenderFilterResult(TypedDict):
    """Filter reply."""

    Nodes: NodeList | None
    NodeNames: list[str] | None
    FailedNodes: dict[str, str]
    FailedAndUnresolvableNodes: dict[str, str]
    Error: str


class HostPriority(TypedDict):
    """One entry of the prioritize reply (a ``HostPriorityList`` is a JSON array of these)."""

    Host: str
    Score: int


class ExtenderBindingArgs(TypedDict):
    """Bind request."""

    PodName: str
    PodNamespace: str
    PodUID: str
    Node: str


class ExtenderBindingResult(TypedDict):
    """Bind reply."""

    Error: str


class MetaPod(TypedDict):
    UID: str


class MetaVictims(TypedDict):
    Pods: list[MetaPod]
    NumPDBViolations: int


class Victims(TypedDict):
    Pods: list[dict[str, Any]]
    NumPDBViolations: int


class ExtenderPreemptionArgs(TypedDict):
    """Preempt request: one of the two victim maps is set, the other is ``null``."""

    Pod: dict[str, Any] | None
    NodeNameToVictims: dict[str, Victims] | None
    NodeNameToMetaVictims: dict[str, MetaVictims] | None


class ExtenderPreemptionResult(TypedDict):
    """Preempt reply, always in the UID form."""

    NodeNameToMetaVictims: dict[str, MetaVictims]


Form = Literal["names", "nodes"]


@dataclass(frozen=True, slots=True)
class Candidates:
    """A parsed filter/prioritize request.

    ``names`` are the offered node names in request order. ``items`` holds the full Node
    objects when the request used the ``Nodes`` form (``None`` in the ``NodeNames`` form).
    """

    pod: Mapping[str, Any]
    names: list[str]
    form: Form
    items: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class BindRequest:
    pod_name: str
    namespace: str
    uid: str
    node: str


@dataclass(frozen=True, slots=True)
class PreemptRequest:
    """A parsed preempt request: victims per node as UIDs, whichever form was sent."""

    pod: Mapping[str, Any]
    victims: dict[str, tuple[list[str], int]]


def _field(body: Any, name: str) -> Any:
    """A wrapper field by its PascalCase name (Go would also accept other casings; so do we)."""
    if name in body:
        return body[name]
    lowered = name.lower()
    for key, value in body.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def _object(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ProtocolError(f"{what}: expected a JSON object, got {_kind(body)}")
    return body


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _pod(body: Mapping[str, Any]) -> Mapping[str, Any]:
    pod = _field(body, "Pod")
    if pod is None:
        raise ProtocolError("Pod: missing or null (kube-scheduler always sends the pod being scheduled)")
    pod = _object(pod, "Pod")
    meta = pod.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta.get("name"):
        raise ProtocolError("Pod.metadata.name: missing or not a string")
    return pod


def _all_strings(items: list[Any]) -> bool:
    """True if every item is a ``str``: ``str.join`` checks that in C, 4x faster at 5,000 names
    than collecting the item types in a set (the prioritize hot path)."""
    try:
        "".join(items)
    except TypeError:
        return False
    return True


def parse_args(body: Any) -> Candidates:
    """Parse an ``ExtenderArgs`` body (filter and prioritize).

    Either ``NodeNames`` (``nodeCacheCapable: true``) or ``Nodes`` (a NodeList) must be set;
    when both are, ``NodeNames`` wins (it is what a node-cache-capable extender is sent).

    Raises
    ------
    ProtocolError
        The body is not an object, ``Pod`` is missing, neither node field is set, or a field
        has the wrong type; the message names the field.
    """
    body = _object(body, "request body")
    pod = _pod(body)
    names = _field(body, "NodeNames")
    if names is not None:
        if not isinstance(names, list) or not _all_strings(names):
            raise ProtocolError("NodeNames: expected an array of node names")
        return Candidates(pod, names, "names")
    nodes = _field(body, "Nodes")
    if nodes is None:
        raise ProtocolError("Nodes and NodeNames are both missing or null: one of them must list the candidate nodes")
    nodes = _object(nodes, "Nodes")
    items = nodes.get("items")
    if items is None:
        return Candidates(pod, [], "nodes", [])
    if not isinstance(items, list):
        raise ProtocolError(f"Nodes.items: expected an array of Node objects, got {_kind(items)}")
    out: list[str] = []
    for i, item in enumerate(items):
        meta = item.get("metadata") if isinstance(item, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"Nodes.items[{i}].metadata.name: missing or not a string")
        out.append(name)
    return Candidates(pod, out, "nodes", items)


def filter_reply(
    request: Candidates, passing: Sequence[int], failed: Mapping[str, str], unresolvable: Mapping[str, str]
) -> ExtenderFilterResult:
    """An ``ExtenderFilterResult`` in the request's form.

    ``passing`` are indexes into ``request.names`` (so only offered nodes can be named).
    """
    if request.form == "names":
        names = request.names
        return {
            "Nodes": None,
            "NodeNames": names if len(passing) == len(names) else [names[i] for i in passing],
            "FailedNodes": dict(failed),
            "FailedAndUnresolvableNodes": dict(unresolvable),
            "Error": "",
        }
    items = request.items or []
    return {
        "Nodes": {"metadata": {}, "items": [items[i] for i in passing]},
        "NodeNames": None,
        "FailedNodes": dict(failed),
        "FailedAndUnresolvableNodes": dict(unresolvable),
        "Error": "",
    }


def priority_reply(names: Sequence[str], scores: Sequence[int]) -> list[HostPriority]:
    """A ``HostPriorityList``: one entry per offered node.

    ``scores`` must already be integers within 0..10 (:func:`extender.scoring.normalize` makes
    them so); they are passed through as given, on the hot path.
    """
    return [{"Host": n, "Score": s} for n, s in zip(names, scores, strict=True)]


def priority_entries(name: str) -> list[bytes]:
    """The encoded ``HostPriority`` of node ``name`` for every score 0..10 (index = score).

    Built once per node so that a prioritize reply is a join of cached fragments, not 5,000
    dicts encoded anew: ``priority_entries("a")[7] == b'{"Host":"a","Score":7}'``.
    """
    host = b'{"Host":' + orjson.dumps(name) + b',"Score":'
    return [host + str(score).encode() + b"}" for score in range(MIN_PRIORITY, MAX_PRIORITY + 1)]


def priority_body(
    names: Sequence[str], ids: npt.NDArray[np.int64], scores: npt.NDArray[np.int64], entries: npt.NDArray[np.object_]
) -> bytes:
    """The encoded ``HostPriorityList`` (same bytes as ``orjson.dumps(priority_reply(names, scores))``).

    Parameters
    ----------
    names:
        Offered node names, request order.
    ids:
        Their node ids (``-1``: unknown to the cache); a known id's entries name exactly the
        offered name, since the id was looked up by that name.
    scores:
        Integers within 0..10, one per name.
    entries:
        :func:`priority_entries` rows by node id (:attr:`PriorityFragments.entries`).
    """
    if ids.size == 0:
        return b"[]"
    if int(ids.min()) >= 0:
        parts: list[bytes] = entries[ids, scores].tolist()
    else:
        parts = [
            entries[i, s] if i >= 0 else priority_entries(n)[s] for n, i, s in zip(names, ids.tolist(), scores.tolist(), strict=True)
        ]
    return b"[" + b",".join(parts) + b"]"


class PriorityFragments:
    """The encoded ``HostPriority`` of every node id and score, owned by the wire module.

    Node ids are dense and never reused for another name, so the fragments of node ``i`` are
    built once, the first time a reply may name it (:meth:`ensure`), from ``name_of(i)``, and
    kept flat: fragment ``i * 11 + score``, so a reply is one ``take`` and one ``join``.
    """

    def __init__(self) -> None:
        self._flat: npt.NDArray[np.object_] = np.empty(0, dtype=object)
        self._built = 0

    @property
    def entries(self) -> npt.NDArray[np.object_]:
        """The fragments as ``(node ids, 11)`` (a view; :func:`priority_body`'s ``entries``)."""
        return self._flat[: self._built * WIDTH].reshape(self._built, WIDTH)

    def ensure(self, count: int, name_of: Callable[[int], str]) -> None:
        """Build the fragments of node ids ``built .. count - 1`` (capacity grows by doubling)."""
        if count <= self._built:
            return
        if count * WIDTH > self._flat.shape[0]:
            grown = np.empty(max(count, 2 * self._built) * WIDTH, dtype=object)
            grown[: self._built * WIDTH] = self._flat[: self._built * WIDTH]
            self._flat = grown
        for i in range(self._built, count):
            self._flat[i * WIDTH : (i + 1) * WIDTH] = priority_entries(name_of(i))
        self._built = count

    def body(self, names: Sequence[str], ids: npt.NDArray[np.int64], scores: npt.NDArray[np.int64]) -> bytes:
        """The encoded ``HostPriorityList`` (same bytes as :func:`priority_body`); every known id
        must be below :meth:`ensure`'s count."""
        if ids.size == 0:
            return b"[]"
        if int(ids.min()) < 0:
            return priority_body(names, ids, scores, self.entries)
        parts: list[bytes] = self._flat[ids * WIDTH + scores].tolist()
        return b"[" + b",".join(parts) + b"]"


def parse_bind(body: Any) -> BindRequest:
    """Parse an ``ExtenderBindingArgs`` body.

    Raises
    ------
    ProtocolError
        A field is missing, null or not a string (``PodUID`` may be empty).
    """
    body = _object(body, "request body")
    values: dict[str, str] = {}
    for name in ("PodName", "PodNamespace", "PodUID", "Node"):
        value = _field(body, name)
        if not isinstance(value, str) or (not value and name != "PodUID"):
            raise ProtocolError(f"{name}: missing or not a non-empty string")
        values[name] = value
    return BindRequest(values["PodName"], values["PodNamespace"], values["PodUID"], values["Node"])


def _pdb(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{where}.NumPDBViolations: expected an integer")
    return value


def parse_preempt(body: Any) -> PreemptRequest:
    """Parse an ``ExtenderPreemptionArgs`` body, either victims form, into UIDs per node.

    Raises
    ------
    ProtocolError
        Missing pod, a victims map that is not an object of ``{Pods, NumPDBViolations}``, or a
        victim without a UID.
    """
    body = _object(body, "request body")
    pod = _pod(body)
    meta = _field(body, "NodeNameToMetaVictims")
    if meta is not None:
        return PreemptRequest(pod, _victims(meta, "NodeNameToMetaVictims", _meta_uid))
    full = _field(body, "NodeNameToVictims")
    if full is not None:
        return PreemptRequest(pod, _victims(full, "NodeNameToVictims", _pod_uid))
    return PreemptRequest(pod, {})


def _meta_uid(item: Mapping[str, Any], where: str) -> str:
    """The UID of a ``MetaPod`` (``{"UID": ...}``)."""
    uid = _field(item, "UID")
    if not isinstance(uid, str) or not uid:
        raise ProtocolError(f"{where}.UID: missing or not a string")
    return uid


def _pod_uid(item: Mapping[str, Any], where: str) -> str:
    """The UID of a full ``v1.Pod`` (``metadata.uid``)."""
    item_meta = item.get("metadata")
    uid = item_meta.get("uid") if isinstance(item_meta, Mapping) else None
    if not isinstance(uid, str) or not uid:
        raise ProtocolError(f"{where}.metadata.uid: missing or not a string")
    return uid


def _victims(
    raw_map: Any, name: str, uid_of: Callable[[Mapping[str, Any], str], str]
) -> dict[str, tuple[list[str], int]]:
    """``{node: ([victim UIDs], NumPDBViolations)}`` from either victims map."""
    out: dict[str, tuple[list[str], int]] = {}
    for node, raw in _object(raw_map, name).items():
        where = f"{name}[{node!r}]"
        if raw is None:
            out[node] = ([], 0)
            continue
        victims = _object(raw, where)
        pods = _list(_field(victims, "Pods"), f"{where}.Pods")
        uids = [uid_of(_object(item, f"{where}.Pods[{i}]"), f"{where}.Pods[{i}]") for i, item in enumerate(pods)]
        out[node] = (uids, _pdb(_field(victims, "NumPDBViolations"), where))
    return out


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtocolError(f"{where}: expected an array, got {_kind(value)}")
    return value


def preempt_reply(victims: Mapping[str, tuple[Sequence[str], int]]) -> ExtenderPreemptionResult:
    """An ``ExtenderPreemptionResult`` in the UID form; nodes without victims are left out."""
    return {
        "NodeNameToMetaVictims": {
            node: {"Pods": [{"UID": uid} for uid in uids], "NumPDBViolations": pdb} for node, (uids, pdb) in victims.items() if uids
        }
    }
