"""Every boto3 operation the providers make is in the mode's IAM action set, and every action listed is used.

Operations run against moto over HTTP; the one moto lacks (``UpdateNodegroupVersion``) runs
against botocore's ``Stubber``, which still validates the call shape against the service model.
Calls are recorded by a ``before-parameter-build`` event hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from botocore.stub import ANY, Stubber

from controller.providers import NodeGroupSpec
from controller.providers.asg import AsgProvider, read_failures
from controller.providers.eks import EksProvider
from controller.providers.fake import FakeProvider
from controller.providers.iam import (
    CONTROLLER_DIRECT_ACTIONS,
    CONTROLLER_QUEUE_ACTIONS,
    IMPLIED_ACTIONS,
    WORKER_ACTIONS,
)
from controller.providers.launching import LaunchSettings
from controller.providers.pricing import AwsPrices
from controller.providers.queueing import QueueProvider, Worker
from controller.providers.retrying import Backoff
from tests.aws import REGION, Aws, base_image, make_cluster
from tests.controller.providers.test_pricing import PRICE_PAGE
from tests.controller.providers.test_queueing import queues
from tests.placement.scenarios import T0

if TYPE_CHECKING:
    from mypy_boto3_eks import EKSClient


def _stubbed(aws: Aws, service: str, *calls: tuple[str, dict[str, Any], dict[str, Any]]) -> Any:
    """A client answering ``calls`` (operation, expected parameters, response) in order."""
    import boto3

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    client = session.client(service)  # type: ignore[call-overload]
    client.meta.events.register("before-parameter-build.*.*", aws.recorder.hook)
    stubber = Stubber(client)
    for operation, expected, response in calls:
        stubber.add_response(operation, response, expected)
    stubber.activate()
    return client


class _Split:
    """moto's client, but ``update_nodegroup_version`` (which moto lacks) from a stubbed one."""

    def __init__(self, real: Any, stub: Any) -> None:
        self.real, self.stub = real, stub

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stub if name == "update_nodegroup_version" else self.real, name)


