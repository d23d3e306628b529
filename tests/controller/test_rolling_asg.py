"""An Auto Scaling group rolls to a new image through the safe path: boto3 against moto in server mode.

The provider is the real :class:`~controller.providers.asg.AsgProvider` (launch template versions,
scale-in protection, ``TerminateInstanceInAutoScalingGroup`` with a decrement, instances that
keep the launch-template version they started from). The test plays what moto lacks: kubelet
(an in-service instance joins as a Ready Node one pass, 30 s, after it appears), the node
lifecycle controller (the Node of a terminated instance is deleted) and the placement reconciler
(``tests/controller/test_rolling.py::Reconciler``). Left out: instances that boot the image for
real, and EKS managed node groups (moto's EKS creates no Auto Scaling group behind them).
"""

from __future__ import annotations

from typing import Any

from controller.locking import GroupLocks
from controller.providers import NodeGroupSpec
from controller.providers.retrying import Backoff
from controller.rolling import Roller
from kube.api import DATASETS, KBLS, NODES
from kube.memory import MemoryApi
from placement import capacity as cap
from tests.aws import Aws, make_cluster
from tests.controller.providers.test_eks_asg import asg_provider
from tests.controller.test_rolling import Reconciler, members_of, rows_of
from tests.placement.scenarios import T0, kbl_object, placed_dataset
from topology import labels
from topology.examples import make_node
from topology.times import format_time


def _instances(aws: Aws, group: str) -> dict[str, dict[str, Any]]:
    found = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return {i["InstanceId"]: i for i in found[0]["Instances"] if not str(i["LifecycleState"]).startswith("Terminat")}


def _kubelet(aws: Aws, api: MemoryApi, group: str, now: float, seen: set[str]) -> None:
    """Instances seen on an earlier pass join; the Nodes of instances that left are deleted."""
    live = _instances(aws, group)
    for node in members_of(api, group):
        if node["spec"]["providerID"].rsplit("/", 1)[-1] not in live:
            api.delete(NODES, node["metadata"]["name"])
    for instance in live:
        if instance in seen and api.get(NODES, f"n-{instance}") is None:
            node = make_node(
                f"n-{instance}", zone="us-east-1b", extra_labels={labels.NODE_GROUP_LABEL: group, labels.KBL_LABEL: aws.cluster}
            )
            node["metadata"]["labels"].pop(labels.EKS_NODE_GROUP_LABEL, None)
            node["spec"]["providerID"] = f"aws:///us-east-1b/{instance}"
            node["metadata"]["creationTimestamp"] = format_time(now)
            for cond in node["status"]["conditions"]:
                if cond["type"] == "Ready":
                    cond["lastTransitionTime"] = format_time(now)
            api.put(NODES, node)
    seen |= set(live)


def test_an_asg_roll_replaces_data_holding_nodes_one_at_a_time_after_their_data_left(aws: Aws, no_sleep: Backoff) -> None:
    provider = asg_provider(aws, no_sleep, make_cluster(aws))
    kbl_key = f"default/{aws.cluster}"
    group = cap.group_name(kbl_key, "us-east-1b")
    provider.create_group(NodeGroupSpec(group, kbl_key, "us-east-1b", "m6i.xlarge", 3, 4), "tok")
    api = MemoryApi()
    api.put(KBLS, kbl_object(aws.cluster))
    now = [T0]
    seen: set[str] = set()
    for _ in range(2):
        _kubelet(aws, api, group, now[0], seen)
    old = sorted(n["metadata"]["name"] for n in members_of(api, group))
    assert len(old) == 3
    api.put(DATASETS, placed_dataset("reads", [[old[0], old[1]], [old[1], old[2]], [old[2], old[0]]]))
    provider.protect_instances(group, [f"aws:///us-east-1b/{n[2:]}" for n in old])  # joined: protected, as the controller does
    reconciler = Reconciler(api, lambda: now[0], group)
    reconciler.step()
    assert provider.outdated_instances(group) == []
    new_image = aws.client("ec2").create_image(InstanceId=old[0][2:], Name=f"baked-{aws.cluster}")["ImageId"]
    provider.roll_group(group, new_image, "rolling", "roll-1")
    assert provider.outdated_instances(group) == sorted(n[2:] for n in old)  # all three started from the old version

    roller = Roller(api, provider, lambda: now[0])
    gone: list[str] = []
    for _ in range(60):
        before = {n["metadata"]["name"]: n for n in members_of(api, group)}
        roller.run_once([(kbl_key, group)])
        now[0] += 30
        _kubelet(aws, api, group, now[0], seen)
        reconciler.step()
        members = members_of(api, group)
        for name in set(before) - {n["metadata"]["name"] for n in members}:
            marks = before[name]["metadata"].get("annotations") or {}
            assert labels.DATA_DRAINED in marks, f"{name} was terminated before its data left"
            assert marks[labels.DRAIN] == "image-roll"
            assert all(name not in row for row in rows_of(api, "reads"))
            gone.append(name)
        available = [n for n in members if not n["spec"].get("unschedulable")]
        assert len(available) >= 2, "two nodes of the group out at once"
        if not provider.outdated_instances(group) and GroupLocks(api).holder(kbl_key, group) is None:
            break
    assert sorted(gone) == old
    instances = _instances(aws, group)
    assert len(instances) == 3
    described = provider.describe_group(group)
    assert described is not None
    assert described.desired == 3
    reservations = aws.client("ec2").describe_instances(InstanceIds=list(instances))["Reservations"]
    assert {i["ImageId"] for r in reservations for i in r["Instances"]} == {new_image}  # every node on the new image
    assert len(members_of(api, group)) == 3
