"""Launch templates that join a real EKS cluster: user data parsed as nodeadm and Bottlerocket
would read it, and the template created on moto server as EC2 stores it."""

from __future__ import annotations

import base64
import email
import email.parser
import tomllib
from typing import Any

import pytest
import yaml

from controller.providers import CLUSTER_TAG, MANAGED_BY_TAG, NodeGroupSpec, ProviderError
from controller.providers.asg import AsgProvider
from controller.providers.launching import (
    NODEADM_CONTENT_TYPE,
    LaunchSettings,
    cluster_dns_ip,
    discover_cluster,
    template_data,
    user_data,
)
from controller.providers.retrying import Backoff
from tests.aws import Aws, base_image, make_cluster
from topology.nodes import Taint

CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIC...\n-----END CERTIFICATE-----\n").decode()
SETTINGS = LaunchSettings(
    "prod",
    api_endpoint="https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
    certificate_authority=CA,
    service_cidr="172.20.0.0/16",
    instance_profile="arn:aws:iam::123456789012:instance-profile/eks-node",
    security_groups=("sg-0123456789abcdef0",),
    kubelet_flags=("--max-pods=58",),
)


def spec(name: str = "kbl-genomics-us-east-1b") -> NodeGroupSpec:
    return NodeGroupSpec(
        name, "default/genomics", "us-east-1b", "m6i.xlarge", 1, 4,
        labels={"kbl.io/kbl": "genomics"}, taints=(Taint("kbl.io/dedicated", "genomics", "NoSchedule"),),
    )


def nodeadm_configs(encoded: str) -> list[dict[str, Any]]:
    """What nodeadm reads from IMDS user data: every ``application/node.eks.aws`` part of the
    MIME multipart document, each a YAML NodeConfig (nodeadm merges them in order)."""
    message = email.parser.BytesParser().parsebytes(base64.b64decode(encoded))
    assert message.is_multipart()
    assert message.get_content_type() == "multipart/mixed"
    out: list[dict[str, Any]] = []
    for part in message.walk():
        if part.get_content_type() == NODEADM_CONTENT_TYPE:
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out.extend(doc for doc in yaml.safe_load_all(payload.decode()) if doc)
    return out


def flag_values(flags: list[str], name: str) -> list[str]:
    return [f.split("=", 1)[1] for f in flags if f.startswith(f"{name}=")]


def test_al2023_user_data_is_a_nodeconfig_part_nodeadm_reads_with_the_clusters_coordinates() -> None:
    (config,) = nodeadm_configs(user_data(SETTINGS, spec()))
    assert config["apiVersion"] == "node.eks.aws/v1alpha1"
    assert config["kind"] == "NodeConfig"
    assert config["spec"]["cluster"] == {
        "name": "prod",
        "apiServerEndpoint": "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
        "certificateAuthority": CA,
        "cidr": "172.20.0.0/16",
    }
    base64.b64decode(config["spec"]["cluster"]["certificateAuthority"], validate=True)  # a byte array in nodeadm's API


def test_al2023_kubelet_flags_carry_the_kbl_labels_taints_and_extra_flags() -> None:
    (config,) = nodeadm_configs(user_data(SETTINGS, spec()))
    flags = config["spec"]["kubelet"]["flags"]
    (labels,) = flag_values(flags, "--node-labels")
    assert dict(kv.split("=", 1) for kv in labels.split(",")) == {"kbl.io/kbl": "genomics", "kbl.io/node-group": "kbl-genomics-us-east-1b"}
    assert flag_values(flags, "--register-with-taints") == ["kbl.io/dedicated=genomics:NoSchedule"]
    assert "--max-pods=58" in flags
    assert not any("bootstrap.sh" in f for f in flags)


def test_no_taints_means_no_taint_flag() -> None:
    bare = NodeGroupSpec("g", "default/x", "us-east-1a", "m6i.large", 1, 2)
    (config,) = nodeadm_configs(user_data(SETTINGS, bare))
    assert flag_values(config["spec"]["kubelet"]["flags"], "--register-with-taints") == []


def test_bottlerocket_user_data_is_toml_settings_with_labels_taints_and_dns() -> None:
    settings = LaunchSettings(
        "prod", api_endpoint=SETTINGS.api_endpoint, certificate_authority=CA, service_cidr="10.100.0.0/16", node_os="bottlerocket"
    )
    parsed = tomllib.loads(base64.b64decode(user_data(settings, spec())).decode())
    kubernetes = parsed["settings"]["kubernetes"]
    assert kubernetes["cluster-name"] == "prod"
    assert kubernetes["api-server"] == SETTINGS.api_endpoint
    assert kubernetes["cluster-certificate"] == CA
    assert kubernetes["cluster-dns-ip"] == "10.100.0.10"
    assert kubernetes["node-labels"] == {"kbl.io/kbl": "genomics", "kbl.io/node-group": "kbl-genomics-us-east-1b"}
    assert kubernetes["node-taints"] == {"kbl.io/dedicated": ["genomics:NoSchedule"]}


def test_cluster_dns_is_the_tenth_address_of_the_service_cidr() -> None:
    assert cluster_dns_ip("172.20.0.0/16") == "172.20.0.10"
    assert cluster_dns_ip("fd00:1234::/108") == "fd00:1234::a"