def test_provider_calls_match_the_iam_action_sets_exactly(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    ec2 = aws.client("ec2")
    image = base_image(aws)
    template = ec2.create_launch_template(LaunchTemplateName=f"{aws.cluster}-lt", LaunchTemplateData={"ImageId": image})
    template_id = template["LaunchTemplate"]["LaunchTemplateId"]
    role = "arn:aws:iam::123456789012:role/node"

    aws.recorder.label = "direct"
    eks = EksProvider(
        aws.client("eks"), aws.client("autoscaling"), ec2, cluster_name=aws.cluster, node_role_arn=role, backoff=no_sleep,
        launch_template_id=f"{aws.cluster}-lt", image_id=image, ssm=aws.client("ssm"),
    )  # fmt: skip
    name = "kbl-default-k-us-east-1a"
    eks.create_group(NodeGroupSpec(name, "default/k", "us-east-1a", "m6i.xlarge", 1, 4), "tok")
    eks.list_groups()
    eks.instance_types()  # every reconcile reads the catalog (the ASG provider's, the same call, in test_iam_enforced.py)
    eks.set_size(name, 2)
    described = aws.client("eks").describe_nodegroup(clusterName=aws.cluster, nodegroupName=name)["nodegroup"]
    asg_name = described["resources"]["autoScalingGroups"][0]["name"]
    ca_tags = [
        {"ResourceId": asg_name, "ResourceType": "auto-scaling-group", "Key": "k8s.io/cluster-autoscaler/enabled"},
        {"ResourceId": asg_name, "ResourceType": "auto-scaling-group", "Key": f"k8s.io/cluster-autoscaler/{aws.cluster}"},
    ]
    eks.autoscaling = _stubbed(aws, "autoscaling", ("delete_tags", {"Tags": ca_tags}, {}))  # moto has no ASG behind a node group
    assert eks.detach_from_cluster_autoscaler(name) == [asg_name]
    eks.autoscaling = aws.client("autoscaling")
    eks.remove_instance(name, "aws:///us-east-1a/i-0123456789abcdef0")
    update = {
        "clusterName": aws.cluster,
        "nodegroupName": name,
        "launchTemplate": {"id": template_id, "version": "3"},
        "clientRequestToken": "roll",
    }
    group = aws.client("eks").describe_nodegroup(clusterName=aws.cluster, nodegroupName=name)["nodegroup"]
    real = eks.eks
    stub = _stubbed(aws, "eks", ("update_nodegroup_version", update, {"update": {"id": "u1", "status": "InProgress"}}))
    eks.eks = cast("EKSClient", _Split(real, stub))
    eks.roll_group(name, image, "rolling", "roll")
    eks.eks = real
    assert (group["launchTemplate"]["id"], group["launchTemplate"]["version"]) == (template_id, "2")
    eks.delete_group(name)

    asg = AsgProvider(
        aws.client("autoscaling"), ec2, cluster_name=aws.cluster, image_id=image, subnets_by_zone=subnets, backoff=no_sleep,
        launch=LaunchSettings(aws.cluster), eks=aws.client("eks"), ssm=aws.client("ssm"),
    )  # fmt: skip
    info = asg.create_group(NodeGroupSpec("g-asg", "default/k", "us-east-1a", "m6i.xlarge", 2, 4), "tok")
    asg.list_groups()
    asg.set_size(info.name, 3)
    assert read_failures(asg.autoscaling, no_sleep, info.name) == ()  # what list_groups reads of a short group (moto never is)
    groups = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[info.name])["AutoScalingGroups"]
    victim = groups[0]["Instances"][0]["InstanceId"]
    proto = asg.create_image(f"aws:///us-east-1a/{victim}", f"proto-{aws.cluster}", {"kbl.io/prototype": "yes"})
    asg.protect_instances(info.name, [f"aws:///us-east-1a/{victim}"])  # joined: protected, lifted on removal
    asg.remove_instance(info.name, f"aws:///us-east-1a/{victim}")
    asg.roll_group(info.name, proto, "next-nodes", "roll-a")
    asg.roll_group(info.name, image, "rolling", "roll-b")  # the template only: the controller replaces the nodes
    asg.outdated_instances(info.name)
    asg.delete_group(info.name)
    # Prices: moto has no Price List API (a stub validates the call); spot history from moto.
    pricing = _stubbed(aws, "pricing", ("get_products", {"ServiceCode": "AmazonEC2", "Filters": ANY, "MaxResults": 10}, PRICE_PAGE))
    assert AwsPrices(pricing, ec2, REGION, backoff=no_sleep).instance_prices(["m6i.xlarge"])[("m6i.xlarge", "ON_DEMAND")] == 0.192

    aws.recorder.label = "setup"
    main, reply, _ = queues(aws)
    aws.recorder.label = "queue-controller"
    controller = QueueProvider(aws.client("sqs"), main, reply, clock=lambda: T0, backoff=no_sleep)
    controller.create_group(NodeGroupSpec("gq", "default/q", "us-east-1a", "m6i.xlarge", 1, 4), "tq")
    aws.recorder.label = "worker"
    Worker(aws.client("sqs"), main, reply, FakeProvider(lambda: T0), max_nodes_total=8, backoff=no_sleep).poll_once()
    aws.recorder.label = "queue-controller"
    assert [g.name for g in controller.list_groups()] == ["gq"]

    seen = aws.recorder.seen
    assert seen["direct"] <= CONTROLLER_DIRECT_ACTIONS, seen["direct"] - CONTROLLER_DIRECT_ACTIONS
    assert seen["direct"] == CONTROLLER_DIRECT_ACTIONS - IMPLIED_ACTIONS, (CONTROLLER_DIRECT_ACTIONS - IMPLIED_ACTIONS) ^ seen["direct"]
    assert seen["queue-controller"] == CONTROLLER_QUEUE_ACTIONS
    worker_seen = seen["worker"] | seen["direct"]
    assert worker_seen <= WORKER_ACTIONS
    assert worker_seen == WORKER_ACTIONS - IMPLIED_ACTIONS
    assert not any(a.startswith(("eks:", "ec2:", "autoscaling:")) for a in CONTROLLER_QUEUE_ACTIONS)
