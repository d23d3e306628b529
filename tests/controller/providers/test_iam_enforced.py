"""Every mode, run by the real providers as a role holding exactly the shipped policy, against AWS with IAM enforced.

One moto server per module, in its own process, with IAM enforcement on (``tests/motoiam.py``
explains what moto evaluates: the Action of every statement, the Resource of SQS calls; not the
Resource of EKS, Auto Scaling, EC2 and SSM calls, nor Condition keys). The setup runs as an
administrator; every call of the code under test runs with the temporary credentials of a role
holding one policy file from ``manifests/iam/``. An ``AccessDenied`` anywhere raises a
``ProviderError`` and fails the test. Left out everywhere: instances that really boot and join
(moto's instances never run kubelet), and the IRSA web-identity exchange itself (the role is
assumed with ``sts:AssumeRole``; ``tests/manifests/test_iam.py`` checks the IRSA trust policy).

Calls moto does not implement (``eks:UpdateNodegroupVersion``,
and ``autoscaling:DeleteTags``/``TerminateInstanceInAutoScalingGroup`` on the Auto Scaling group
behind an EKS managed group, which moto does not create) go to :class:`Judged`: the same boto3
client interface, each such call first judged against the role's policy by moto's own policy
evaluator (the one the server runs), then answered by botocore's ``Stubber``, which checks the
call's shape against the service model.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber

from controller.interruptions import InterruptionHandler
from controller.patching import SsmRebooter
from controller.providers import CLUSTER_TAG, MANAGED_BY, MANAGED_BY_TAG, NodeGroupSpec, ProviderError
from controller.providers.asg import AsgProvider
from controller.providers.eks import EksProvider
from controller.providers.fake import FakeProvider
from controller.providers.iam import (
    CONTROLLER_DIRECT_ACTIONS,
    CONTROLLER_INTERRUPTION_ACTIONS,
    CONTROLLER_QUEUE_ACTIONS,
    IMPLIED_ACTIONS,
    WORKER_ACTIONS,
)
from controller.providers.karpenter import KarpenterProvider
from controller.providers.launching import LaunchSettings
from controller.providers.queueing import QueueProvider, Worker
from controller.providers.retrying import Backoff
from kbl.commands.bake import bake
from kube.api import KBLS, NODE_HOLDINGS, NODES
from kube.memory import MemoryApi
from tests.controller.karpenter.crds import event
from tests.motoiam import ACCOUNT, REGION, EnforcedAws, enforced_aws
from tests.placement.scenarios import T0, kbl_object, placed_dataset
from topology import labels
from topology.examples import make_node
from topology.times import format_time

NODE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/node"
NO_SLEEP = Backoff(attempts=2, base_s=0.0, sleep=lambda _s: None)


@pytest.fixture(scope="module")
def iam_aws() -> Iterator[EnforcedAws]:
    yield from enforced_aws()


class Judged:
    """A boto3 client whose ``operations`` moto lacks are judged against ``policy`` by moto's
    evaluator, then answered by a ``Stubber`` (see the module docstring); every other call goes
    to the real client."""

    def __init__(self, real: Any, policy: dict[str, Any], service: str, operations: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]):
        import boto3

        self.real, self.policy, self.service = real, policy, service
        self.stub = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name=REGION).client(service)  # type: ignore[call-overload]
        self.stubber = Stubber(self.stub)
        self.operations = set(operations)
        self.judged: list[str] = []
        for operation, answers in operations.items():
            for expected, response in answers:
                self.stubber.add_response(operation, response, expected)
        self.stubber.activate()

    def __getattr__(self, name: str) -> Any:
        if name not in self.operations:
            return getattr(self.real, name)
        model = self.stub.meta.service_model.operation_model(self.stub.meta.method_to_api_mapping[name])
        action = f"{self.service}:{model.name}"
        if not permitted(self.policy, action):
            raise ProviderError("AccessDenied", f"{action} is not allowed by the shipped policy")
        self.judged.append(action)
        return getattr(self.stub, name)


def permitted(policy: dict[str, Any], action: str) -> bool:
    """moto's verdict on ``action`` for ``policy`` (resources judged by the action alone, as on the server)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    from tests.motoiam import _judge_unknown_resources_by_action

    _judge_unknown_resources_by_action()
    return IAMPolicy(json.dumps(policy)).is_action_permitted(action) == PermissionResult.PERMITTED


def shipped(policy_file: str, substitutions: dict[str, str]) -> dict[str, Any]:
    from tests.motoiam import IAM_DIR

    text = (IAM_DIR / policy_file).read_text()
    for key, value in {"AWS_ACCOUNT_ID": ACCOUNT, "AWS_REGION": REGION, **substitutions}.items():
        text = text.replace("${" + key + "}", value)
    policy: dict[str, Any] = json.loads(text)
    return policy


