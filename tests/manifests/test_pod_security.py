"""The DataSet reader runs where Pod Security is enforced: the CSI-volume example passes the
``restricted`` profile, the hostPath one does not (and says it is for clusters without the driver),
and the webhook's volume keeps a restricted pod restricted."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

from extender.admission import apply_patch, review
from tests.extender import scenarios as sc
from tests.manifests.podsecurity import restricted_violations
from tests.manifests.shipped import EXAMPLES, example_objects, find
from topology import labels
from topology.snapshots import load_snapshot

OBJECTS = example_objects()


def test_the_csi_volume_reader_passes_the_restricted_pod_security_standard() -> None:
    job = find(OBJECTS, "Job", "read-dataset-volume")
    spec = job["spec"]["template"]["spec"]
    assert restricted_violations(spec) == []
    (volume,) = spec["volumes"]
    assert volume["csi"] == {"driver": labels.CSI_DRIVER, "readOnly": True, "volumeAttributes": {"dataset": "reads"}}
    role = find(OBJECTS, "Role", "read-dataset-reads")
    assert role["rules"] == [{"apiGroups": ["kbl.io"], "resources": ["datasets"], "resourceNames": ["reads"], "verbs": ["get"]}]
    binding = find(OBJECTS, "RoleBinding", "reads-reader")
    assert binding["subjects"][0]["name"] == spec["serviceAccountName"]


def test_the_hostpath_reader_is_refused_by_restricted_and_marked_for_clusters_without_the_driver() -> None:
    spec = find(OBJECTS, "Job", "read-local-shards")["spec"]["template"]["spec"]
    assert any("hostPath" in v for v in restricted_violations(spec))
    assert "FOR CLUSTERS WITHOUT THE kbl CSI DRIVER" in (EXAMPLES / "dataset-reader.yaml").read_text()


def test_a_restricted_pod_given_the_volume_by_the_webhook_stays_restricted() -> None:
    template = copy.deepcopy(find(OBJECTS, "Job", "read-dataset-volume")["spec"]["template"])
    del template["spec"]["volumes"]
    del template["spec"]["containers"][0]["volumeMounts"]
    template["metadata"]["annotations"][labels.POD_MOUNT] = "/data"
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "r-0", "namespace": "genomics", **template["metadata"]},
                           "spec": template["spec"]}  # fmt: skip
    reply = review({"request": {"uid": "u", "operation": "CREATE", "object": pod}}, load_snapshot(sc.snapshot()).cluster())
    admitted = apply_patch(pod, json.loads(base64.b64decode(reply["response"]["patch"])))
    assert [v["name"] for v in admitted["spec"]["volumes"]] == [labels.CSI_VOLUME]
    assert restricted_violations(admitted["spec"]) == []


def test_the_restricted_check_refuses_what_the_profile_refuses() -> None:
    base = find(OBJECTS, "Job", "read-dataset-volume")["spec"]["template"]["spec"]
    breaks: dict[str, Callable[[dict[str, Any]], object]] = {
        "privileged": lambda s: s["containers"][0]["securityContext"].update(privileged=True),
        "escalation": lambda s: s["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
        "root": lambda s: s["containers"][0]["securityContext"].update(runAsNonRoot=False),  # the container's word wins
        "seccomp": lambda s: s["securityContext"].pop("seccompProfile"),
        "caps": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "hostNetwork": lambda s: s.update(hostNetwork=True),
        "nfs": lambda s: s["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
    }
    for what, breaking in breaks.items():
        spec = copy.deepcopy(base)
        breaking(spec)
        assert restricted_violations(spec), what
