"""Every way down goes through the one safe path: regression tests (each failed on 5bd07eb).

- Lowering an Auto Scaling group's desired size (moto in server mode: it implements scale-in
  protection and picks the first unprotected instance, as AWS picks by its termination policy).
- Removing a named node (moto): the protection of that one drained instance is lifted, then it is
  terminated with a decrement.
- Consolidation on low utilization (the pure planner): a busy node is asked to leave only when its
  pods fit on the group's other nodes.

Left out: EKS managed node groups' own Auto Scaling groups (moto's EKS creates none; the EKS
provider protects through the same ``protect_members`` call on the groups EKS names). Rolls to a
new image: ``test_rolling.py`` (the fake cloud, kills, locks, queue mode) and
``test_rolling_asg.py`` (moto).
"""

from __future__ import annotations

from typing import Any

from controller import Controller, ControllerSettings
from controller.providers import NodeGroupSpec
from controller.providers.retrying import Backoff
from kube.api import DATASETS, KBLS, NODES
from kube.memory import MemoryApi
from placement import capacity as cap
from tests.aws import Aws, make_cluster
from tests.controller.providers.test_eks_asg import asg_provider
from tests.placement.scenarios import T0, base_nodes, kbl_object, placed_dataset, pod_object
from tests.placement.test_capacity import _running_group, state
from topology import labels
from topology.examples import make_node
from topology.times import format_time


def _group(aws: Aws) -> str:
    """The group of KBL ``default/<cluster>`` (names are unique per test on the shared moto server)."""
    return cap.group_name(f"default/{aws.cluster}", "us-east-1b")


def _members(aws: Aws) -> dict[str, dict[str, Any]]:
    groups = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[_group(aws)])["AutoScalingGroups"]
    return {i["InstanceId"]: i for i in groups[0]["Instances"]}


def _joined(aws: Aws, instance: str, name: str, now: float) -> dict[str, Any]:
    node = make_node(name, zone="us-east-1b", extra_labels={labels.NODE_GROUP_LABEL: _group(aws), labels.KBL_LABEL: aws.cluster})
    node["metadata"]["labels"].pop(labels.EKS_NODE_GROUP_LABEL, None)
    node["spec"]["providerID"] = f"aws:///us-east-1b/{instance}"
    node["metadata"]["creationTimestamp"] = format_time(now - 3600)
    return node


def test_lowering_an_asgs_desired_size_takes_only_an_instance_that_never_joined(aws: Aws, no_sleep: Backoff) -> None:
    provider = asg_provider(aws, no_sleep, make_cluster(aws))
    group = _group(aws)
    spec = NodeGroupSpec(group, f"default/{aws.cluster}", "us-east-1b", "m6i.xlarge", 3, 6, labels={labels.KBL_LABEL: aws.cluster})
    provider.create_group(spec, "tok")
    first, second, _never_joined = sorted(_members(aws))  # moto scales in from the first unprotected instance
    api = MemoryApi()
    for node in base_nodes():
        api.put(NODES, node)
    api.put(NODES, _joined(aws, first, "kbl-a", T0))
    api.put(NODES, _joined(aws, second, "kbl-b", T0))
    api.put(KBLS, kbl_object(aws.cluster))
    api.put(DATASETS, placed_dataset("reads", [["kbl-a", "kbl-b"], ["kbl-a", "gen-b0"]]))  # the joined nodes hold data
    controller = Controller(api, provider, ControllerSettings(cluster_name=aws.cluster), clock=lambda: T0)
    plan = controller.reconcile_once()
    resize = [a for a in plan.of(cap.ResizeNodeGroup) if isinstance(a, cap.ResizeNodeGroup)]
    assert [(a.previous, a.desired) for a in resize] == [(3, 2)]  # the requested node that never joined is cancelled
    members = _members(aws)
    assert set(members) == {first, second}, "a data-holding instance was terminated by a lower desired size"
    assert all(m["ProtectedFromScaleIn"] for m in members.values())
    assert all((api.get(NODES, n) or {})["metadata"]["annotations"].get(labels.SCALE_IN_PROTECTED) == "true" for n in ("kbl-a", "kbl-b"))
    # any later lowering of the desired size leaves the joined instances alone too
    provider.set_size(group, 0)
    assert set(_members(aws)) == {first, second}


def test_removing_a_drained_node_lifts_only_its_protection_and_terminates_it_with_a_decrement(aws: Aws, no_sleep: Backoff) -> None:
    provider = asg_provider(aws, no_sleep, make_cluster(aws))
    group = _group(aws)
    provider.create_group(NodeGroupSpec(group, f"default/{aws.cluster}", "us-east-1b", "m6i.xlarge", 2, 6), "tok")
    leaving, staying = sorted(_members(aws))
    provider.protect_instances(group, [f"aws:///us-east-1b/{i}" for i in (leaving, staying)])
    provider.remove_instance(group, f"aws:///us-east-1b/{leaving}")
    members = _members(aws)
    assert set(members) == {staying}
    assert members[staying]["ProtectedFromScaleIn"]
    described = provider.describe_group(group)
    assert described is not None
    assert described.desired == 1


def test_low_utilization_consolidates_a_busy_node_only_when_its_pods_fit_on_the_others() -> None:
    low = {"default/u": cap.Utilization(cpu=0.1, memory=0.1)}
    # 3-CPU pods on m6i.xlarge (3.92 CPUs): one per node, nowhere else to go
    group, nodes = _running_group("u", "us-east-1a", 2, T0)
    objs = [*base_nodes(), *nodes, kbl_object("u")]
    objs += [pod_object(f"p{i}", kbl="u", cpu="3", node=nodes[i]["metadata"]["name"]) for i in range(2)]
    plan = cap.plan_capacity(state(objs, groups=[group], util=low))
    assert plan.of(cap.CordonNode) == [], "a busy node was drained though its pod fits nowhere else"
    assert any("fit on no other node" in getattr(a, "message", "") for a in plan.actions)
    # 1-CPU pods: one node's pods fit beside the other's, the group consolidates to one node
    objs = [*base_nodes(), *nodes, kbl_object("u")]
    objs += [pod_object(f"p{i}", kbl="u", cpu="1", node=nodes[i]["metadata"]["name"]) for i in range(2)]
    plan = cap.plan_capacity(state(objs, groups=[group], util=low))
    assert len(plan.of(cap.CordonNode)) == 1
