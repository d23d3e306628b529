"""KarpenterProvider on the in-memory API: NodePool, PriorityClass and placeholders, idempotent."""

from __future__ import annotations

import pytest

from controller.providers import NodeGroupSpec, ProviderError
from controller.providers.catalog import KNOWN_SHAPES as INSTANCE_SHAPES
from controller.providers.iam import CONTROLLER_KARPENTER_ACTIONS
from controller.providers.karpenter import (
    ERROR_MANAGED,
    NODEPOOL_LABEL,
    KarpenterProvider,
    KarpenterSettings,
    placeholder_name,
)
from controller.providers.retrying import Backoff
from kube.api import DEPLOYMENTS, KBLS, NODECLAIMS, NODEPOOLS, PRIORITYCLASSES
from kube.memory import MemoryApi
from tests.aws import Aws
from tests.controller.karpenter.crds import validator
from tests.controller.karpenter.test_nodepools import spec
from tests.placement.scenarios import kbl_object
from topology import labels

NS = "kbl-system"


def replicas(api: MemoryApi, group: NodeGroupSpec) -> int:
    found = api.get(DEPLOYMENTS, placeholder_name(group.name), namespace=NS)
    assert found is not None
    return int(found["spec"]["replicas"])


def node_claim(name: str, pool: str, provider_id: str) -> dict[str, object]:
    return {
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {"name": name, "labels": {NODEPOOL_LABEL: pool}},
        "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}, "requirements": []},
        "status": {"providerID": provider_id, "nodeName": f"ip-{name}"},
    }


def test_create_group_makes_the_pool_the_priority_class_and_placeholders_once() -> None:
    api = MemoryApi()
    provider = KarpenterProvider(api)
    group = spec()
    info = provider.create_group(group, "tok")
    again = provider.create_group(group, "tok")
    assert info == again
    assert (info.name, info.kbl, info.zone, info.instance_type, info.desired, info.max_size) == (
        group.name, group.kbl, group.zone, group.instance_type, 3, 8,
    )
    pool = api.get(NODEPOOLS, group.name)
    assert pool is not None
    assert validator("NodePool").errors(pool) == []
    assert api.get(PRIORITYCLASSES, "kbl-placeholder") is not None
    assert replicas(api, group) == 3
    assert [g.name for g in provider.list_groups()] == [group.name]


def test_recreating_with_a_new_maximum_updates_the_pool_and_keeps_the_placeholder_count() -> None:
    api = MemoryApi()
    provider = KarpenterProvider(api)
    provider.create_group(spec(), "tok")
    provider.set_size(spec().name, 5)
    provider.create_group(spec(max_size=20, desired=1), "tok")
    described = provider.describe_group(spec().name)
    assert described is not None
    assert (described.max_size, described.desired) == (20, 5)


def test_set_size_keeps_that_many_placeholders_and_zero_removes_them_all() -> None:
    api = MemoryApi()
    provider = KarpenterProvider(api)
    group = spec()
    provider.create_group(group, "tok")
    provider.set_size(group.name, 6)
    assert replicas(api, group) == 6
    provider.set_size(group.name, 0)
    assert replicas(api, group) == 0
    with pytest.raises(ProviderError):
        provider.set_size("kbl-default-nothing-us-east-1a", 1)