def test_user_data_without_cluster_coordinates_is_refused() -> None:
    with pytest.raises(ProviderError, match="IncompleteCluster"):
        user_data(LaunchSettings("prod"), spec())


def test_managed_template_data_leaves_profile_and_type_to_eks() -> None:
    data = template_data(SETTINGS, spec(), "ami-1", managed=True)
    assert "IamInstanceProfile" not in data
    assert "InstanceType" not in data
    assert data["ImageId"] == "ami-1"
    assert data["MetadataOptions"]["HttpTokens"] == "required"


def test_missing_coordinates_are_discovered_from_describe_cluster(aws: Aws, no_sleep: Backoff) -> None:
    make_cluster(aws)
    cluster = aws.client("eks").describe_cluster(name=aws.cluster)["cluster"]
    found = discover_cluster(aws.client("eks"), no_sleep, LaunchSettings(aws.cluster, service_cidr="10.100.0.0/16"))
    assert found.api_endpoint == cluster["endpoint"]
    assert found.certificate_authority == cluster["certificateAuthority"]["data"]
    assert found.service_cidr == "10.100.0.0/16"
    assert found.complete


def _network(aws: Aws) -> tuple[str, str]:
    """A security group and an instance profile, as a real cluster has for its nodes."""
    ec2 = aws.client("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][-1]["VpcId"]
    group = ec2.create_security_group(GroupName=f"nodes-{aws.cluster}", Description="nodes", VpcId=vpc)["GroupId"]
    iam = aws.client("iam")
    profile = iam.create_instance_profile(InstanceProfileName=f"eks-node-{aws.cluster}")["InstanceProfile"]["Arn"]
    return str(group), str(profile)


def test_asg_launch_template_on_moto_joins_with_imdsv2_profile_security_groups_and_ownership_tag(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    security_group, profile = _network(aws)
    settings = LaunchSettings(aws.cluster, service_cidr="10.100.0.0/16", instance_profile=profile, security_groups=(security_group,))
    provider = AsgProvider(
        aws.client("autoscaling"), aws.client("ec2"), cluster_name=aws.cluster, image_id=base_image(aws),
        subnets_by_zone=subnets, launch=settings, eks=aws.client("eks"), backoff=no_sleep,
    )
    info = provider.create_group(spec(f"kbl-launch-{aws.cluster}"), "tok")
    (version,) = aws.client("ec2").describe_launch_template_versions(LaunchTemplateName=info.name)["LaunchTemplateVersions"]
    data = version["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    assert data["IamInstanceProfile"] == {"Arn": profile}
    assert data["SecurityGroupIds"] == [security_group]
    assert data["InstanceType"] == "m6i.xlarge"
    by_type = {s["ResourceType"]: {t["Key"]: t["Value"] for t in s["Tags"]} for s in data["TagSpecifications"]}
    for resource in ("instance", "volume"):
        assert by_type[resource][f"kubernetes.io/cluster/{aws.cluster}"] == "owned"
        assert by_type[resource][MANAGED_BY_TAG] == "kbl"
        assert by_type[resource][CLUSTER_TAG] == aws.cluster
    (config,) = nodeadm_configs(data["UserData"])
    cluster = aws.client("eks").describe_cluster(name=aws.cluster)["cluster"]
    assert config["spec"]["cluster"]["name"] == aws.cluster
    assert config["spec"]["cluster"]["apiServerEndpoint"] == cluster["endpoint"]
    assert config["spec"]["cluster"]["cidr"] == "10.100.0.0/16"


def test_chart_launch_values_reach_the_controller_arguments_and_the_cli_builds_the_same_settings() -> None:
    from kbl import cli
    from kbl.commands.bake import launch_settings
    from tests.manifests.shipped import find, generator

    launch = {
        "launchTemplate": "kbl-nodes", "imageId": "ami-0abc", "nodeOS": "bottlerocket", "apiEndpoint": SETTINGS.api_endpoint,
        "certificateAuthority": CA, "serviceCidr": "172.20.0.0/16", "instanceProfile": "eks-node", "securityGroups": ["sg-0a", "sg-0b"],
        "metadataHopLimit": 3, "kubeletFlags": ["--max-pods=58"],
    }  # fmt: skip
    rendered = generator().render({"controller": {"clusterName": "prod", "launch": launch}})
    objects = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    args = find(objects, "Deployment", "kbl-controller")["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = cli.build_parser().parse_args(args)
    assert (parsed.launch_template, parsed.image_id) == ("kbl-nodes", "ami-0abc")
    assert launch_settings(parsed) == LaunchSettings(
        "prod", api_endpoint=SETTINGS.api_endpoint, certificate_authority=CA, service_cidr="172.20.0.0/16", node_os="bottlerocket",
        instance_profile="eks-node", security_groups=("sg-0a", "sg-0b"), metadata_hop_limit=3, kubelet_flags=("--max-pods=58",),
    )  # fmt: skip
    queue = generator().render(
        {"controller": {"provider": "queue", "queueUrl": "q", "replyQueueUrl": "r", "launch": launch}}
    )  # the worker starts nodes in queue mode: the controller gets no launch flags
    assert "--launch-template" not in queue["controller.yaml"]
