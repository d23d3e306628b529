"""The DataSet volume the admission webhook adds (as Fluid does): pure JSONPatch, no I/O.

A pod annotated ``kbl.io/dataset: NAME`` and ``kbl.io/mount: /data`` gets a CSI ephemeral inline
volume of the ``data.kbl.io`` driver (``readOnly``, ``volumeAttributes: {dataset: NAME}``, the
DataSet in the pod's namespace) and a read-only mount of it at ``/data`` in every container. A pod
with no ``kbl.io/mount`` is left as it is; so is one that already has a volume named
``kbl-dataset`` (the webhook ran already, or the user wrote it); a container that already mounts
something at that path keeps its own mount. A mount path that is not absolute is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from topology import labels


def volume_patch(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSONPatch ops adding the DataSet volume and its mounts; ``[]`` when the pod asks for none."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    dataset = str(annotations.get(labels.POD_DATASET) or "").strip()
    mount = str(annotations.get(labels.POD_MOUNT) or "").strip()
    if not dataset or not mount.startswith("/") or "/" in dataset:
        return []
    spec = pod.get("spec") or {}
    volumes = spec.get("volumes")
    if any(isinstance(v, Mapping) and v.get("name") == labels.CSI_VOLUME for v in volumes or ()):
        return []
    volume = {
        "name": labels.CSI_VOLUME,
        "csi": {"driver": labels.CSI_DRIVER, "readOnly": True, "volumeAttributes": {"dataset": dataset}},
    }
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": "/spec/volumes/-", "value": volume} if volumes else {"op": "add", "path": "/spec/volumes", "value": [volume]}
    ]
    wanted = {"name": labels.CSI_VOLUME, "mountPath": mount, "readOnly": True}
    for i, container in enumerate(spec.get("containers") or ()):
        mounts = container.get("volumeMounts") if isinstance(container, Mapping) else None
        if any(isinstance(m, Mapping) and str(m.get("mountPath", "")).rstrip("/") == mount.rstrip("/") for m in mounts or ()):
            continue
        if mounts:
            ops.append({"op": "add", "path": f"/spec/containers/{i}/volumeMounts/-", "value": wanted})
        else:
            ops.append({"op": "add", "path": f"/spec/containers/{i}/volumeMounts", "value": [wanted]})
    return ops
