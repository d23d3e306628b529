"""Every NodePool kbl builds is one Karpenter's published CRD admits, with the KBL's wishes in it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.providers import NodeGroupSpec
from controller.providers.catalog import KNOWN_SHAPES as INSTANCE_SHAPES
from controller.providers.karpenter import (
    CAPACITY_TYPE_LABEL,
    NODEPOOL_LABEL,
    KarpenterSettings,
    limits,
    node_pool,
    placeholder_deployment,
    spec_of,
)
from tests.controller.karpenter.crds import validator
from topology import labels
from topology.nodes import Taint

DEDICATED = Taint(labels.DEDICATED_TAINT, "genomics", "NoSchedule")


def spec(**kw: object) -> NodeGroupSpec:
    base: dict[str, object] = {
        "name": "kbl-default-genomics-us-east-1b", "kbl": "default/genomics", "zone": "us-east-1b",
        "instance_type": "m6i.4xlarge", "desired": 3, "max_size": 8, "capacity_type": "SPOT",
        "labels": {labels.KBL_LABEL: "genomics", "team": "bio"}, "taints": (DEDICATED,),
    }
    base.update(kw)
    return NodeGroupSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("group", "settings"),
    [
        (spec(), KarpenterSettings()),
        (spec(capacity_type="ON_DEMAND", taints=(), labels={}), KarpenterSettings(node_class_name="data-nodes")),
        (spec(instance_type="i4i.4xlarge", max_size=0), KarpenterSettings(node_class_kind="NodeClass")),
        (
            spec(taints=(DEDICATED, Taint("example.com/gpu", "", "NoExecute"))),
            KarpenterSettings(
                consolidation_policy="WhenEmptyOrUnderutilized",
                budgets=({"nodes": "1"}, {"nodes": "0", "schedule": "0 9 * * mon-fri", "duration": "8h"}),
            ),
        ),
    ],
)
def test_nodepool_is_admitted_by_karpenters_published_schema(group: NodeGroupSpec, settings: KarpenterSettings) -> None:
    pool = node_pool(group, settings)
    assert validator("NodePool").errors(pool) == []


def test_nodepool_requires_the_data_zone_the_instance_type_and_the_capacity_type() -> None:
    pool = node_pool(spec(), KarpenterSettings())
    reqs = {r["key"]: r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]}
    assert reqs == {labels.ZONE: ["us-east-1b"], labels.INSTANCE_TYPE: ["m6i.4xlarge"], CAPACITY_TYPE_LABEL: ["spot"]}
    template = pool["spec"]["template"]
    group_label = {labels.NODE_GROUP_LABEL: pool["metadata"]["name"]}
    assert template["metadata"]["labels"] == {labels.KBL_LABEL: "genomics", "team": "bio", **group_label}
    assert template["spec"]["taints"] == [{"key": labels.DEDICATED_TAINT, "value": "genomics", "effect": "NoSchedule"}]
    assert template["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}
    assert template["spec"]["expireAfter"] == "Never"
    assert pool["spec"]["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert pool["metadata"]["labels"]["kbl.io/managed-by"] == "kbl"


def test_auto_mode_nodepool_references_the_eks_nodeclass() -> None:
    pool = node_pool(spec(), KarpenterSettings(node_class_kind="NodeClass"))
    assert pool["spec"]["template"]["spec"]["nodeClassRef"] == {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "default"}


@pytest.mark.parametrize("instance_type", sorted(INSTANCE_SHAPES))
def test_limits_admit_max_nodes_of_the_type_and_not_one_more_by_cpu(instance_type: str) -> None:
    shape = INSTANCE_SHAPES[instance_type]
    found = limits(shape, 8)
    vcpus = int(found["cpu"]) // 8
    assert vcpus * 1000 >= shape.cpu_m > (vcpus - 1) * 1000  # capacity of one node, whole CPUs
    assert int(found["memory"].removesuffix("Gi")) * 2**30 >= 8 * shape.memory_b


def test_spec_round_trips_through_the_nodepool() -> None:
    group = spec()
    back = spec_of(node_pool(group, KarpenterSettings()), desired=group.desired)
    assert back == group


def test_the_schema_check_is_live_a_broken_nodepool_is_refused() -> None:
    pool = node_pool(spec(), KarpenterSettings())
    broken = copy.deepcopy(pool)
    broken["spec"]["template"]["metadata"]["labels"]["karpenter.sh/owned"] = "x"  # a label in Karpenter's domain (CEL rule)
    assert validator("NodePool").errors(broken)
    broken = copy.deepcopy(pool)
    del broken["spec"]["template"]["spec"]["nodeClassRef"]
    assert validator("NodePool").errors(broken)
    broken = copy.deepcopy(pool)
    broken["spec"]["disruption"]["consolidationPolicy"] = "Never"
    assert validator("NodePool").errors(broken)
    broken = copy.deepcopy(pool)
    broken["spec"]["surprise"] = True
    assert validator("NodePool").errors(broken)


def test_placeholders_tolerate_the_taint_select_the_pool_and_fit_beside_any_pod_of_a_node() -> None:
    group = spec()
    deployment = placeholder_deployment(group, KarpenterSettings(), 3)
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 3
    assert pod["nodeSelector"] == {NODEPOOL_LABEL: group.name}
    assert pod["tolerations"] == [{"key": labels.DEDICATED_TAINT, "operator": "Equal", "value": "genomics", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "kbl-placeholder"
    assert deployment["spec"]["template"]["metadata"]["labels"][labels.PLACEHOLDER] == "true"  # scale-down never evicts it
    shape = INSTANCE_SHAPES[group.instance_type]
    cpu = int(pod["containers"][0]["resources"]["requests"]["cpu"].removesuffix("m"))
    assert cpu <= 0.01 * shape.cpu_m  # it keeps a node, it does not fill one: the KBL's pods land beside it
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti == [{"labelSelector": {"matchLabels": {labels.NODE_GROUP_LABEL: group.name}}, "topologyKey": labels.HOSTNAME}]


def test_the_nodepool_offers_every_wished_instance_type_and_limits_nodes() -> None:
    pool = node_pool(spec(), KarpenterSettings(), wished=("r6i.4xlarge", "m6i.4xlarge", "m6i.8xlarge"))
    assert validator("NodePool").errors(pool) == []
    reqs = {r["key"]: r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]}
    assert reqs[labels.INSTANCE_TYPE] == ["m6i.4xlarge", "m6i.8xlarge", "r6i.4xlarge"]  # the planner's choice first
    assert pool["spec"]["limits"]["nodes"] == "8"
    assert int(pool["spec"]["limits"]["cpu"]) == 8 * 32  # maxSize nodes of the largest offered type
    assert spec_of(pool).max_size == 8


def test_the_nodepool_references_the_node_class_kind_karpenter_publishes() -> None:
    ref = node_pool(spec(), KarpenterSettings(node_class_name="kbl-data"))["spec"]["template"]["spec"]["nodeClassRef"]
    crd = validator("EC2NodeClass")
    assert (ref["group"], ref["kind"]) == (crd.group, crd.kind)
    node_class: dict[str, Any] = {  # what a platform team writes for kbl's data nodes (manifests/README.md)
        "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": "kbl-data"},
        "spec": {
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "role": "KarpenterNodeRole-prod",
            "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": "prod"}}],
            "securityGroupSelectorTerms": [{"tags": {"karpenter.sh/discovery": "prod"}}],
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": "500Gi", "volumeType": "gp3"}}],
        },
    }
    assert crd.errors(node_class) == []
    node_class["spec"]["amiSelectorTerms"] = []
    assert crd.errors(node_class)
