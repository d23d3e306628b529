"""EKS managed node groups and Auto Scaling groups through real boto3 against moto over HTTP:
groups, launch templates (custom AMIs joining through nodeadm) and prototype images (cleaned on
the node through SSM first, then imaged with a reboot, then rolled)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from controller.providers import CA_ENABLED_TAG, CLUSTER_TAG, MANAGED_BY_TAG, NodeGroupSpec, ProviderError
from controller.providers.asg import AsgProvider
from controller.providers.eks import EksProvider
from controller.providers.imaging import clean_script
from controller.providers.launching import LaunchSettings
from controller.providers.retrying import Backoff
from tests.aws import REGION, Aws, base_image, make_cluster
from tests.conftest import ROOT
from tests.controller.providers.test_launching import nodeadm_configs
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


def asg_provider(aws: Aws, backoff: Backoff, subnets: dict[str, list[str]], *, ssm: Any = True) -> AsgProvider:
    image = base_image(aws)
    return AsgProvider(
        aws.client("autoscaling"), aws.client("ec2"), cluster_name=aws.cluster, image_id=image, subnets_by_zone=subnets,
        launch=LaunchSettings(aws.cluster), eks=aws.client("eks"), ssm=aws.client("ssm") if ssm is True else ssm, backoff=backoff,
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


class Captured:
    """The parameters of the calls of one operation made through a (shared) boto3 client."""

    def __init__(self, client: Any, operation: str) -> None:
        self.client, self.event = client, f"provide-client-params.{client.meta.service_model.endpoint_prefix}.{operation}"
        self.calls: list[dict[str, Any]] = []
        client.meta.events.register(self.event, self.hook)

    def hook(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(dict(params))

    def close(self) -> None:
        self.client.meta.events.unregister(self.event, self.hook)


def test_prototype_image_is_cleaned_on_the_node_then_made_once_with_a_reboot_and_the_next_nodes_use_it(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    provider = asg_provider(aws, no_sleep, subnets)
    info = provider.create_group(spec(desired=1), "tok")
    victim = _instances(aws, info.name)[0]["InstanceId"]
    images = Captured(aws.client("ec2"), "CreateImage")
    try:
        image = provider.create_image(f"aws:///us-east-1b/{victim}", f"kbl-proto-{aws.cluster}", {"kbl.io/prototype-of": info.name})
        assert provider.create_image(f"aws:///us-east-1b/{victim}", f"kbl-proto-{aws.cluster}", {}) == image
    finally:
        images.close()
    assert [c["NoReboot"] for c in images.calls] == [False]  # one image, taken with a reboot
    (command,) = aws.client("ssm").list_commands(InstanceId=victim)["Commands"]  # cleaned once, before the image
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["Parameters"]["commands"] == [clean_script()]
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


CMD = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
INSTANCE = "i-0123456789abcdef0"


def test_a_node_whose_cleaning_fails_is_never_imaged(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    failing = _stubbed_ssm(
        ("send_command", {"Command": {"CommandId": CMD}}),
        ("get_command_invocation", {"CommandId": CMD, "InstanceId": INSTANCE, "Status": "InProgress"}),
        ("get_command_invocation", {"CommandId": CMD, "InstanceId": INSTANCE, "Status": "Failed", "StandardErrorContent": "rm: denied"}),
    )
    provider = asg_provider(aws, no_sleep, subnets, ssm=failing)
    info = provider.create_group(spec(f"kbl-unclean-{aws.cluster}", desired=1), "tok")
    victim = _instances(aws, info.name)[0]["InstanceId"]
    with pytest.raises(ProviderError, match=r"CleaningFailed.*rm: denied"):
        provider.create_image(f"aws:///us-east-1b/{victim}", f"kbl-unclean-{aws.cluster}", {})
    assert aws.client("ec2").describe_images(Filters=[{"Name": "name", "Values": [f"kbl-unclean-{aws.cluster}"]}])["Images"] == []


def test_without_an_ssm_client_no_node_is_imaged(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    provider = asg_provider(aws, no_sleep, subnets, ssm=None)
    with pytest.raises(ProviderError, match="NoCleaning"):
        provider.create_image("aws:///us-east-1b/i-0123456789abcdef0", f"kbl-none-{aws.cluster}", {})


def _stubbed_ssm(*answers: tuple[str, dict[str, Any]]) -> Any:
    import boto3

    client = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION).client("ssm")
    stubber = Stubber(client)
    for operation, response in answers:
        stubber.add_response(operation, response)
    stubber.activate()
    return client


def _template(aws: Aws) -> str:
    """A launch template of the user's, tagged for kbl as manifests/README.md asks."""
    tags = [{"Key": MANAGED_BY_TAG, "Value": "kbl"}, {"Key": CLUSTER_TAG, "Value": aws.cluster}]
    answer = aws.client("ec2").create_launch_template(
        LaunchTemplateName=f"nodes-{aws.cluster}", LaunchTemplateData={"MetadataOptions": {"HttpTokens": "required"}},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags}],
    )  # fmt: skip
    return str(answer["LaunchTemplate"]["LaunchTemplateId"])


