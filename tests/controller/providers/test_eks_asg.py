"""EKS managed node groups and Auto Scaling groups through real boto3 against moto over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.providers import CA_ENABLED_TAG, CLUSTER_TAG, MANAGED_BY_TAG, NodeGroupSpec, ProviderError
from controller.providers.asg import AsgProvider
from controller.providers.eks import EksProvider
from controller.providers.retrying import Backoff
from tests.aws import Aws, base_image, make_cluster
from tests.conftest import ROOT
from topology.nodes import Taint


def spec(name: str = "kbl-default-genomics-us-east-1b", desired: int = 2) -> NodeGroupSpec:
    return NodeGroupSpec(
        name, "default/genomics", "us-east-1b", "m6i.xlarge", desired, 6,
        labels={"kbl.io/kbl": "genomics"}, taints=(Taint("kbl.io/dedicated", "genomics", "NoSchedule"),),
    )


def eks_provider(aws: Aws, backoff: Backoff) -> EksProvider:
    return EksProvider(
        aws.client("eks"), aws.client("autoscaling"), aws.client("ec2"),
        cluster_name=aws.cluster, node_role_arn="arn:aws:iam::123456789012:role/node", backoff=backoff,
    )


def test_eks_group_is_created_in_the_zone_subnets_with_label_taint_and_token(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    provider = eks_provider(aws, no_sleep)
    info = provider.create_group(spec(), "tok-1")
    raw = aws.client("eks").describe_nodegroup(clusterName=aws.cluster, nodegroupName=info.name)["nodegroup"]
    assert raw["subnets"] == subnets["us-east-1b"]
    assert raw["labels"]["kbl.io/kbl"] == "genomics"
    assert raw["taints"] == [{"key": "kbl.io/dedicated", "value": "genomics", "effect": "NO_SCHEDULE"}]
    assert raw["scalingConfig"] == {"minSize": 0, "maxSize": 6, "desiredSize": 2}
    assert raw["tags"][MANAGED_BY_TAG] == "kbl"
    assert CA_ENABLED_TAG not in raw["tags"]
    assert (info.kbl, info.zone, info.desired) == ("default/genomics", "us-east-1b", 2)


def test_eks_create_retried_after_a_lost_answer_adopts_the_group(aws: Aws, no_sleep: Backoff) -> None:
    make_cluster(aws)
    provider = eks_provider(aws, no_sleep)
    first = provider.create_group(spec(), "tok-1")
    again = provider.create_group(spec(), "tok-1")
    assert again.name == first.name
    assert [g.name for g in provider.list_groups()] == [first.name]


def test_eks_resize_and_delete_are_idempotent(aws: Aws, no_sleep: Backoff) -> None:
    make_cluster(aws)
    provider = eks_provider(aws, no_sleep)
    provider.create_group(spec(), "tok")
    provider.set_size(spec().name, 5)
    provider.set_size(spec().name, 5)
    described = provider.describe_group(spec().name)
    assert described is not None
    assert described.desired == 5
    provider.delete_group(spec().name)
    provider.delete_group(spec().name)
    assert provider.describe_group(spec().name) is None


def test_eks_groups_not_managed_by_kbl_are_never_listed(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    aws.client("eks").create_nodegroup(
        clusterName=aws.cluster, nodegroupName="system", subnets=subnets["us-east-1a"], nodeRole="arn:aws:iam::123456789012:role/node"
    )
    provider = eks_provider(aws, no_sleep)
    provider.create_group(spec(), "tok")
    assert [g.name for g in provider.list_groups()] == [spec().name]


def test_eks_zone_without_subnet_is_a_clear_error(aws: Aws, no_sleep: Backoff) -> None:
    make_cluster(aws)
    provider = eks_provider(aws, no_sleep)
    bad = NodeGroupSpec("g", "default/x", "us-east-1f", "m6i.xlarge", 1, 2)
    with pytest.raises(ProviderError, match="no subnet in zone us-east-1f"):
        provider.create_group(bad, "t")


def test_eks_rolls_only_with_a_rolling_update(aws: Aws, no_sleep: Backoff) -> None:
    make_cluster(aws)
    with pytest.raises(ProviderError, match="use rolling"):
        eks_provider(aws, no_sleep).roll_group("g", "ami-1", "next-nodes", "t")


def asg_provider(aws: Aws, backoff: Backoff, subnets: dict[str, list[str]]) -> AsgProvider:
    image = base_image(aws)
    return AsgProvider(
        aws.client("autoscaling"), aws.client("ec2"), cluster_name=aws.cluster, image_id=image, subnets_by_zone=subnets, backoff=backoff
    )


def _instances(aws: Aws, name: str) -> list[dict[str, Any]]:
    groups = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return list(groups[0]["Instances"])


def test_asg_group_launches_sizes_and_removes_one_named_instance(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    provider = asg_provider(aws, no_sleep, subnets)
    info = provider.create_group(spec(desired=2), "tok")
    assert provider.create_group(spec(desired=2), "tok").name == info.name  # retry adopts
    assert [g.name for g in provider.list_groups()] == [info.name]
    provider.set_size(info.name, 3)
    instances = _instances(aws, info.name)
    assert len(instances) == 3
    victim = instances[0]["InstanceId"]
    provider.remove_instance(info.name, f"aws:///us-east-1b/{victim}")
    provider.remove_instance(info.name, f"aws:///us-east-1b/{victim}")  # already gone: fine
    after = provider.describe_group(info.name)
    assert after is not None
    assert after.desired == 2
    assert victim not in {i["InstanceId"] for i in _instances(aws, info.name)}
    raw = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[info.name])["AutoScalingGroups"][0]
    tags = {t["Key"] for t in raw["Tags"]}
    assert CA_ENABLED_TAG not in tags
    provider.delete_group(info.name)
    provider.delete_group(info.name)
    assert provider.describe_group(info.name) is None


def test_prototype_image_is_made_once_and_the_next_nodes_use_it(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    provider = asg_provider(aws, no_sleep, subnets)
    info = provider.create_group(spec(desired=1), "tok")
    victim = _instances(aws, info.name)[0]["InstanceId"]
    image = provider.create_image(f"aws:///us-east-1b/{victim}", f"kbl-proto-{aws.cluster}", {"kbl.io/prototype-of": info.name})
    assert provider.create_image(f"aws:///us-east-1b/{victim}", f"kbl-proto-{aws.cluster}", {}) == image
    tags = aws.client("ec2").describe_images(ImageIds=[image])["Images"][0].get("Tags", [])
    assert {"Key": "kbl.io/prototype-of", "Value": info.name} in tags
    version = provider.roll_group(info.name, image, "next-nodes", "roll-1")
    assert version == "2"
    group = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[info.name])["AutoScalingGroups"][0]
    assert group["LaunchTemplate"]["Version"] == "2"
    data = aws.client("ec2").describe_launch_template_versions(LaunchTemplateName=info.name, Versions=["2"])
    assert data["LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"] == image


def _policy_tags(action: str) -> tuple[dict[str, str], set[str] | None]:
    """The tags the shipped policy requires in the request for ``action`` (``aws:RequestTag``,
    for the cluster ``CLUSTER``) and the tag keys it allows (``aws:TagKeys``, None = any)."""
    policy = json.loads((ROOT / "manifests" / "iam" / "controller-direct-policy.json").read_text())
    required: dict[str, str] = {}
    allowed: set[str] | None = None
    for statement in policy["Statement"]:
        if action not in statement["Action"]:
            continue
        for key, value in statement.get("Condition", {}).get("StringEquals", {}).items():
            if key.startswith("aws:RequestTag/"):
                required[key.removeprefix("aws:RequestTag/")] = value
        keys = statement.get("Condition", {}).get("ForAllValues:StringEquals", {}).get("aws:TagKeys")
        if keys is not None:
            allowed = set(keys)
    return required, allowed


def _satisfies(tags: dict[str, str], action: str, cluster: str) -> None:
    required, allowed = _policy_tags(action)
    assert required, f"the policy requires no tags for {action}"
    assert {k: v.replace("${CLUSTER_NAME}", cluster) for k, v in required.items()}.items() <= tags.items(), action
    if allowed is not None:
        assert set(tags) <= allowed, action


def _tag_map(tags: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def test_everything_created_carries_the_tags_the_iam_policy_requires_at_creation(aws: Aws, no_sleep: Backoff) -> None:
    """Launch templates, Auto Scaling groups, node groups, images and their snapshots are tagged
    in the create call itself, with the tags (and only tag keys) the shipped policy conditions on."""
    subnets = make_cluster(aws)
    eks_info = eks_provider(aws, no_sleep).create_group(spec("kbl-eks-group"), "tok-e")
    nodegroup = aws.client("eks").describe_nodegroup(clusterName=aws.cluster, nodegroupName=eks_info.name)["nodegroup"]
    _satisfies(dict(nodegroup["tags"]), "eks:CreateNodegroup", aws.cluster)
    _satisfies(dict(nodegroup["tags"]), "eks:TagResource", aws.cluster)

    provider = asg_provider(aws, no_sleep, subnets)
    info = provider.create_group(spec(f"kbl-tagged-{aws.cluster}", desired=1), "tok")  # moto's EC2 is shared: a new name
    ec2 = aws.client("ec2")
    (template,) = ec2.describe_launch_templates(LaunchTemplateNames=[info.name])["LaunchTemplates"]
    _satisfies(_tag_map(template.get("Tags", [])), "ec2:CreateLaunchTemplate", aws.cluster)
    group = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[info.name])["AutoScalingGroups"][0]
    asg_tags = _tag_map(group["Tags"])
    _satisfies(asg_tags, "autoscaling:CreateAutoScalingGroup", aws.cluster)
    _satisfies(asg_tags, "autoscaling:CreateOrUpdateTags", aws.cluster)

    victim = _instances(aws, info.name)[0]["InstanceId"]
    image_id = provider.create_image(f"aws:///us-east-1b/{victim}", f"kbl-tagged-{aws.cluster}", {"kbl.io/prototype-of": info.name})
    (image,) = ec2.describe_images(ImageIds=[image_id])["Images"]
    snapshot_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snapshot_tags = _tag_map(ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0].get("Tags", []))
    for tags in (_tag_map(image.get("Tags", [])), snapshot_tags):
        assert {MANAGED_BY_TAG: "kbl", CLUSTER_TAG: aws.cluster, "kbl.io/prototype-of": info.name}.items() <= tags.items()
