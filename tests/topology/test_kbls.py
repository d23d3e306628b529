from typing import Any

import pytest

from topology.errors import ObjectError
from topology.kbls import KBL


def kbl(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kbl.io/v1alpha1", "kind": "KBL", "metadata": {"name": "k", "namespace": "lab"}, "spec": spec}


def test_kbl_with_node_group_and_blueprint_is_typed() -> None:
    obj = kbl(
        {
            "nodeGroup": {"mode": "dedicated", "instanceTypes": ["m6i.4xlarge"], "minSize": 0, "maxSize": 8, "capacityType": "SPOT"},
            "blueprint": {
                "stages": [
                    {"name": "align", "start": "2026-11-21T21:00:00Z", "durationSeconds": 600, "needs": {"nodes": 4}},
                    {"name": "call", "startAfterSeconds": 600, "needs": {"cpu": "64", "memory": "256Gi"}},
                ]
            },
        }
    )
    k = KBL.from_object(obj)
    assert k.key == "lab/k"
    assert k.node_group.dedicated
    assert k.node_group.capacity_type == "SPOT"
    assert [s.name for s in k.stages] == ["align", "call"]
    assert k.stages[0].start is not None
    assert k.stages[1].cpu_m == 64000
    assert k.stages[1].memory_b == 256 * 2**30


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"nodeGroup": {"mode": "exclusive"}}, "spec.nodeGroup.mode"),
        ({"nodeGroup": {"minSize": 5, "maxSize": 2}}, "spec.nodeGroup.minSize"),
        ({"nodeGroup": {"capacityType": "spot"}}, "spec.nodeGroup.capacityType"),
        ({"blueprint": {"stages": [{"start": "now"}]}}, "spec.blueprint.stages[0].name"),
        ({"blueprint": {"stages": [{"name": "a", "start": "tomorrow"}]}}, "spec.blueprint.stages[0].start"),
        ({"blueprint": {"stages": [{"name": "a"}, {"name": "a"}]}}, "spec.blueprint.stages"),
    ],
)
def test_bad_kbl_is_rejected_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ObjectError) as info:
        KBL.from_object(kbl(spec))
    assert info.value.field == field
