"""What a publish asks for and what the volume shows: pure, no I/O beyond reading the agent's records.

A pod asks for a CSI ephemeral inline volume::

    csi: {driver: data.kbl.io, readOnly: true, volumeAttributes: {dataset: reads}}

kubelet adds the pod's identity (``podInfoOnMount: true`` in the ``CSIDriver``):
``csi.storage.k8s.io/pod.name``, ``pod.namespace``, ``pod.uid``, ``serviceAccount.name`` and
``csi.storage.k8s.io/ephemeral: "true"``. The DataSet is always the pod's own namespace's: a pod
never names another namespace's data.

The volume shows every shard of the DataSet under its source name (``spec.shardKey``, folders
included). An :class:`Entry` is *local* when this node's agent holds a ready replica of the shard
for this DataSet's uid (data file and checksum record present, sizes equal): it is bind-mounted
from the agent's disk. Every other shard (not held here, or erasure-coded) is read through the
agent's read API by the FUSE daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dataplane.agent.layouts import Layout
from dataplane.agent.storing import PieceRecord
from topology.datasets import DataSetSpec, Erasure
from topology.holdings import REPLICA

POD_NAME = "csi.storage.k8s.io/pod.name"
POD_NAMESPACE = "csi.storage.k8s.io/pod.namespace"
POD_UID = "csi.storage.k8s.io/pod.uid"
SERVICE_ACCOUNT = "csi.storage.k8s.io/serviceAccount.name"
EPHEMERAL = "csi.storage.k8s.io/ephemeral"
#: The one attribute a pod sets: the DataSet's name in its own namespace.
DATASET = "dataset"


class InvalidVolumeError(ValueError):
    """A publish request the driver cannot honour as asked (``INVALID_ARGUMENT``)."""


@dataclass(frozen=True, slots=True)
class VolumeAsk:
    """One publish: which pod wants which DataSet, where."""

    volume_id: str
    target: str
    namespace: str
    dataset: str
    pod: str
    pod_uid: str
    service_account: str


def ask_of(volume_id: str, target: str, readonly: bool, context: Mapping[str, str]) -> VolumeAsk:
    """The :class:`VolumeAsk` of a ``NodePublishVolume``; :class:`InvalidVolumeError` says what is wrong."""
    if not volume_id:
        raise InvalidVolumeError("volume_id is required")
    if not target:
        raise InvalidVolumeError("target_path is required")
    if not PurePosixPath(target).is_absolute():
        raise InvalidVolumeError(f"target_path {target!r} is not absolute")
    if not readonly:
        raise InvalidVolumeError("a DataSet volume is read-only: set readOnly: true on the csi volume")
    name = context.get(DATASET, "")
    if not name:
        raise InvalidVolumeError(f"volumeAttributes.{DATASET} (the DataSet's name in the pod's namespace) is required")
    if "/" in name or name in (".", ".."):
        raise InvalidVolumeError(f"volumeAttributes.{DATASET}: {name!r} is not a DataSet name")
    namespace = context.get(POD_NAMESPACE, "")
    service_account = context.get(SERVICE_ACCOUNT, "")
    if not namespace or not service_account:
        raise InvalidVolumeError(
            f"{POD_NAMESPACE} and {SERVICE_ACCOUNT} are missing: the CSIDriver object must set podInfoOnMount: true"
        )
    return VolumeAsk(
        volume_id=volume_id,
        target=target,
        namespace=namespace,
        dataset=name,
        pod=context.get(POD_NAME, ""),
        pod_uid=context.get(POD_UID, ""),
        service_account=service_account,
    )


@dataclass(frozen=True, slots=True)
class Entry:
    """One shard as the volume shows it: its path under the volume, and its local replica if held here."""

    index: int
    name: str
    size: int | None  # known for local replicas; the FUSE daemon asks the agent for the others
    local: str | None  # the agent's replica file, bind-mounted over the FUSE file


def entries(spec: DataSetSpec, layout: Layout) -> list[Entry]:
    """Every shard of ``spec`` under its source name; local where this node holds a ready replica.

    Raises:
        InvalidVolumeError: a shard name that would leave the volume (``..``, absolute) or two
        shards with one name.
    """
    same_uid = not spec.uid or _read(layout.uid_file(spec.namespace, spec.name)).decode(errors="replace").strip() == spec.uid
    out: list[Entry] = []
    seen: set[str] = set()
    for i in range(spec.shards):
        name = spec.shard_name(i)
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts or name in seen:
            raise InvalidVolumeError(f"shard {i}'s name {name!r} cannot be a file of the volume")
        seen.add(name)
        local: str | None = None
        size: int | None = None
        if not isinstance(spec.redundancy, Erasure) and same_uid:
            record = _record(layout, spec, i)
            path = layout.piece_path(spec.namespace, spec.name, name, i, REPLICA)
            try:
                on_disk = path.stat().st_size
            except OSError:
                on_disk = -1
            if record is not None and on_disk == record.size:
                local, size = str(path), record.size
        out.append(Entry(i, name, size, local))
    return out


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _record(layout: Layout, spec: DataSetSpec, shard: int) -> PieceRecord | None:
    """The agent's checksum record of a replica, read only (never the agent's ``Store``: it cleans up)."""
    try:
        return PieceRecord.from_json(layout.sum_path(spec.namespace, spec.name, shard, REPLICA).read_bytes())
    except (OSError, ValueError, KeyError, TypeError):
        return None
