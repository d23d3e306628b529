"""Snapshots: cluster state from a file, exactly as ``kubectl get ... -o json`` prints it.

A snapshot is a Kubernetes ``List`` (or ``NodeList``, ``PodList``, a single object, or a YAML
stream of any of these) of Node, Pod, DataSet and KBL objects. :func:`load_snapshot` reads one
into a :class:`Snapshot` of typed objects; each invalid object is *rejected with its reason*
(kind, name, field) into :attr:`Snapshot.rejected`, so one bad object never poisons the rest and
never disappears silently. :meth:`Snapshot.cluster` builds the :class:`~topology.clusters.Cluster`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
import yaml

from topology import labels
from topology.clusters import Cluster
from topology.datasets import DataSet
from topology.errors import ObjectError, SnapshotError
from topology.kbls import KBL
from topology.nodes import NODE_METADATA_KEPT, NODE_SPEC_KEPT, NODE_STATUS_KEPT, Node
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
        return read_objects(iter_file_objects(source), rack_label=rack_label)
    return read_objects(flatten([source]), rack_label=rack_label)


def iter_file_objects(source: str | Path) -> Iterator[Any]:
    """The raw objects of a snapshot file, one at a time (the streaming form of :func:`read_file_objects`).

    A JSON ``List`` (what ``kubectl get -o json`` writes) is split into its items without parsing
    them (msgspec), then each item is parsed on its own when it is asked for; a Node is parsed
    with only the fields kbl reads (the image list and managedFields are skipped, never
    allocated). So a 736 MiB snapshot of 100,000 nodes never exists as one tree of Python
    objects. Anything else (YAML, a bare array, a single object) goes through
    :func:`read_file_objects`.

    Raises
    ------
    SnapshotError
        As :func:`read_file_objects`.
    """
    path = Path(source)
    try:
        data = path.read_bytes()
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
        yield _parse_item(raw, item_kind, str(path))


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


def _parse_item(raw: msgspec.Raw, item_kind: str | None, source: str) -> Any:
    """One item of a List: a Node with only the fields kbl reads (one pass), anything else whole."""
    try:
        try:
            slim = msgspec.json.decode(raw, type=_SlimNode)
        except msgspec.ValidationError:  # not an object, or a malformed part: the whole item, for the reader
            return _whole(raw, item_kind)
        kind = getattr(slim, "kind", msgspec.UNSET)
        kind = item_kind if kind is msgspec.UNSET else kind
        if kind != "Node":
            return _whole(raw, item_kind)
        obj = msgspec.to_builtins(slim)
    except (msgspec.DecodeError, orjson.JSONDecodeError) as exc:
        raise SnapshotError(f"{source}: not valid JSON: {exc}") from None
    obj.setdefault("kind", kind)  # kubectl omits kind in typed lists
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
