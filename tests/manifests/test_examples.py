"""The examples fit together: the workload goes to kbl-scheduler and names the example KBL and DataSet."""

from __future__ import annotations

from typing import Any

from tests.manifests.shipped import example_objects, find, scheduler_config
from topology.datasets import DataSet
from topology.kbls import KBL
from topology.labels import DEDICATED_TAINT
from topology.nodes import Taint
from topology.pods import Locality, Pod

Obj = dict[str, Any]
OBJECTS = example_objects()


def _pod_of(job: Obj) -> Pod:
    template = job["spec"]["template"]
    return Pod.from_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "align-0", **template["metadata"]}, "spec": template["spec"]})


def test_examples_cover_both_redundancy_schemes_and_a_blueprint() -> None:
    datasets = [DataSet.from_object(o) for _, o in OBJECTS if o["kind"] == "DataSet"]
    assert {type(d.spec.redundancy).__name__ for d in datasets} == {"Replicas", "Erasure"}
    kbl = KBL.from_object(find(OBJECTS, "KBL", "genomics"))
    assert kbl.node_group.dedicated
    assert [s.name for s in kbl.stages] == ["align", "call-variants"]


def test_workload_is_scheduled_by_kbl_scheduler_and_reads_a_valid_shard_range() -> None:
    job = find(OBJECTS, "Job", "align")
    assert job["spec"]["template"]["spec"]["schedulerName"] == scheduler_config()["profiles"][0]["schedulerName"]
    pod = _pod_of(job)
    assert pod.data is not None and pod.data.problem is None
    assert pod.kbl == "genomics"
    dataset = DataSet.from_object(find(OBJECTS, "DataSet", pod.data.dataset))
    assert pod.data.shard_indexes(dataset.spec.shards) == tuple(range(16))
    assert pod.data.locality is Locality.PREFERRED


def test_workload_tolerates_its_kbls_dedicated_nodes() -> None:
    kbl = KBL.from_object(find(OBJECTS, "KBL", "genomics"))
    pod = _pod_of(find(OBJECTS, "Job", "align"))
    taints = (Taint(DEDICATED_TAINT, kbl.name, "NoSchedule"), *kbl.node_group.taints)
    assert pod.tolerates(taints)
    assert not pod.tolerates((Taint(DEDICATED_TAINT, "someone-else", "NoSchedule"),))