def test_remove_instance_deletes_the_nodes_nodeclaim_and_keeps_at_most_one_placeholder_per_remaining_node() -> None:
    api = MemoryApi()
    provider = KarpenterProvider(api)
    group = spec()
    provider.create_group(group, "tok")
    api.put(NODECLAIMS, node_claim("claim-a", group.name, "aws:///us-east-1b/i-0aaa"))
    api.put(NODECLAIMS, node_claim("claim-b", group.name, "aws:///us-east-1b/i-0bbb"))
    described = provider.describe_group(group.name)
    assert described is not None
    assert described.desired == 3  # its size in nodes: 3 placeholders, 2 of them on the 2 claims
    provider.remove_instance(group.name, "aws:///us-east-1b/i-0bbb")
    assert [c["metadata"]["name"] for c in api.list(NODECLAIMS)[0]] == ["claim-a"]
    assert replicas(api, group) == 1  # a third would pend and bring a node back
    provider.remove_instance(group.name, "aws:///us-east-1b/i-0bbb")  # gone: nothing more happens
    assert replicas(api, group) == 1
    provider.set_size(group.name, 1)
    api.put(NODECLAIMS, node_claim("claim-c", group.name, "aws:///us-east-1b/i-0ccc"))  # Karpenter launched for a real pod
    described = provider.describe_group(group.name)
    assert described is not None
    assert described.desired == 2  # the size counts every live node, whoever asked for it


def test_delete_group_removes_placeholders_and_the_pool_and_is_idempotent() -> None:
    api = MemoryApi()
    provider = KarpenterProvider(api)
    group = spec()
    provider.create_group(group, "tok")
    provider.delete_group(group.name)
    provider.delete_group(group.name)
    assert api.get(NODEPOOLS, group.name) is None
    assert api.get(DEPLOYMENTS, placeholder_name(group.name), namespace=NS) is None
    assert provider.list_groups() == []


def test_a_nodepool_kbl_does_not_own_is_neither_listed_nor_adopted() -> None:
    api = MemoryApi()
    group = spec()
    api.put(NODEPOOLS, {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": group.name}, "spec": {}})
    provider = KarpenterProvider(api)
    assert provider.list_groups() == []
    assert provider.describe_group(group.name) is None
    with pytest.raises(ProviderError, match="NotManagedByKbl"):
        provider.create_group(group, "tok")


def test_images_and_rolls_belong_to_the_node_class_not_to_kbl() -> None:
    provider = KarpenterProvider(MemoryApi())
    with pytest.raises(ProviderError) as image:
        provider.create_image("aws:///us-east-1a/i-0abc", "img", {})
    with pytest.raises(ProviderError) as roll:
        provider.roll_group("g", "ami-0abc", "rolling", "tok")
    assert image.value.code == roll.value.code == ERROR_MANAGED


def test_instance_types_come_from_the_settings_or_the_default_table() -> None:
    assert [s.name for s in KarpenterProvider(MemoryApi()).instance_types()] == list(INSTANCE_SHAPES)
    chosen = KarpenterProvider(MemoryApi(), KarpenterSettings(instance_types=("i4i.4xlarge", "r6i.xlarge")))
    assert [s.name for s in chosen.instance_types()] == ["i4i.4xlarge", "r6i.xlarge"]
    with pytest.raises(ProviderError, match="UnknownInstanceType"):
        KarpenterProvider(MemoryApi(), KarpenterSettings(instance_types=("x9.huge",))).instance_types()


def test_instance_types_come_from_describe_instance_types_and_the_pool_offers_every_wished_type(aws: Aws, no_sleep: Backoff) -> None:
    api = MemoryApi()
    api.put(KBLS, kbl_object("genomics", instance_types=("m6i.4xlarge", "r6i.4xlarge", "x9.unknown")))
    aws.recorder.label = "karpenter"
    provider = KarpenterProvider(api, ec2=aws.client("ec2"), backoff=no_sleep)
    names = {s.name for s in provider.instance_types()}
    assert len(names) > len(INSTANCE_SHAPES)  # the region's catalog, not a table
    assert {"r6i.4xlarge", "i4i.4xlarge"} <= names
    provider.create_group(spec(kbl="default/genomics"), "tok")
    pool = api.get(NODEPOOLS, spec().name)
    assert pool is not None
    offered = {r["key"]: r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]}[labels.INSTANCE_TYPE]
    assert offered == ["m6i.4xlarge", "r6i.4xlarge"]  # every wished type the catalog knows, the planner's choice first
    assert aws.recorder.seen["karpenter"] == CONTROLLER_KARPENTER_ACTIONS
