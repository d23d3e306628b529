"""Snapshots: cluster state from a file, exactly as ``kubectl get ... -o json`` prints it.

A snapshot is a Kubernetes ``List`` (or ``NodeList``, ``PodList``, a single object, or a YAML
stream of any of these) of Node, Pod, DataSet and KBL objects. :func:`load_snapshot` reads one
into a :class:`Snapshot` of typed objects; each invalid object is *rejected with its reason*
(kind, name, field) into :attr:`Snapshot.rejected`, so one bad object never poisons the rest and
never disappears silently. :meth:`Snapshot.cluster` builds the :class:`~topology.clusters.Cluster`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from topology import labels
from topology.clusters import Cluster
from topology.datasets import DataSet
from topology.errors import ObjectError, SnapshotError
from topology.kbls import KBL
from topology.nodes import Node
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
        for node in self.nodes:
            cluster.set_node(node)
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
    """Type raw objects into a :class:`Snapshot`, rejecting bad ones with their reason."""
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
        return read_objects(read_file_objects(source), rack_label=rack_label)
    return read_objects(flatten([source]), rack_label=rack_label)


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
