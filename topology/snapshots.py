"""Snapshots: cluster state from a file, exactly as ``kubectl get ... -o json`` prints it.

A snapshot is a Kubernetes ``List`` (or ``NodeList``, ``PodList``, a single object, or a YAML
stream of any of these) of Node, Pod, DataSet and KBL objects. :func:`load_snapshot` reads one
into a :class:`Snapshot` of typed objects; each invalid object is *rejected with its reason*
(kind, name, field) into :attr:`Snapshot.rejected`, so one bad object never poisons the rest and
never disappears silently. :meth:`Snapshot.cluster` builds the :class:`~topology.clusters.Cluster`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import mmap
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
import yaml

from topology import labels
from topology.clusters import Cluster
from topology.datasets import DataSet, parse_index_rows
from topology.errors import ObjectError, SnapshotError
from topology.kbls import KBL
from topology.nodes import NODE_METADATA_KEPT, NODE_SPEC_KEPT, NODE_STATUS_KEPT, Node, Taint, node_of_parts, ready_condition
from topology.pods import Pod

#: Kinds a snapshot may hold; anything else is reported as ignored, not an error.
KINDS = ("Node", "Pod", "DataSet", "KBL")


@dataclass(slots=True)
class Snapshot:
    """Typed cluster state read from a file or a live listing."""

    nodes: list[Node] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    datasets: list[DataSet] = field(default_factory=list)
    kbls: list[KBL] = field(default_factory=list)
    rejected: list[ObjectError] = field(default_factory=list)
    ignored_kinds: dict[str, int] = field(default_factory=dict)

    def cluster(self) -> Cluster:
        """The topology graph of these nodes and datasets."""
        cluster = Cluster()
        with paused_gc():
            cluster.add_nodes(self.nodes)
            for dataset in self.datasets:
                cluster.set_dataset(dataset)
        return cluster

    def dataset(self, key: str) -> DataSet | None:
        """A dataset by ``namespace/name``."""
        return next((d for d in self.datasets if d.key == key), None)


def parse_documents(text: str, source: str = "<snapshot>") -> list[Any]:
    """Parse JSON, or YAML (possibly several documents), into a list of documents.

    Raises
    ------
    SnapshotError
        If the text is neither.
    """
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"{source}: not valid JSON: {exc}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SnapshotError(f"{source}: neither JSON nor YAML: {exc}") from None
    return docs


def flatten(documents: Iterable[Any], source: str = "<snapshot>") -> list[Any]:
    """Expand ``List``/``*List`` documents (and bare JSON arrays) into their items."""
    out: list[Any] = []
    for doc in documents:
        if isinstance(doc, list):
            out.extend(flatten(doc, source))
        elif isinstance(doc, Mapping) and isinstance(doc.get("items"), list) and str(doc.get("kind", "List")).endswith("List"):
            list_kind = str(doc.get("kind", "List"))
            item_kind = list_kind[: -len("List")] or None
            for item in doc["items"]:
                typed = item
                if item_kind and isinstance(item, dict) and "kind" not in item:
                    typed = {**item, "kind": item_kind}  # kubectl omits kind in typed lists
                out.append(typed)
        elif isinstance(doc, Mapping):
            out.append(doc)
        else:
            raise SnapshotError(f"{source}: expected Kubernetes objects or a List, got {type(doc).__name__}")
    return out


def read_objects(objects: Iterable[Any], *, rack_label: str = labels.DEFAULT_RACK) -> Snapshot:
    """Type raw objects into a :class:`Snapshot`, rejecting bad ones with their reason.

    ``objects`` may be an iterator: each raw object is typed and dropped before the next.
    """
    snap = Snapshot()
    for i, obj in enumerate(objects):
        if isinstance(obj, Node):  # typed as it was decoded
            snap.nodes.append(obj)
            continue
        kind = obj.get("kind") if isinstance(obj, Mapping) else None
        try:
            if kind == "Node":
                snap.nodes.append(Node.from_object(obj, rack_label=rack_label))
            elif kind == "Pod":
                snap.pods.append(Pod.from_object(obj))
            elif kind == "DataSet":
                snap.datasets.append(DataSet.from_object(obj))
            elif kind == "KBL":
                snap.kbls.append(KBL.from_object(obj))
            elif isinstance(kind, str) and kind:
                snap.ignored_kinds[kind] = snap.ignored_kinds.get(kind, 0) + 1
            else:
                snap.rejected.append(ObjectError("?", f"items[{i}]", "kind", "missing: cannot tell what this object is"))
        except ObjectError as exc:
            snap.rejected.append(exc)
    _reject_duplicates(snap)
    return snap


def _reject_duplicates(snap: Snapshot) -> None:
    """Keep the first object of each name; later duplicates are rejected, not merged."""
    seen: set[str] = set()
    nodes = []
    for node in snap.nodes:
        if node.name in seen:
            snap.rejected.append(ObjectError("Node", node.name, "metadata.name", "duplicate node; the first one is kept"))
            continue
        seen.add(node.name)
        nodes.append(node)
    snap.nodes = nodes
    seen = set()
    datasets = []
    for ds in snap.datasets:
        if ds.key in seen:
            snap.rejected.append(ObjectError("DataSet", ds.key, "metadata.name", "duplicate dataset; the first one is kept"))
            continue
        seen.add(ds.key)
        datasets.append(ds)
    snap.datasets = datasets


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a first list is read (restored after, if it was on).

    Reading 100,000 nodes allocates millions of objects and no cycles; each allocation burst
    would trigger a collection that walks the whole growing heap again (about half the time
    of a cold start was spent there).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_snapshot(source: str | Path | Mapping[str, Any] | list[Any], *, rack_label: str = labels.DEFAULT_RACK) -> Snapshot:
    """Load a snapshot from a path, or from already-parsed JSON.

    Parameters
    ----------
    source:
        A file path (JSON or YAML; ``kubectl get nodes,pods,datasets,kbls -A -o json``), or a
        parsed ``List``/object/list of objects.
    rack_label:
        The node label that names the rack.

    Raises
    ------
    SnapshotError
        If the file cannot be read or is not JSON/YAML of Kubernetes objects. Individual bad
        objects do not raise: they land in :attr:`Snapshot.rejected`.
    """
    if isinstance(source, str | Path):
        with paused_gc():
            return read_objects(iter_file_objects(source, typed=True, rack_label=rack_label), rack_label=rack_label)
    return read_objects(flatten([source]), rack_label=rack_label)


def iter_file_objects(source: str | Path, *, typed: bool = False, rack_label: str = labels.DEFAULT_RACK) -> Iterator[Any]:
    """The raw objects of a snapshot file, one at a time (the streaming form of :func:`read_file_objects`).

    A JSON ``List`` (what ``kubectl get -o json`` writes) is split into its items without parsing
    them (msgspec), then each item is parsed on its own when it is asked for; a Node is parsed
    with only the fields kbl reads (the image list and managedFields are skipped, never
    allocated). So a 736 MiB snapshot of 100,000 nodes never exists as one tree of Python
    objects. Anything else (YAML, a bare array, a single object) goes through
    :func:`read_file_objects`.

    ``typed`` (what :func:`load_snapshot` asks): a well-formed Node comes back as a
    :class:`~topology.nodes.Node`, typed as it is decoded, and a DataSet's
    ``status.placement.shards`` as a numpy array read straight from its bytes (for
    :meth:`~topology.datasets.DataSet.from_object`), not as millions of small lists.

    Raises
    ------
    SnapshotError
        As :func:`read_file_objects`.
    """
    path = Path(source)
    data: bytes | mmap.mmap
    try:
        with path.open("rb") as handle:  # mapped, not copied: the items are slices of the page cache
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None
    try:
        listed = msgspec.json.decode(data, type=_RawList)
    except (msgspec.DecodeError, msgspec.ValidationError):
        listed = None
    if listed is None or not isinstance(listed.kind, str) or not listed.kind.endswith("List"):
        del data
        yield from read_file_objects(path)
        return
    item_kind = listed.kind[: -len("List")] or None
    items, listed = listed.items, None
    for n in range(len(items)):
        raw, items[n] = items[n], _EMPTY  # the item's bytes are not kept once typed
        yield _parse_item(raw, item_kind, str(path), typed=typed, rack_label=rack_label)


class _ListBody(msgspec.Struct):
    items: list[msgspec.Raw] | None = None
    metadata: Any = None


def read_list_body(
    body: bytes, item_kind: str, *, typed: bool = False, rack_label: str = labels.DEFAULT_RACK
) -> tuple[list[Any], dict[str, Any]]:
    """A list response of the API server: its items and its ``metadata``.

    Node items are decoded with only the fields kbl reads (:data:`~topology.nodes.NODE_METADATA_KEPT`
    and beside): a page of 500 real EKS Nodes is mostly image lists, skipped, never allocated.
    Other items are parsed whole. Items that are not objects are left out.

    ``typed``, for a reader whose only use of listed objects is to type them (the extender): a
    well-formed Node comes back as a :class:`~topology.nodes.Node`, typed as it is decoded, and a
    DataSet as :meth:`~topology.datasets.DataSet.from_object` reads it and nothing more
    (``status.placement.shards`` as a numpy array read from its bytes). Anything unusual stays a
    dict, for the careful readers. A 1,000,000-piece placement costs a second as lists.

    Raises
    ------
    SnapshotError
        If the body is not JSON, or not a list response.
    """
    try:
        listed = msgspec.json.decode(body, type=_ListBody)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SnapshotError(f"not a list response: {exc}") from None
    items = [_parse_item(raw, item_kind, "<list response>", typed=typed, rack_label=rack_label) for raw in listed.items or ()]
    metadata = listed.metadata if isinstance(listed.metadata, dict) else {}
    return [i for i in items if isinstance(i, dict | Node)], metadata


class _RawList(msgspec.Struct):
    items: list[msgspec.Raw]
    kind: Any = "List"


_EMPTY = msgspec.Raw(b"{}")


def _kept(name: str, fields: tuple[str, ...]) -> type[msgspec.Struct]:
    return msgspec.defstruct(name, [(f, Any, msgspec.UNSET) for f in fields], omit_defaults=True)


_NodeMetadata = _kept("_NodeMetadata", NODE_METADATA_KEPT)
_NodeSpec = _kept("_NodeSpec", NODE_SPEC_KEPT)
_NodeStatus = _kept("_NodeStatus", NODE_STATUS_KEPT)
_SlimNode = msgspec.defstruct(
    "_SlimNode",
    [
        ("apiVersion", Any, msgspec.UNSET),
        ("kind", Any, msgspec.UNSET),
        ("metadata", _NodeMetadata | None, msgspec.UNSET),
        ("spec", _NodeSpec | None, msgspec.UNSET),
        ("status", _NodeStatus | None, msgspec.UNSET),
    ],
    omit_defaults=True,
)


class _Taint(msgspec.Struct):
    key: str
    value: str | None = None
    effect: str | None = None


class _Condition(msgspec.Struct):
    type: Any = None
    status: Any = None
    last_transition_time: Any = msgspec.field(default=None, name="lastTransitionTime")


class _TypedMetadata(msgspec.Struct):
    name: str
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    creation_timestamp: str | None = msgspec.field(default=None, name="creationTimestamp")


class _TypedSpec(msgspec.Struct):
    taints: list[_Taint] | None = None
    unschedulable: bool | None = None
    provider_id: str | None = msgspec.field(default=None, name="providerID")


class _TypedStatus(msgspec.Struct):
    allocatable: dict[str, str] | None = None
    conditions: list[_Condition] | None = None


class _TypedNode(msgspec.Struct):
    """A well-formed Node, typed by msgspec as it is decoded (anything else fails validation)."""

    metadata: _TypedMetadata
    kind: str | None = None
    spec: _TypedSpec | None = None
    status: _TypedStatus | None = None


def _typed_node(raw: msgspec.Raw, item_kind: str | None, rack_label: str) -> Node | None:
    """A Node straight from its bytes, or ``None`` (not a Node, or not plainly well formed)."""
    try:
        item = msgspec.json.decode(raw, type=_TypedNode)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if (item.kind or item_kind) != "Node" or not item.metadata.name:
        return None
    meta, spec, status = item.metadata, item.spec or _NO_SPEC, item.status or _NO_STATUS
    ready, since = True, ""
    for cond in status.conditions or ():
        if cond.type == "Ready":
            ready, since = ready_condition(cond.status, cond.last_transition_time)
    taints = tuple(Taint(t.key, t.value or "", t.effect or "") for t in spec.taints or ())
    return node_of_parts(
        Node,
        meta.name,
        labels=meta.labels or {},
        annotations=meta.annotations or {},
        allocatable=status.allocatable or {},
        taints=taints,
        ready=ready,
        unschedulable=bool(spec.unschedulable),
        provider_id=spec.provider_id or "",
        created=meta.creation_timestamp or "",
        rack_label=rack_label,
        ready_transition=since,
    )


_NO_SPEC = _TypedSpec()
_NO_STATUS = _TypedStatus()


class _Placement(msgspec.Struct):
    nodes: Any = msgspec.UNSET
    shards: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class _DataSetStatus(msgspec.Struct):
    placement: _Placement | msgspec.UnsetType | None = msgspec.UNSET
    transfers: Any = msgspec.UNSET


class _DataSetItem(msgspec.Struct):
    """A DataSet as :meth:`~topology.datasets.DataSet.from_object` reads it, ``shards`` left as bytes."""

    api_version: Any = msgspec.field(default=msgspec.UNSET, name="apiVersion")
    kind: Any = msgspec.UNSET
    metadata: Any = msgspec.UNSET
    spec: Any = msgspec.UNSET
    status: _DataSetStatus | msgspec.UnsetType | None = msgspec.UNSET


def _parse_item(
    raw: msgspec.Raw,
    item_kind: str | None,
    source: str,
    *,
    typed: bool = False,
    rack_label: str = labels.DEFAULT_RACK,
) -> Any:
    """One item of a List: a Node with only the fields kbl reads (one pass), anything else whole.

    With ``typed``, a well-formed Node comes back as a :class:`Node`, and a DataSet's
    ``status.placement.shards`` as a numpy array read straight from its bytes
    (:func:`~topology.datasets.parse_index_rows`), for :meth:`~topology.datasets.DataSet.from_object`
    only: that object is not raw JSON any more. Anything unusual takes the raw path, so the careful readers reject it with their reason.
    """
    if typed:
        node = _typed_node(raw, item_kind, rack_label)
        if node is not None:
            return node
    try:
        try:
            slim = msgspec.json.decode(raw, type=_SlimNode)
        except msgspec.ValidationError:  # not an object, or a malformed part: the whole item, for the reader
            return _whole(raw, item_kind)
        kind = getattr(slim, "kind", msgspec.UNSET)
        kind = item_kind if kind is msgspec.UNSET else kind
        if kind == "DataSet" and typed:
            return _dataset_item(raw, item_kind)
        if kind != "Node":
            return _whole(raw, item_kind)
        obj = _slim_dict(slim)
    except (msgspec.DecodeError, orjson.JSONDecodeError) as exc:
        raise SnapshotError(f"{source}: not valid JSON: {exc}") from None
    obj.setdefault("kind", kind)  # kubectl omits kind in typed lists
    return obj


def _slim_dict(slim: Any) -> dict[str, Any]:
    """A slim Node struct as a dict, one level deep: the kept fields' values are already plain
    JSON values (typed ``Any``), so nothing below them is copied again (``to_builtins`` would)."""
    out: dict[str, Any] = {}
    for name in slim.__struct_fields__:
        value = getattr(slim, name)
        if value is msgspec.UNSET:
            continue
        if isinstance(value, msgspec.Struct):
            value = {k: v for k in value.__struct_fields__ if (v := getattr(value, k)) is not msgspec.UNSET}
        out[name] = value
    return out


def _dataset_item(raw: msgspec.Raw, item_kind: str | None) -> Any:
    try:
        item = msgspec.json.decode(raw, type=_DataSetItem)
    except msgspec.ValidationError:  # an unusual shape: the whole item, for the careful reader
        return _whole(raw, item_kind)
    status = item.status
    placement = status.placement if isinstance(status, _DataSetStatus) else None
    if not isinstance(status, _DataSetStatus) or not isinstance(placement, _Placement):
        return _whole(raw, item_kind)
    if isinstance(placement.shards, msgspec.UnsetType):
        return _whole(raw, item_kind)
    rows = parse_index_rows(placement.shards)
    shards = rows if rows is not None else orjson.loads(bytes(placement.shards))
    parts = (("apiVersion", item.api_version), ("kind", item.kind), ("metadata", item.metadata), ("spec", item.spec))
    obj = {k: v for k, v in parts if v is not msgspec.UNSET}
    placed: dict[str, Any] = {"shards": shards}
    if placement.nodes is not msgspec.UNSET:
        placed["nodes"] = placement.nodes
    obj["status"] = {"placement": placed}
    if status.transfers is not msgspec.UNSET:
        obj["status"]["transfers"] = status.transfers
    obj.setdefault("kind", item_kind or "DataSet")
    return obj


def _whole(raw: msgspec.Raw, item_kind: str | None) -> Any:
    obj = orjson.loads(bytes(raw))
    if isinstance(obj, dict) and item_kind and "kind" not in obj:
        obj["kind"] = item_kind
    return obj


def read_file_objects(source: str | Path) -> list[Any]:
    """The raw objects of a snapshot file (JSON or YAML, Lists expanded), untyped.

    Raises
    ------
    SnapshotError
        If the file cannot be read, is not UTF-8, or is not JSON/YAML of Kubernetes objects.
    """
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SnapshotError(f"snapshot {path} is not UTF-8 text") from None
    return flatten(parse_documents(text, str(path)), str(path))
