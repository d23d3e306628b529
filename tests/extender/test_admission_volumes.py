"""The webhook adds a pod's DataSet as a data.kbl.io CSI volume when it asks for a mount path, and
leaves every other pod exactly as it was."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from extender.admission import apply_patch, review
from tests.extender import scenarios as sc
from topology import labels
from topology.snapshots import load_snapshot


def admitted(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod as the API server stores it after the webhook's patch."""
    cluster = load_snapshot(sc.snapshot()).cluster()
    reply = review({"request": {"uid": "u", "operation": "CREATE", "object": pod}}, cluster)
    response = reply["response"]
    assert response["allowed"] is True
    ops = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    return apply_patch(pod, ops)


def reader(**annotations: str) -> dict[str, Any]:
    pod = sc.pod(dataset_name=None, shards=None)
    pod["metadata"].setdefault("annotations", {}).update(annotations)
    pod["spec"]["containers"] = [
        {"name": "main", "image": "busybox"},
        {"name": "side", "image": "busybox", "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
    ]
    pod["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    return pod


def test_a_pod_asking_for_a_mount_gets_the_read_only_csi_volume_in_every_container() -> None:
    pod = admitted(reader(**{labels.POD_DATASET: "reads", labels.POD_MOUNT: "/data"}))
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[labels.CSI_VOLUME] == {
        "name": labels.CSI_VOLUME,
        "csi": {"driver": "data.kbl.io", "readOnly": True, "volumeAttributes": {"dataset": "reads"}},
    }
    assert "scratch" in volumes
    for container in pod["spec"]["containers"]:
        assert {"name": labels.CSI_VOLUME, "mountPath": "/data", "readOnly": True} in container["volumeMounts"]
    assert {"name": "scratch", "mountPath": "/scratch"} in pod["spec"]["containers"][1]["volumeMounts"]


def test_a_pod_without_volumes_gets_the_list_made() -> None:
    pod = reader(**{labels.POD_DATASET: "reads", labels.POD_MOUNT: "/data"})
    del pod["spec"]["volumes"]
    assert [v["name"] for v in admitted(pod)["spec"]["volumes"]] == [labels.CSI_VOLUME]


@pytest.mark.parametrize(
    "annotations",
    [
        {labels.POD_DATASET: "reads"},  # no mount asked for
        {labels.POD_MOUNT: "/data"},  # no DataSet
        {labels.POD_DATASET: "reads", labels.POD_MOUNT: "data"},  # not an absolute path
        {labels.POD_DATASET: "other-ns/reads", labels.POD_MOUNT: "/data"},  # never another namespace's data
        {},
    ],
)
def test_a_pod_that_does_not_ask_for_a_volume_is_left_unchanged(annotations: dict[str, str]) -> None:
    pod = reader(**annotations)
    assert admitted(copy.deepcopy(pod))["spec"] == pod["spec"]


def test_the_volume_is_added_once_and_a_container_keeps_its_own_mount_at_that_path() -> None:
    pod = reader(**{labels.POD_DATASET: "reads", labels.POD_MOUNT: "/scratch"})
    once = admitted(pod)
    assert once["spec"]["containers"][1]["volumeMounts"] == [{"name": "scratch", "mountPath": "/scratch"}]
    assert admitted(copy.deepcopy(once))["spec"] == once["spec"]