def test_eks_custom_ami_group_gets_its_own_template_version_joining_through_nodeadm(aws: Aws, no_sleep: Backoff) -> None:
    make_cluster(aws)
    template_id = _template(aws)
    image = base_image(aws)
    provider = eks_provider(aws, no_sleep)
    provider.launch_template_id, provider.image_id = f"nodes-{aws.cluster}", image  # by name, as --launch-template allows
    info = provider.create_group(spec(f"kbl-lt-{aws.cluster}"), "tok-lt")
    raw = aws.client("eks").describe_nodegroup(clusterName=aws.cluster, nodegroupName=info.name)["nodegroup"]
    assert raw["launchTemplate"]["id"] == template_id
    version = raw["launchTemplate"]["version"]
    ec2 = aws.client("ec2")
    (data,) = ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=[version])["LaunchTemplateVersions"]
    data = data["LaunchTemplateData"]
    assert data["ImageId"] == image
    assert "IamInstanceProfile" not in data  # EKS passes the node role itself
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    (config,) = nodeadm_configs(data["UserData"])
    assert config["spec"]["cluster"]["name"] == aws.cluster
    assert "--register-with-taints=kbl.io/dedicated=genomics:NoSchedule" in config["spec"]["kubelet"]["flags"]


def test_eks_rolls_a_custom_ami_group_to_the_baked_image_from_its_own_version(aws: Aws, no_sleep: Backoff) -> None:
    make_cluster(aws)
    template_id = _template(aws)
    provider = eks_provider(aws, no_sleep)
    provider.launch_template_id, provider.image_id = template_id, base_image(aws)
    info = provider.create_group(spec(f"kbl-roll-{aws.cluster}"), "tok-r")
    own = aws.client("eks").describe_nodegroup(clusterName=aws.cluster, nodegroupName=info.name)["nodegroup"]["launchTemplate"]["version"]
    baked = aws.client("ec2").register_image(Name=f"kbl-baked-{aws.cluster}", RootDeviceName="/dev/xvda")["ImageId"]
    real = provider.eks
    provider.eks = _stubbed_eks_update(real, aws.cluster, info.name)
    created = Captured(aws.client("ec2"), "CreateLaunchTemplateVersion")
    try:
        version = provider.roll_group(info.name, baked, "rolling", "roll-1")
    finally:
        provider.eks = real
        created.close()
    # AWS copies the group's own version (its nodeadm user data) and replaces only the image
    # (moto stores the new data without copying the source, so the request itself is checked).
    (call,) = created.calls
    assert (call["LaunchTemplateId"], call["SourceVersion"], call["LaunchTemplateData"]) == (template_id, own, {"ImageId": baked})
    ec2 = aws.client("ec2")
    (data,) = ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=[version])["LaunchTemplateVersions"]
    assert data["LaunchTemplateData"]["ImageId"] == baked


class _EksWithStubbedUpdate:
    """moto's EKS plus a botocore Stubber for ``update_nodegroup_version`` (moto lacks it)."""

    def __init__(self, real: Any, stub: Any) -> None:
        self.real, self.stub = real, stub

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stub if name == "update_nodegroup_version" else self.real, name)


def _stubbed_eks_update(real: Any, cluster: str, group: str) -> Any:
    import boto3

    client = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION).client("eks")
    stubber = Stubber(client)
    expected = {"clusterName": cluster, "nodegroupName": group, "launchTemplate": ANY, "clientRequestToken": "roll-1"}
    stubber.add_response("update_nodegroup_version", {"update": {"id": "u-1", "status": "InProgress"}}, expected)
    stubber.activate()
    return _EksWithStubbedUpdate(real, client)


def test_eks_roll_needs_a_launch_template_and_a_custom_ami(aws: Aws, no_sleep: Backoff) -> None:
    make_cluster(aws)
    provider = eks_provider(aws, no_sleep)
    with pytest.raises(ProviderError, match="NoLaunchTemplate"):
        provider.roll_group("g", "ami-1", "rolling", "t")
    provider.launch_template_id = _template(aws)
    with pytest.raises(ProviderError, match="NoCustomImage"):
        provider.roll_group("g", "ami-1", "rolling", "t")