def cluster(aws: EnforcedAws, name: str) -> dict[str, list[str]]:
    """As the administrator: a VPC with a subnet in us-east-1a and b, an EKS cluster, subnets by zone."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    by_zone = {}
    for i, zone in enumerate(("us-east-1a", "us-east-1b")):
        by_zone[zone] = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]]
    subnet_ids = [s for v in by_zone.values() for s in v]
    aws.client("eks").create_cluster(name=name, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={"subnetIds": subnet_ids})
    return by_zone


def kbl_template(aws: EnforcedAws, name: str, image: str) -> str:
    tags = [{"Key": MANAGED_BY_TAG, "Value": MANAGED_BY}, {"Key": CLUSTER_TAG, "Value": name}]
    made = aws.client("ec2").create_launch_template(
        LaunchTemplateName=f"{name}-lt", LaunchTemplateData={"ImageId": image},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags}],
    )  # fmt: skip
    return str(made["LaunchTemplate"]["LaunchTemplateId"])


def image(aws: EnforcedAws, name: str) -> str:
    return str(aws.client("ec2").register_image(Name=f"eks-node-{name}", RootDeviceName="/dev/xvda")["ImageId"])


def direct(aws: EnforcedAws, name: str) -> tuple[dict[str, str], dict[str, Any]]:
    subs = {"CLUSTER_NAME": name, "NODE_ROLE_NAME": "node"}
    return aws.role_with("controller-direct-policy.json", subs), shipped("controller-direct-policy.json", subs)


def test_the_enforcing_server_denies_every_service_a_policy_does_not_name(iam_aws: EnforcedAws) -> None:
    """The harness can fail: a role holding only the queue policy is refused by every service kbl calls."""
    subs = {"QUEUE_NAME": "deny-req", "REPLY_QUEUE_NAME": "deny-rep"}
    creds = iam_aws.role_with("controller-queue-policy.json", subs)
    other = iam_aws.client("sqs").create_queue(QueueName="deny-other")["QueueUrl"]
    own = iam_aws.client("sqs").create_queue(QueueName="deny-req")["QueueUrl"]
    iam_aws.client("sqs", creds).send_message(QueueUrl=own, MessageBody="{}")  # its own queue: allowed
    calls: dict[str, Callable[[Any], Any]] = {
        "eks": lambda c: c.list_nodegroups(clusterName="x"),
        "autoscaling": lambda c: c.describe_auto_scaling_groups(),
        "ec2": lambda c: c.describe_instance_types(),
        "ssm": lambda c: c.list_commands(),
        "sqs": lambda c: c.send_message(QueueUrl=other, MessageBody="{}"),
    }
    for service, call in calls.items():
        with pytest.raises(ClientError) as denied:
            call(iam_aws.client(service, creds))
        response = getattr(denied.value, "response", {})
        assert response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403, (service, denied.value)


def test_eks_mode_grows_shrinks_rolls_deletes_and_reads_the_catalog_with_only_the_direct_policy(iam_aws: EnforcedAws) -> None:
    name = "eks-direct"
    cluster(iam_aws, name)
    base = image(iam_aws, name)
    template = kbl_template(iam_aws, name, base)
    creds, policy = direct(iam_aws, name)
    eks_client = iam_aws.client("eks", creds, label="eks")
    eks = EksProvider(
        eks_client, iam_aws.client("autoscaling", creds, label="eks"), iam_aws.client("ec2", creds, label="eks"),
        cluster_name=name, node_role_arn=NODE_ROLE, launch_template_id=template, image_id=base,
        ssm=iam_aws.client("ssm", creds, label="eks"), backoff=NO_SLEEP,
    )  # fmt: skip
    group = "kbl-default-k-us-east-1a"
    eks.create_group(NodeGroupSpec(group, "default/k", "us-east-1a", "m6i.xlarge", 1, 4, labels={labels.KBL_LABEL: "k"}), "tok")
    assert [g.name for g in eks.list_groups()] == [group]
    assert {t.name for t in eks.instance_types()} >= {"m6i.xlarge", "r6i.2xlarge"}  # DescribeInstanceTypes is granted
    eks.set_size(group, 3)
    eks.set_size(group, 2)
    described = eks.describe_group(group)
    assert described is not None
    assert described.desired == 2
    # moto creates no Auto Scaling group behind a managed node group: the two calls kbl makes on
    # it, and the roll (UpdateNodegroupVersion, which moto lacks), are judged (see the docstring).
    asg = "eks-asg-of-" + group
    swapped: Any = eks  # the clients are swapped for Judged ones below
    swapped.autoscaling = Judged(eks.autoscaling, policy, "autoscaling", {
        "delete_tags": [({"Tags": ANY}, {})],
        "describe_auto_scaling_instances": [({"InstanceIds": ["i-0123456789abcdef0"]}, {"AutoScalingInstances": [{
            "InstanceId": "i-0123456789abcdef0", "AutoScalingGroupName": asg, "AvailabilityZone": "us-east-1a",
            "LifecycleState": "InService", "HealthStatus": "HEALTHY", "ProtectedFromScaleIn": False}]})],
        "terminate_instance_in_auto_scaling_group": [({"InstanceId": "i-0123456789abcdef0", "ShouldDecrementDesiredCapacity": True}, {})],
    })  # fmt: skip
    with_asg = {"resources": {"autoScalingGroups": [{"name": asg}]}}
    real_describe = eks_client.describe_nodegroup

    def describe_with_asg(**kwargs: Any) -> Any:
        answer = real_describe(**kwargs)
        answer["nodegroup"].update(with_asg)
        return answer

    swapped.eks = Judged(eks_client, policy, "eks", {
        "update_nodegroup_version": [({"clusterName": name, "nodegroupName": group, "launchTemplate": ANY, "clientRequestToken": "roll"},
                                      {"update": {"id": "u1", "status": "InProgress"}})],
    })  # fmt: skip
    eks_client.describe_nodegroup = describe_with_asg
    assert eks.detach_from_cluster_autoscaler(group) == [asg]
    eks.remove_instance(group, "aws:///us-east-1a/i-0123456789abcdef0")
    assert eks.roll_group(group, base, "rolling", "roll") == "3"  # a new version from the group's own
    eks.delete_group(group)
    judged = set(swapped.autoscaling.judged) | set(swapped.eks.judged)
    assert judged == {"autoscaling:DeleteTags", "autoscaling:DescribeAutoScalingInstances",
                      "autoscaling:TerminateInstanceInAutoScalingGroup", "eks:UpdateNodegroupVersion"}  # fmt: skip
    made = iam_aws.seen["eks"] | judged
    assert made <= CONTROLLER_DIRECT_ACTIONS
    assert {"ec2:DescribeInstanceTypes", "eks:CreateNodegroup", "eks:UpdateNodegroupConfig", "eks:DeleteNodegroup"} <= made


def test_asg_mode_grows_shrinks_rolls_deletes_and_reads_the_catalog_with_only_the_direct_policy(iam_aws: EnforcedAws) -> None:
    name = "asg-direct"
    subnets = cluster(iam_aws, name)
    base = image(iam_aws, name)
    creds, _policy = direct(iam_aws, name)
    asg = AsgProvider(
        iam_aws.client("autoscaling", creds, label="asg"), iam_aws.client("ec2", creds, label="asg"), cluster_name=name, image_id=base,
        subnets_by_zone=subnets, launch=LaunchSettings(name), eks=iam_aws.client("eks", creds, label="asg"),
        ssm=iam_aws.client("ssm", creds, label="asg"), backoff=NO_SLEEP,
    )  # fmt: skip
    info = asg.create_group(NodeGroupSpec("g-asg", "default/k", "us-east-1a", "m6i.xlarge", 2, 4), "tok")
    assert [g.name for g in asg.list_groups()] == [info.name]
    assert "m6i.xlarge" in {t.name for t in asg.instance_types()}
    asg.set_size(info.name, 3)
    asg.set_size(info.name, 2)
    members = iam_aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[info.name])["AutoScalingGroups"][0]
    victim = members["Instances"][0]["InstanceId"]
    asg.remove_instance(info.name, f"aws:///us-east-1a/{victim}")
    assert asg.roll_group(info.name, base, "next-nodes", "roll-a") == "2"
    assert asg.outdated_instances(info.name) == []  # a new version with the same image rolls nothing
    asg.roll_group(info.name, image(iam_aws, f"{name}-baked"), "rolling", "roll-b")  # the template only
    assert len(asg.outdated_instances(info.name)) == 1  # the controller replaces it (controller/rolling.py)
    asg.delete_group(info.name)
    made = iam_aws.seen["asg"]
    assert made <= CONTROLLER_DIRECT_ACTIONS
    assert {"ec2:DescribeInstanceTypes", "autoscaling:CreateAutoScalingGroup", "autoscaling:TerminateInstanceInAutoScalingGroup",
            "autoscaling:DeleteAutoScalingGroup", "ec2:CreateLaunchTemplate", "ec2:DeleteLaunchTemplate"} <= made  # fmt: skip


def test_a_bake_and_a_patch_reboot_run_with_only_the_direct_policy(iam_aws: EnforcedAws) -> None:
    """The bake drains, cleans, images and rolls; the patch reboot (controller/patching.py) sends
    its reboot through SSM with the same grant."""
    name = "bake-direct"
    subnets = cluster(iam_aws, name)
    creds, _ = direct(iam_aws, name)
    provider = AsgProvider(
        iam_aws.client("autoscaling", creds, label="bake"), iam_aws.client("ec2", creds, label="bake"), cluster_name=name,
        image_id=image(iam_aws, name), subnets_by_zone=subnets, launch=LaunchSettings(name),
        eks=iam_aws.client("eks", creds, label="bake"), ssm=iam_aws.client("ssm", creds, label="bake"), backoff=NO_SLEEP,
    )  # fmt: skip
    group = "kbl-bake"
    provider.create_group(NodeGroupSpec(group, "default/k", "us-east-1b", "m6i.xlarge", 1, 4, labels={labels.KBL_LABEL: "k"}), "tok")
    scaling = iam_aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    instance = scaling["Instances"][0]
    kube = MemoryApi()
    kube.put(KBLS, kbl_object("k"))
    node = make_node("ip-10-0-1-7", zone="us-east-1b", extra_labels={labels.NODE_GROUP_LABEL: group})
    node["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": format_time(T0 - 7200)}]
    node["spec"]["providerID"] = f"aws:///us-east-1b/{instance['InstanceId']}"
    kube.put(NODES, node)
    kube.put(NODE_HOLDINGS, {"apiVersion": "kbl.io/v1alpha1", "kind": "NodeHoldings", "metadata": {"name": "ip-10-0-1-7"}})

    waiting = bake(kube, provider, node="ip-10-0-1-7", clock=lambda: T0)
    assert waiting.skipped.startswith("waiting")  # the data first
    assert not waiting.image
    drained = kube.get(NODES, "ip-10-0-1-7")
    assert drained is not None
    drained["metadata"]["annotations"][labels.DATA_DRAINED] = format_time(T0 + 1)  # the reconciler's answer
    kube.put(NODES, drained)
    done = bake(kube, provider, node="ip-10-0-1-7", clock=lambda: T0 + 2)
    assert done.image.startswith("ami-")
    assert done.version == "2"
    assert {"ssm:SendCommand", "ssm:GetCommandInvocation", "ec2:CreateImage", "ec2:CreateLaunchTemplateVersion"} <= iam_aws.seen["bake"]
    assert iam_aws.seen["bake"] <= CONTROLLER_DIRECT_ACTIONS
    command = SsmRebooter(iam_aws.client("ssm", creds, label="reboot"), NO_SLEEP).reboot(node["spec"]["providerID"])
    (sent,) = [c for c in iam_aws.client("ssm").list_commands(InstanceId=instance["InstanceId"])["Commands"] if c["CommandId"] == command]
    assert sent["Parameters"]["commands"][-1] == "exit 194"  # SSM's way to reboot from a script
    assert iam_aws.seen["reboot"] == {"ssm:SendCommand"}


def test_queue_mode_controller_and_worker_each_need_only_their_policy_and_the_catalog_comes_back(iam_aws: EnforcedAws) -> None:
    name = "queue-mode"
    cluster(iam_aws, name)
    subs = {"QUEUE_NAME": f"{name}-req.fifo", "REPLY_QUEUE_NAME": f"{name}-rep", "CLUSTER_NAME": name, "NODE_ROLE_NAME": "node"}
    sqs = iam_aws.client("sqs")
    main = sqs.create_queue(QueueName=subs["QUEUE_NAME"], Attributes={"FifoQueue": "true"})["QueueUrl"]
    reply = sqs.create_queue(QueueName=subs["REPLY_QUEUE_NAME"])["QueueUrl"]
    ours = iam_aws.role_with("controller-queue-policy.json", subs)
    theirs = iam_aws.role_with("worker-policy.json", subs)
    controller = QueueProvider(iam_aws.client("sqs", ours, label="queue-controller"), main, reply, clock=lambda: T0, backoff=NO_SLEEP)
    eks = EksProvider(
        iam_aws.client("eks", theirs, label="worker"), iam_aws.client("autoscaling", theirs, label="worker"),
        iam_aws.client("ec2", theirs, label="worker"), cluster_name=name, node_role_arn=NODE_ROLE, backoff=NO_SLEEP,
    )  # fmt: skip
    worker = Worker(iam_aws.client("sqs", theirs, label="worker"), main, reply, eks, max_nodes_total=10,
                    visibility_timeout_s=0, backoff=NO_SLEEP, clock=lambda: T0)  # fmt: skip
    group = "kbl-default-q-us-east-1a"
    controller.create_group(NodeGroupSpec(group, "default/q", "us-east-1a", "m6i.xlarge", 1, 4), "tq")
    worker.poll_once()
    controller.set_size(group, 3)
    worker.poll_once()
    assert [(g.name, g.desired) for g in controller.list_groups()] == [(group, 3)]
    assert "m6i.xlarge" in {t.name for t in controller.instance_types()}  # the worker could read the catalog
    controller.delete_group(group)
    worker.poll_once()
    assert worker.stats.failed == 0
    assert controller.worker_errors == []
    assert iam_aws.seen["queue-controller"] == CONTROLLER_QUEUE_ACTIONS
    assert iam_aws.seen["worker"] <= WORKER_ACTIONS - IMPLIED_ACTIONS
    assert "ec2:DescribeInstanceTypes" in iam_aws.seen["worker"]


def test_queue_mode_protects_joined_instances_and_terminates_the_drained_one_with_a_decrement_through_the_worker(
    iam_aws: EnforcedAws,
) -> None:
    """Scale-in protection in queue mode: the controller (queue policy) asks, the worker (worker
    policy, an Auto Scaling group) protects and later terminates the named instance with a
    decrement, as direct mode does; a lower desired size then takes only the unprotected one."""
    name = "queue-protect"
    subnets = cluster(iam_aws, name)
    base = image(iam_aws, name)
    subs = {"QUEUE_NAME": f"{name}-req.fifo", "REPLY_QUEUE_NAME": f"{name}-rep", "CLUSTER_NAME": name, "NODE_ROLE_NAME": "node"}
    sqs = iam_aws.client("sqs")
    main = sqs.create_queue(QueueName=subs["QUEUE_NAME"], Attributes={"FifoQueue": "true"})["QueueUrl"]
    reply = sqs.create_queue(QueueName=subs["REPLY_QUEUE_NAME"])["QueueUrl"]
    ours = iam_aws.role_with("controller-queue-policy.json", subs)
    theirs = iam_aws.role_with("worker-policy.json", subs)
    controller = QueueProvider(iam_aws.client("sqs", ours, label="protect-controller"), main, reply, clock=lambda: T0, backoff=NO_SLEEP)
    asg = AsgProvider(
        iam_aws.client("autoscaling", theirs, label="protect-worker"), iam_aws.client("ec2", theirs, label="protect-worker"),
        cluster_name=name, image_id=base, subnets_by_zone=subnets, launch=LaunchSettings(name),
        eks=iam_aws.client("eks", theirs, label="protect-worker"), backoff=NO_SLEEP,
    )  # fmt: skip
    worker = Worker(iam_aws.client("sqs", theirs, label="protect-worker"), main, reply, asg, max_nodes_total=10,
                    visibility_timeout_s=0, backoff=NO_SLEEP, clock=lambda: T0)  # fmt: skip
    group = "kbl-default-p-us-east-1a"
    controller.create_group(NodeGroupSpec(group, "default/p", "us-east-1a", "m6i.xlarge", 3, 4), "tp")
    worker.poll_once()

    def members() -> dict[str, Any]:
        found = iam_aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
        return {i["InstanceId"]: i for i in found[0]["Instances"]}

    joined, staying, never_joined = sorted(members())
    controller.protect_instances(group, [f"aws:///us-east-1a/{i}" for i in (joined, staying)])
    worker.poll_once()
    assert {i for i, m in members().items() if m["ProtectedFromScaleIn"]} == {joined, staying}
    controller.set_size(group, 2)  # anyone lowering the size can take only the instance that never joined
    worker.poll_once()
    assert set(members()) == {joined, staying}
    controller.remove_instance(group, f"aws:///us-east-1a/{joined}")  # drained: its protection lifted, terminated
    worker.poll_once()
    assert set(members()) == {staying}
    assert members()[staying]["ProtectedFromScaleIn"]
    assert [(g.name, g.desired) for g in controller.list_groups()] == [(group, 1)]  # decremented
    assert never_joined not in members()
    assert worker.stats.failed == 0
    assert controller.worker_errors == []
    assert iam_aws.seen["protect-controller"] <= CONTROLLER_QUEUE_ACTIONS
    assert {"autoscaling:SetInstanceProtection", "autoscaling:TerminateInstanceInAutoScalingGroup"} <= iam_aws.seen["protect-worker"]
    assert iam_aws.seen["protect-worker"] <= WORKER_ACTIONS - IMPLIED_ACTIONS


def test_a_worker_denied_by_iam_reports_the_error_on_the_reply_queue_and_keeps_serving(
    iam_aws: EnforcedAws, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker holds only the SQS statements of its policy: every cloud call is AccessDenied."""
    name = "queue-denied"
    subs = {"QUEUE_NAME": f"{name}-req", "REPLY_QUEUE_NAME": f"{name}-rep", "CLUSTER_NAME": name, "NODE_ROLE_NAME": "node"}
    sqs = iam_aws.client("sqs")
    main, reply = (sqs.create_queue(QueueName=subs[k])["QueueUrl"] for k in ("QUEUE_NAME", "REPLY_QUEUE_NAME"))
    policy = shipped("worker-policy.json", subs)
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"].startswith("Sqs")]
    iam = iam_aws.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/admin"},
                                                     "Action": "sts:AssumeRole"}]}  # fmt: skip
    arn = iam.create_role(RoleName="kbl-worker-sqs-only", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="kbl-worker-sqs-only", PolicyName="kbl", PolicyDocument=json.dumps(policy))
    raw = iam_aws.client("sts").assume_role(RoleArn=arn, RoleSessionName="worker")["Credentials"]
    creds = {"aws_access_key_id": raw["AccessKeyId"], "aws_secret_access_key": raw["SecretAccessKey"],
             "aws_session_token": raw["SessionToken"]}  # fmt: skip
    eks = EksProvider(iam_aws.client("eks", creds), iam_aws.client("autoscaling", creds), iam_aws.client("ec2", creds), cluster_name=name,
                      node_role_arn=NODE_ROLE, subnets_by_zone={"us-east-1a": ["subnet-1"]}, backoff=NO_SLEEP)  # fmt: skip
    worker = Worker(iam_aws.client("sqs", creds), main, reply, eks, max_nodes_total=10, visibility_timeout_s=0,
                    backoff=NO_SLEEP, clock=lambda: T0)  # fmt: skip
    controller = QueueProvider(iam_aws.client("sqs"), main, reply, clock=lambda: T0, backoff=NO_SLEEP)
    controller.create_group(NodeGroupSpec("g", "default/q", "us-east-1a", "m6i.xlarge", 1, 4), "t1")
    controller.delete_group("other")
    assert worker.poll_once() == 2  # neither call raised out of the worker
    assert worker.poll_once() == 2  # redelivered (not deleted), failing again, still serving
    controller.refresh()
    # moto answers a denied EKS call in the query protocol's XML (code AccessDenied), which
    # botocore cannot parse as EKS's JSON: the code is the HTTP status, the AWS code in the text.
    denied = {e.op for e in controller.worker_errors if "AccessDenied" in f"{e.code} {e.message}"}
    assert denied == {"create_group", "delete_group", "report"}, controller.worker_errors  # report: the inventory, denied too
    assert "kbl worker could not run create_group" in caplog.text  # the controller's log says so
    # No inventory came back: the controller keeps only its own optimistic record of the request.
    assert [(g.name, g.status) for g in controller.list_groups()] == [("g", "REQUESTED")]


