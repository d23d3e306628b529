import copy
from typing import Any

import numpy as np
import pytest

from topology.datasets import DataSet, Erasure, Replicas, dataset_object
from topology.errors import ObjectError


def base() -> dict[str, Any]:
    return dataset_object("genomes", namespace="lab", shards=4, shard_size="2Gi", redundancy=Replicas(3), failure_domain="rack")


def test_dataset_spec_is_typed_with_sizes_and_redundancy() -> None:
    ds = DataSet.from_object(base())
    assert ds.key == "lab/genomes"
    assert ds.spec.shards == 4
    assert ds.spec.total_bytes == 4 * 2 * 2**30
    assert ds.spec.redundancy == Replicas(3)
    assert ds.spec.failure_domain == "topology.kbl.io/rack"
    assert ds.placement is None


def test_erasure_redundancy_and_per_shard_sizes() -> None:
    obj = base()
    obj["spec"]["redundancy"] = {"erasure": {"data": 4, "parity": 2}}
    del obj["spec"]["shardSize"]
    obj["spec"]["shardSizes"] = ["1Gi", "2Gi", "512Mi", "1"]
    ds = DataSet.from_object(obj)
    assert ds.spec.redundancy == Erasure(4, 2)
    assert ds.spec.redundancy.width == 6
    assert list(ds.spec.shard_sizes) == [2**30, 2**31, 2**29, 1]


def test_placement_round_trips_through_status() -> None:
    obj = base()
    obj["status"] = {"placement": {"nodes": ["a", "b", "c", "d"], "shards": [[0, 1, 2], [1, 2, 3], [2, 3, 0], [3, 0, 1]]}}
    ds = DataSet.from_object(obj)
    assert ds.placement is not None
    assert ds.placement.holders(1) == ["b", "c", "d"]
    again = DataSet.from_object(ds.to_object())
    assert again.placement is not None
    assert again.placement.equals(ds.placement)
    assert np.array_equal(again.spec.shard_sizes, ds.spec.shard_sizes)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o["spec"].pop("shards"), "spec.shards"),
        (lambda o: o["spec"].__setitem__("shards", 0), "spec.shards"),
        (lambda o: o["spec"].__setitem__("shards", "4"), "spec.shards"),
        (lambda o: o["spec"].__setitem__("shardSize", "big"), "spec.shardSize"),
        (lambda o: o["spec"].pop("shardSize"), "spec.shardSize"),
        (lambda o: o["spec"].__setitem__("shardSizes", ["1Gi"]), "spec.shardSizes"),
        (lambda o: o["spec"].__setitem__("redundancy", {"raid": 5}), "spec.redundancy"),
        (lambda o: o["spec"].__setitem__("redundancy", {"replicas": 0}), "spec.redundancy.replicas"),
        (lambda o: o["spec"].__setitem__("redundancy", {"erasure": {"data": 4}}), "spec.redundancy.erasure.parity"),
        (lambda o: o.__setitem__("status", {"placement": {"nodes": ["a"], "shards": [[0]]}}), "status.placement.shards"),
        (
            lambda o: o.__setitem__("status", {"placement": {"nodes": ["a"], "shards": [[0], [0], [5], [0]]}}),
            "status.placement.shards[2][0]",
        ),
        (lambda o: o.__setitem__("status", {"placement": {"nodes": ["a", "a"], "shards": [[0]] * 4}}), "status.placement.nodes"),
    ],
)
def test_bad_dataset_is_rejected_with_the_field_and_reason(mutate: Any, field: str) -> None:
    obj = copy.deepcopy(base())
    mutate(obj)
    with pytest.raises(ObjectError) as info:
        DataSet.from_object(obj)
    assert info.value.field == field
    assert info.value.name == "lab/genomes"
    assert info.value.reason
