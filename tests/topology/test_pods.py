from typing import Any

import pytest

from topology import labels
from topology.errors import ObjectError
from topology.nodes import Taint
from topology.pods import Locality, Pod


def pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "lab", "uid": "u1", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}], **spec},
    }


def test_effective_request_is_max_of_containers_and_init_plus_overhead() -> None:
    obj = pod(
        initContainers=[{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "10Mi"}}}],
        overhead={"cpu": "100m"},
    )
    obj["spec"]["containers"].append({"name": "d", "resources": {"requests": {"cpu": "250m"}}})
    p = Pod.from_object(obj)
    assert p.requests.cpu_m == 2000 + 100
    assert p.requests.memory_b == 2**30
    assert p.requests.pods == 1


def test_kbl_annotations_become_a_data_request() -> None:
    annotations = {labels.POD_DATASET: "genomes", labels.POD_SHARDS: "0-3,9", labels.POD_LOCALITY: "required", labels.POD_KBL: "k"}
    p = Pod.from_object(pod(annotations))
    assert p.data is not None
    assert p.data.dataset == "genomes"
    assert p.data.namespace == "lab"
    assert p.data.shards == (0, 1, 2, 3, 9)
    assert p.data.locality is Locality.REQUIRED
    assert p.kbl == "k"
    assert p.data.problem is None


def test_bad_shard_annotation_keeps_the_pod_and_records_the_problem() -> None:
    p = Pod.from_object(pod({labels.POD_DATASET: "genomes", labels.POD_SHARDS: "9-1"}))
    assert p.data is not None
    assert p.data.problem is not None
    assert "kbl.io/shards" in p.data.problem


def test_pod_without_annotations_has_no_data_request() -> None:
    assert Pod.from_object(pod()).data is None


def test_tolerations_follow_the_upstream_rule() -> None:
    taint = (Taint(labels.DEDICATED_TAINT, "a", "NoSchedule"),)
    assert not Pod.from_object(pod()).tolerates(taint)
    ok = pod(tolerations=[{"key": labels.DEDICATED_TAINT, "operator": "Equal", "value": "a", "effect": "NoSchedule"}])
    assert Pod.from_object(ok).tolerates(taint)
    wrong = pod(tolerations=[{"key": labels.DEDICATED_TAINT, "operator": "Equal", "value": "b"}])
    assert not Pod.from_object(wrong).tolerates(taint)
    assert Pod.from_object(pod(tolerations=[{"operator": "Exists"}])).tolerates(taint)
    assert Pod.from_object(pod()).tolerates((Taint("x", "", "PreferNoSchedule"),))


def test_unschedulable_condition_is_read() -> None:
    obj = pod()
    obj["status"] = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
    assert Pod.from_object(obj).unschedulable


def test_malformed_container_requests_name_the_container() -> None:
    obj = pod()
    obj["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "fast"
    with pytest.raises(ObjectError, match=r"spec.containers\[0\].resources.requests"):
        Pod.from_object(obj)