def test_karpenter_mode_with_the_interruption_policy_makes_no_other_aws_call(iam_aws: EnforcedAws, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``--provider karpenter`` the controller's only AWS calls are the interruption queue's:
    every boto3 call of the process is recorded while it grows, shrinks and deletes a NodePool
    and handles a spot warning."""
    from botocore.client import BaseClient

    made: set[str] = set()
    original = BaseClient.__dict__["_make_api_call"]

    def recording(self: Any, operation: str, params: Any) -> Any:
        made.add(f"{self.meta.service_model.endpoint_prefix}:{operation}")
        return original(self, operation, params)

    queue_name = "kbl-interruptions-enforced"
    url = iam_aws.client("sqs").create_queue(QueueName=queue_name)["QueueUrl"]
    iam_aws.client("sqs").send_message(QueueUrl=url, MessageBody=event("spot-interruption-warning"))
    creds = iam_aws.role_with("controller-interruption-policy.json", {"INTERRUPTION_QUEUE_NAME": queue_name})
    kube = MemoryApi()
    spot = make_node("spot-1", zone="us-east-1a")
    spot["spec"]["providerID"] = "aws:///us-east-1a/i-0a1b2c3d4e5f60001"
    kube.put(NODES, spot)
    kube.put(NODES, make_node("other", zone="us-east-1a"))
    from kube.api import DATASETS

    kube.put(DATASETS, placed_dataset("d", [["spot-1", "other"]]))
    handler = InterruptionHandler(kube, iam_aws.client("sqs", creds), url)
    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    karpenter = KarpenterProvider(kube)
    spec = NodeGroupSpec("kbl-default-k-us-east-1a", "default/k", "us-east-1a", "m6i.xlarge", 1, 4)
    karpenter.create_group(spec, "tok")
    karpenter.set_size(spec.name, 3)
    karpenter.set_size(spec.name, 1)
    karpenter.instance_types()
    karpenter.delete_group(spec.name)
    assert handler.check_queue() == 1
    (outcome,) = handler.poll(wait_s=0)
    assert (outcome.node, outcome.drained) == ("spot-1", True)
    assert made == CONTROLLER_INTERRUPTION_ACTIONS


def test_a_fake_cloud_failing_in_every_command_never_stops_the_worker_and_every_failure_is_reported(iam_aws: EnforcedAws) -> None:
    """The same narrow interface, the stateful fake: each operation the worker runs, and the two
    reads of its report, fail once; the worker serves on and the controller learns of each."""
    sqs = iam_aws.client("sqs")
    main = sqs.create_queue(QueueName="fake-fail-req")["QueueUrl"]
    reply = sqs.create_queue(QueueName="fake-fail-rep")["QueueUrl"]
    cloud = FakeProvider(lambda: T0)
    controller = QueueProvider(sqs, main, reply, clock=lambda: T0, backoff=NO_SLEEP)
    controller.create_group(NodeGroupSpec("g", "default/f", "us-east-1a", "m6i.xlarge", 1, 4), "t0")
    worker = Worker(sqs, main, reply, cloud, max_nodes_total=10, visibility_timeout_s=0, backoff=NO_SLEEP, clock=lambda: T0)
    worker.poll_once()
    for op in ("set_size", "delete_group", "roll_group", "create_group", "list_groups", "instance_types"):
        cloud.inject(op, ProviderError("AccessDenied", f"{op} denied"), times=1)
    controller.create_group(NodeGroupSpec("g2", "default/f", "us-east-1a", "m6i.xlarge", 1, 4), "t1")
    controller.set_size("g", 2)
    controller.roll_group("g", "ami-1", "next-nodes", "r1")
    controller.delete_group("gone")
    for _ in range(4):
        worker.poll_once()
    controller.refresh()
    failed = {e.op for e in controller.worker_errors if e.code == "AccessDenied"}
    assert failed >= {"create_group", "set_size", "delete_group", "roll_group", "report"}
    assert [(g.name, g.desired) for g in controller.list_groups()] == [("g", 2), ("g2", 1)]  # redelivered and done


def test_a_blue_green_roll_of_an_eks_group_runs_with_only_the_direct_policy(iam_aws: EnforcedAws) -> None:
    """Every call of a blue/green roll (controller/bluegreen.py) as the role holding the shipped
    direct policy: the green group created from the blue one's description on the baked image,
    grown, the blue instance terminated with a decrement, the blue group deleted. Left out,
    besides the module docstring's: moto's managed groups launch no instance and have no Auto
    Scaling group (the calls on it are judged, as above); the test registers the green Node
    itself once the green group asks for a node, as kubelet would, and removes the blue Node once
    its instance is terminated, as the cloud controller manager would; moto's group does not see
    the decrement on the Auto Scaling group it lacks, so the roll also sets the emptied blue group
    to zero (UpdateNodegroupConfig), as it does when requested nodes never joined."""
    from controller.bluegreen import green_name, start_blue_green
    from controller.locking import GroupLocks
    from controller.rolling import Roller
    from topology.nodes import Taint

    name = "eks-bluegreen"
    cluster(iam_aws, name)
    base = image(iam_aws, name)
    baked = str(iam_aws.client("ec2").register_image(Name=f"kbl-baked-{name}", RootDeviceName="/dev/xvda")["ImageId"])
    template = kbl_template(iam_aws, name, base)
    creds, policy = direct(iam_aws, name)

    def provider(label: str) -> EksProvider:
        return EksProvider(
            iam_aws.client("eks", creds, label=label), iam_aws.client("autoscaling", creds, label=label),
            iam_aws.client("ec2", creds, label=label), cluster_name=name, node_role_arn=NODE_ROLE, launch_template_id=template,
            image_id=base, backoff=NO_SLEEP,
        )  # fmt: skip

    blue = "kbl-default-k-us-east-1a"
    taint = Taint("kbl.io/dedicated", "k", "NoSchedule")
    spec = NodeGroupSpec(blue, "default/k", "us-east-1a", "m6i.xlarge", 1, 4, labels={labels.KBL_LABEL: "k"}, taints=(taint,))
    provider("bluegreen-setup").create_group(spec, "tok")
    eks = provider("bluegreen")
    instance = "i-0123456789abcdef0"
    swapped: Any = eks
    swapped.autoscaling = Judged(eks.autoscaling, policy, "autoscaling", {
        "describe_auto_scaling_instances": [({"InstanceIds": [instance]}, {"AutoScalingInstances": [{
            "InstanceId": instance, "AutoScalingGroupName": f"eks-asg-of-{blue}", "AvailabilityZone": "us-east-1a",
            "LifecycleState": "InService", "HealthStatus": "HEALTHY", "ProtectedFromScaleIn": True}]})],
        "set_instance_protection": [({"AutoScalingGroupName": f"eks-asg-of-{blue}", "InstanceIds": [instance],
                                      "ProtectedFromScaleIn": False}, {})],
        "terminate_instance_in_auto_scaling_group": [({"InstanceId": instance, "ShouldDecrementDesiredCapacity": True}, {})],
    })  # fmt: skip
    real_describe = eks.eks.describe_nodegroup

    def describe_with_asg(**kwargs: Any) -> Any:
        answer = real_describe(**kwargs)
        answer["nodegroup"]["resources"] = {"autoScalingGroups": [{"name": f"eks-asg-of-{kwargs['nodegroupName']}"}]}
        return answer

    swapped.eks.describe_nodegroup = describe_with_asg
    kube = MemoryApi()
    kube.put(KBLS, kbl_object("k"))

    def register(node_name: str, group: str, instance_id: str) -> None:
        node = make_node(node_name, zone="us-east-1a", extra_labels={labels.NODE_GROUP_LABEL: group, labels.KBL_LABEL: "k"})
        node["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": format_time(T0 - 60)}]
        node["spec"]["providerID"] = f"aws:///us-east-1a/{instance_id}"
        kube.put(NODES, node)

    register("blue-1", blue, instance)
    assert start_blue_green(kube, "default/k", blue, baked, now_s=T0) is None
    green = green_name(blue)
    roller = Roller(kube, eks, lambda: T0)
    for _ in range(20):
        roller.run_once([("default/k", blue)])
        grown = eks.describe_group(green)
        if grown is not None and grown.desired >= 1 and kube.get(NODES, "green-1") is None:
            register("green-1", green, "i-0fedcba9876543210")
        if "autoscaling:TerminateInstanceInAutoScalingGroup" in swapped.autoscaling.judged and kube.get(NODES, "blue-1") is not None:
            kube.delete(NODES, "blue-1")
        if GroupLocks(kube).holder("default/k", blue) is None:
            break
    assert GroupLocks(kube).holder("default/k", blue) is None, roller.failures
    assert eks.describe_group(blue) is None
    admin = iam_aws.client("eks")
    made_green = admin.describe_nodegroup(clusterName=name, nodegroupName=green)["nodegroup"]
    assert made_green["scalingConfig"]["desiredSize"] == 1
    assert made_green["scalingConfig"]["maxSize"] == 4
    assert made_green["labels"] == {labels.KBL_LABEL: "k", labels.NODE_GROUP_LABEL: green}
    assert made_green["taints"] == [{"key": "kbl.io/dedicated", "value": "k", "effect": "NO_SCHEDULE"}]
    assert made_green["instanceTypes"] == ["m6i.xlarge"]
    assert made_green["tags"][labels.KBL_TAG] == "default/k"
    assert made_green["tags"][MANAGED_BY_TAG] == MANAGED_BY
    version = iam_aws.client("ec2").describe_launch_template_versions(
        LaunchTemplateId=template, Versions=[str(made_green["launchTemplate"]["version"])]
    )["LaunchTemplateVersions"][0]
    assert version["LaunchTemplateData"]["ImageId"] == baked
    joins_as = base64.b64decode(version["LaunchTemplateData"]["UserData"]).decode()
    assert f"{labels.NODE_GROUP_LABEL}={green}" in joins_as  # its nodes register in the green group
    assert f"{labels.NODE_GROUP_LABEL}={blue}," not in joins_as
    judged = set(swapped.autoscaling.judged)
    assert judged == {"autoscaling:DescribeAutoScalingInstances", "autoscaling:SetInstanceProtection",
                      "autoscaling:TerminateInstanceInAutoScalingGroup"}  # fmt: skip
    made = iam_aws.seen["bluegreen"] | judged
    assert made <= CONTROLLER_DIRECT_ACTIONS
    assert {"eks:CreateNodegroup", "eks:UpdateNodegroupConfig", "eks:DeleteNodegroup", "ec2:CreateLaunchTemplateVersion"} <= made
